package console_test

import (
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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
// its page would have read as the order gone. The page is told that
// position, though, as an event "position": it resumes from it, not from
// its last change, which a watch resumed from reads back from the log.
func TestOrderPageIsNotChangedByTheWatchsPosition(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, quietOrder{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	cl := newClient(t, srv.URL)
	live := cl.live(consolepkg.Prefix+"orders/first-order/events?rev=1", "1")
	if e := live.next(); e.Name != "position" || e.ID != "3" {
		t.Fatalf("the live stream's first event: %+v, want the position 3 to resume from", e)
	}
	if e := live.next(); e.Name != "changed" || e.ID != "4" {
		t.Fatalf("the live stream's second event: %+v, want the change at 4", e)
	}
}

// quietList is a query service whose watch of a customer's orders, resumed
// from a position, says it has sent everything up to 5 and then waits; one
// from now is refused, as is a listing.
type quietList struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (quietList) WatchOrders(req *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	if req.FromPosition == nil {
		return status.Error(codes.FailedPrecondition, "watched from now, where the page asked to resume")
	}
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := s.Send(&ordersv1.WatchOrdersResponse{Position: 5}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// A live list is told the positions its watch sends without an order, as
// an order's page is: it resumes from the last of them.
func TestListPageIsToldTheWatchsPosition(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, quietList{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	cl := newClient(t, srv.URL)
	if e := cl.live(consolepkg.Prefix+"live/orders?customer=c", "2").next(); e.Name != "position" || e.ID != "5" {
		t.Fatalf("the live list's first event: %+v, want the position 5 to resume from", e)
	}
}

// relistQuery is two replicas behind one address: the watch refuses to
// resume (OUT_OF_RANGE) and, from now, starts after position 1, which a
// listing that asks for no position comes from a replica without.
type relistQuery struct {
	twoReplicas
}

func (relistQuery) WatchOrders(req *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	if req.FromPosition != nil {
		return status.Error(codes.OutOfRange, "from_position is older than the changes kept; list the orders again")
	}
	if err := s.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := s.Send(&ordersv1.WatchOrdersResponse{Position: 1}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// A live list that can no longer resume lists its rows again at the
// position its new watch starts after: listed as whichever replica answered
// had them, the changes before that position were in neither the rows nor
// the watch.
func TestLiveListRelistsWhereItsNewWatchStarts(t *testing.T) {
	conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, relistQuery{}) })
	srv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	cl := newClient(t, srv.URL)
	if e := cl.live(consolepkg.Prefix+"live/orders", "0").next(); e.Name != "rows" || !strings.Contains(e.Data, `data-order="first-order"`) {
		t.Fatalf("the relisted rows: %+v, want them to show the order of position 1", e)
	}
}
