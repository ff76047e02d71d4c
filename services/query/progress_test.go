package query_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/services/query"
)

// watched is a message of either watch RPC.
type watched interface {
	GetOrder() *ordersv1.Order
	GetPosition() uint64
}

// othersChange creates three orders of another customer and returns the
// position of the last.
func othersChange(ctx context.Context, t *testing.T, e *env) uint64 {
	t.Helper()
	var last uint64
	for range 3 {
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "busy", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		last = c.GetPosition()
	}
	return last
}

// quietUntil receives from a watch whose orders do not change, past
// position at, until last: every message must be one of no order, at or
// after the one before; then, the log quiet, last again.
func quietUntil[M watched](t *testing.T, recv func() (M, error), at, last uint64) {
	t.Helper()
	for at < last {
		m, err := recv()
		if err != nil {
			t.Fatalf("watch of a quiet order, others' changes up to %d: %v", last, err)
		}
		if m.GetOrder() != nil || m.GetPosition() < at {
			t.Fatalf("watch of a quiet order sent %v at %d, after position %d", m.GetOrder(), m.GetPosition(), at)
		}
		at = m.GetPosition()
	}
	if m, err := recv(); err != nil || m.GetOrder() != nil || m.GetPosition() != last {
		t.Fatalf("watch on a quiet log: %v at %d, %v; want its position, %d, again", m.GetOrder(), m.GetPosition(), err, last)
	}
}

// A WatchOrders of a customer whose orders do not change, while others'
// do, sends after a quiet spell a message of no order with the position it
// has sent everything up to, and on a quiet log sends it again: a proxy
// would otherwise close the idle newline-delimited JSON stream, and a
// client resuming from its last change would be refused once that fell
// out of the feed's history (or, for a node restarted after a crash,
// below its checkpoint).
func TestWatchOrdersSendsItsPositionWhenQuiet(t *testing.T) {
	// A watch that never sends its position waits for ever: bounded, so
	// that the failure says which.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	e := serve(t, &env{store: memstore.New()}, 0, query.WithWatchProgress(20*time.Millisecond))
	createCommitted(t, e, "quiet", 1)
	w, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	quietUntil(t, w.Recv, first.GetPosition(), othersChange(ctx, t, e))
}

// A WatchOrder of an order that does not change, while others do, sends
// the same messages of no order: its stream is as idle, and resumed from
// such a position it sends the order's next change and nothing before it.
func TestWatchOrderSendsItsPositionWhenQuiet(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	e := serve(t, &env{store: memstore.New()}, 0, query.WithWatchProgress(20*time.Millisecond))
	o, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "quiet", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	id := o.GetOrder().GetOrderId()
	w, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, Consistency: &ordersv1.Consistency{MinPosition: o.GetPosition()}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.GetOrder().GetOrderId() != id {
		t.Fatalf("first message %v, %v; want the order's current state", first, err)
	}
	last := othersChange(ctx, t, e)
	quietUntil(t, w.Recv, first.GetPosition(), last)

	resumed, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, FromPosition: last})
	if err != nil {
		t.Fatal(err)
	}
	add, err := e.cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "sku-1", Quantity: 1, UnitPrice: 100})
	if err != nil {
		t.Fatal(err)
	}
	m, err := resumed.Recv()
	if err != nil || m.GetOrder().GetOrderId() != id || m.GetPosition() != add.GetPosition() {
		t.Fatalf("watch resumed from position %d: %v at %d, %v; want the order's change at %d", last, m.GetOrder(), m.GetPosition(), err, add.GetPosition())
	}
}
