package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Rebuild asks the admin service on conn to rebuild the read model and
// calls each with every progress message until the rebuild ends. It
// returns the last message (nil if there was none) and the stream's error,
// or each's first error, which ends the rebuild's stream, or UNAVAILABLE
// when the stream ended without the message that says the new model was
// swapped in (cut short by a proxy, say): the model was not replaced, and
// a script that reads the exit code must not take it for done.
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
			if !last.GetSwapped() {
				return last, status.Error(codes.Unavailable, "the rebuild's stream ended before the new read model was swapped in; run it again")
			}
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
