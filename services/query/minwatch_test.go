package query_test

import (
	"context"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
)

// A WatchOrders given consistency.min_position starts once the read model
// has reached it: its first message names a position at or after it, and
// the change at min_position (the caller's own write, which it already
// knows) is not sent as a change. The wait ends on the runner's committed
// position; had it moved before the feed published the commit, a watch
// opened in between would start after the feed's older position and send
// the caller's write back to it. Each try is a fresh write and a fresh
// watch; the window would be a few instructions wide, so the test looks
// often enough to meet it (under -race, within 40 tries here).
func TestWatchOrdersStartsAtOrAfterItsMinPosition(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	for i := range 300 {
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "minwatch", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		s, err := e.q.WatchOrders(wctx, &ordersv1.WatchOrdersRequest{CustomerId: "minwatch", Consistency: consistency(c.GetPosition())})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		first, err := s.Recv()
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		if first.GetPosition() < c.GetPosition() {
			next, err := s.Recv()
			cancel()
			t.Fatalf("try %d: watch at min_position %d starts after %d, then sends %s at %d (%v): the caller's own write",
				i, c.GetPosition(), first.GetPosition(), next.GetOrder().GetOrderId(), next.GetPosition(), err)
		}
		cancel()
	}
}
