package console_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// quietOrder is a query service whose watch of an order first tells how far
// it has got, with a message of no order (as a watch does when the order
// has not changed for a while), and then sends the order's change.
type quietOrder struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (quietOrder) WatchOrder(_ *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := s.Send(&ordersv1.WatchOrderResponse{Position: 3}); err != nil {
		return err
	}
	if err := s.Send(&ordersv1.WatchOrderResponse{Order: firstOrder, Position: 4, Revision: 2, EventType: "ItemAdded"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// An order's live page is told of the order's change, not of a message
// that only says how far its watch has got: that one carries no order, and
// its page would have read as the order gone.
func TestOrderPageIsNotChangedByTheWatchsPosition(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, quietOrder{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	cl := newClient(t, srv.URL)
	if e := cl.live(consolepkg.Prefix+"orders/first-order/events?rev=1", "1").next(); e.Name != "changed" || e.ID != "4" {
		t.Fatalf("the live stream's first event: %+v, want the change at 4", e)
	}
}
