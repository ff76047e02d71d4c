package console_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// twoReplicas is the query role of two nodes behind one address: the
// watch comes from one that applied the log's first change, at position
// 1; a list that asks for no position comes from one that has not.
type twoReplicas struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

var firstOrder = &ordersv1.Order{OrderId: "first-order", CustomerId: "c", Currency: "EUR", Status: ordersv1.OrderStatus_ORDER_STATUS_DRAFT, Revision: 1}

func (twoReplicas) WatchOrders(_ *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := s.Send(&ordersv1.WatchOrdersResponse{Order: firstOrder, Position: 1, Revision: 1, EventType: "OrderCreated"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (twoReplicas) ListOrders(_ context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	if req.GetConsistency().GetMinPosition() >= 1 {
		return &ordersv1.ListOrdersResponse{Orders: []*ordersv1.Order{firstOrder}, Position: 1}, nil
	}
	return &ordersv1.ListOrdersResponse{}, nil
}

// The live list's rows for a change are read once the read model has that
// change, the log's first (position 1) too: they were read as of "now",
// and a query node that had not applied it yet showed "No orders match"
// until the next change.
func TestLiveRowsOfTheFirstChangeShowIt(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, twoReplicas{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/console/live/orders?since=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var event []string
	for sc := bufio.NewScanner(res.Body); sc.Scan() && sc.Text() != ""; {
		event = append(event, sc.Text())
	}
	if got := strings.Join(event, "\n"); !strings.Contains(got, `data-order="first-order"`) {
		t.Fatalf("the rows sent for the change at position 1 do not show its order:\n%s", got)
	}
}
