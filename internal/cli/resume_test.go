package cli_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// erasingWatch is a query service whose WatchOrders behaves as the real one
// documents around a customer's erasure: one position (9) carries a change
// of each of the customer's orders, and "resuming from a position with
// several changes sends them all again". The first watch sends the two
// changes at 9 and then ends UNAVAILABLE (a node shutting down); the next,
// from 9, sends them again, then a later change, and runs until the client
// goes.
type erasingWatch struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	mu   sync.Mutex
	from []uint64
}

func (e *erasingWatch) WatchOrders(req *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	e.mu.Lock()
	e.from = append(e.from, req.GetFromPosition())
	first := len(e.from) == 1
	e.mu.Unlock()
	change := func(id string, pos uint64, ev string) *ordersv1.WatchOrdersResponse {
		return &ordersv1.WatchOrdersResponse{Order: flakyOrder(id, ordersv1.OrderStatus_ORDER_STATUS_DRAFT), Position: pos, Revision: 2, EventType: ev, Actor: "admin"}
	}
	if first {
		for _, m := range []*ordersv1.WatchOrdersResponse{{Position: 8}, change("ord-a", 9, "CustomerForgotten"), change("ord-b", 9, "CustomerForgotten")} {
			if err := s.Send(m); err != nil {
				return err
			}
		}
		return status.Error(codes.Unavailable, "server shutting down")
	}
	// Resumed from 9: every change at 9 again, as documented, then on.
	for _, m := range []*ordersv1.WatchOrdersResponse{change("ord-a", 9, "CustomerForgotten"), change("ord-b", 9, "CustomerForgotten"), change("ord-c", 10, "OrderPlaced")} {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

// orders watch resumes by itself after a cut-off "from the last position
// it printed, so no change is missed or printed twice". A position holding
// several changes (an erasure) is sent again whole on resumption, and its
// changes were printed again.
func TestWatchResumedAtAnErasureRepeatsNothing(t *testing.T) {
	srv := &erasingWatch{}
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
	w := startWatch(t, call{addr: addr}, "orders", "watch", "--customer", "c")
	var got []string
	for len(got) < 5 {
		f := strings.Split(w.next(t), "\t")
		got = append(got, f[0]+" "+f[1])
		if f[1] == "ord-c" {
			break
		}
	}
	w.end(t)
	want := []string{"9 ord-a", "9 ord-b", "10 ord-c"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("printed %q, want each change once: %q", got, want)
	}
}

// pagedList answers ListOrders in two pages read at different positions,
// as the real query service does when the log moves on between them: page
// one as of position 5, page two as of position 7.
type pagedList struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (pagedList) ListOrders(_ context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	if req.GetPageToken() == "" {
		return &ordersv1.ListOrdersResponse{Orders: []*ordersv1.Order{flakyOrder("pg-a", ordersv1.OrderStatus_ORDER_STATUS_DRAFT)}, NextPageToken: "p2", Position: 5}, nil
	}
	return &ordersv1.ListOrdersResponse{Orders: []*ordersv1.Order{flakyOrder("pg-b", ordersv1.OrderStatus_ORDER_STATUS_DRAFT)}, Position: 7}, nil
}

// orders list --all -o json prints one position for orders read at
// several: a watch from it (how a list is followed, "watch from the list's
// position") must not miss a change the list does not show. pg-a was read
// at 5; a change of it at 6 is in neither page, and a watch from 7, the
// last page's position it printed, skipped it. The position of a merged
// list is the lowest of its pages'.
func TestListAllPositionCoversEveryPage(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, pagedList{}) })
	r := ok(t, run(t, addr, "orders", "list", "--all", "-o", "json"))
	if got := str(t, jsonOf(t, r.stdout), "position"); got != "5" {
		t.Fatalf("list --all of pages read at positions 5 and 7 says position %s: a watch from it misses what changed after page one", got)
	}
}

// emptyLogWatch is a query service whose WatchOrders behaves as the real
// one does on an empty log: the first watch starts after position 0, sends
// that, and ends UNAVAILABLE (a node shutting down) before any change.
// Meanwhile ord-z was created at 1. A watch resumed after 0 (from_position
// set to 0) gets it; one with no from_position starts now, after it.
type emptyLogWatch struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	mu    sync.Mutex
	calls int
}

func (e *emptyLogWatch) WatchOrders(req *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	e.mu.Lock()
	e.calls++
	first := e.calls == 1
	e.mu.Unlock()
	change := func(id string, pos uint64) *ordersv1.WatchOrdersResponse {
		return &ordersv1.WatchOrdersResponse{Order: flakyOrder(id, ordersv1.OrderStatus_ORDER_STATUS_DRAFT), Position: pos, Revision: 1, EventType: "OrderCreated", Actor: "admin"}
	}
	if first {
		if err := s.Send(&ordersv1.WatchOrdersResponse{Position: 0}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "server shutting down")
	}
	msgs := []*ordersv1.WatchOrdersResponse{{Position: 1}, change("ord-y", 2)}
	if req.FromPosition != nil && req.GetFromPosition() == 0 {
		msgs = []*ordersv1.WatchOrdersResponse{change("ord-z", 1), change("ord-y", 2)}
	}
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	<-s.Context().Done()
	return nil
}

// A watch of every order that saw only the first message of an empty log
// (position 0) and lost its server resumes after 0: the change made while
// it reconnected is printed, not skipped by a watch from "now".
func TestWatchResumedAfterPositionZeroMissesNothing(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, &emptyLogWatch{}) })
	w := startWatch(t, call{addr: addr}, "orders", "watch")
	got := strings.Split(w.next(t), "\t")
	w.end(t)
	if got[0] != "1" || got[1] != "ord-z" {
		t.Fatalf("first change printed %q, want ord-z at 1, made while the watch reconnected", got)
	}
}
