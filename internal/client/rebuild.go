package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
)

// Rebuild asks the admin service on conn to rebuild the read model and
// calls each with every progress message until the rebuild ends. It
// returns the last message (nil if there was none) and the stream's error,
// or each's first error, which ends the rebuild's stream.
func Rebuild(ctx context.Context, conn grpc.ClientConnInterface, each func(*ordersv1.RebuildReadModelResponse) error) (*ordersv1.RebuildReadModelResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ordersv1.NewOrderAdminServiceClient(conn).RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	if err != nil {
		return nil, err
	}
	var last *ordersv1.RebuildReadModelResponse
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return last, err
		}
		last = res
		if err := each(res); err != nil {
			return last, err
		}
	}
}

// RebuildSummary is the line a person reads when a rebuild ended with res.
func RebuildSummary(res *ordersv1.RebuildReadModelResponse) string {
	on := ""
	if n := res.GetNode(); n != "" {
		on = " on " + n
	}
	return fmt.Sprintf("rebuilt %d events up to position %d (%.0f events/s)%s; swapped: %v",
		res.GetEventsDone(), res.GetPosition(), res.GetEventsPerSecond(), on, res.GetSwapped())
}
