package query_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/services/query"
)

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
	var last uint64
	for range 3 {
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "busy", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		last = c.GetPosition()
	}
	at := first.GetPosition()
	for at < last {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("watch of a quiet customer, others' changes up to %d: %v", last, err)
		}
		if m.GetOrder() != nil || m.GetPosition() < at {
			t.Fatalf("watch of a quiet customer sent %v at %d, after position %d", m.GetOrder(), m.GetPosition(), at)
		}
		at = m.GetPosition()
	}
	if m, err := w.Recv(); err != nil || m.GetOrder() != nil || m.GetPosition() != last {
		t.Fatalf("watch on a quiet log: %v at %d, %v; want its position, %d, again", m.GetOrder(), m.GetPosition(), err, last)
	}
}
