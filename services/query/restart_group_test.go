package query_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A node restarts with its read model's checkpoint at a customer's
// erasure, which changed two orders at that one position. A watcher of
// many orders cut off part-way through those changes (a shutdown ends the
// streams at once) resumes from the erasure's position, as it is told to
// when it falls behind: the restarted node never saw the changes, so it
// cannot send them again, and must say that it cannot (OUT_OF_RANGE: list
// again) rather than follow on from after them, leaving the watcher with
// an order whose address it was never told is erased.
func TestWatchOrdersResumedAtAnErasureAfterARestartMissesNone(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, _ := startNATSWithKeys(t, 0)
	store := e.nstore
	for _, id := range []string{"o-rs-a", "o-rs-b"} {
		if _, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-" + id, OrderId: id, CustomerId: "c-rs", Currency: "EUR", ShippingAddress: addr()}); err != nil {
			t.Fatal(err)
		}
	}
	erasure := forget(t, e, "c-rs")
	if err := e.runner.WaitForCommitted(ctx, erasure); err != nil {
		t.Fatal(err)
	}

	// The restart: a new runner on the same read model, with a feed and a
	// query service of its own, as a new process has.
	restart := func(at uint64) ordersv1.OrderQueryServiceClient {
		e.stop()
		e.feed = projections.NewFeed(0)
		e.startRunner(t, projections.WithKeyring(e.keys))
		if err := e.runner.WaitForCommitted(ctx, at); err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runnerRef{e}, query.WithFeed(e.feed), query.WithHistory(store), query.WithHead(store), query.WithKeyring(e.keys)))
		return ordersv1.NewOrderQueryServiceClient(listen(t, gs))
	}
	q := restart(erasure)

	w, err := q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-rs", FromPosition: proto.Uint64(erasure)})
	if err != nil {
		t.Fatal(err)
	}
	// A change after the erasure, so that a watch that skipped the
	// erasure's changes has something to show for it.
	later, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-o-rs-c", OrderId: "o-rs-c", CustomerId: "c-rs", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	erased := map[string]bool{}
	for len(erased) < 2 {
		m, err := w.Recv()
		if status.Code(err) == codes.OutOfRange {
			break // told to list again: nothing is missed
		}
		if err != nil {
			t.Fatalf("after the erasures of %v: %v", erased, err)
		}
		if m.GetPosition() > erasure {
			t.Fatalf("resumed at the erasure (%d) after a restart: change of %s at %d (the order created at %d) with the erasures of %v only; want both orders' erasures again, or OUT_OF_RANGE",
				erasure, m.GetOrder().GetOrderId(), m.GetPosition(), later.GetPosition(), erased)
		}
		if m.GetOrder().GetShippingAddress().GetErased() {
			erased[m.GetOrder().GetOrderId()] = true
		}
	}

	// A checkpoint at one order's change has one change there: a watcher
	// resuming at it after a restart saw it, and follows on.
	if err := e.runner.WaitForCommitted(ctx, later.GetPosition()); err != nil {
		t.Fatal(err)
	}
	q = restart(later.GetPosition())
	w, err = q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-rs", FromPosition: proto.Uint64(later.GetPosition())})
	if err != nil {
		t.Fatal(err)
	}
	next, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-o-rs-d", OrderId: "o-rs-d", CustomerId: "c-rs", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetPosition() != next.GetPosition() {
		t.Fatalf("resumed at an order's change (%d) after a restart: %v at %d, %v; want the next change, at %d", later.GetPosition(), m.GetOrder().GetOrderId(), m.GetPosition(), err, next.GetPosition())
	}
}
