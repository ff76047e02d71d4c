package query_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/proto"
)

// After ForgetCustomer has been applied (GetOrder shows the address
// erased), a watch that resumes from a position before the order's
// creation is served the feed's kept history: it must show the address
// erased too, as the order's history read back from the log does, not as
// the order was folded before the erasure.
func TestWatchResumingFromBeforeAForgetServesNoPersonalData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := startWithKeys(t, 0)

	// Another customer's order first, so that a resume position before the
	// forgotten customer's order exists (0 means "from now").
	if _, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-keep", OrderId: "o-keep", CustomerId: "c-keep", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	secret := &ordersv1.Address{Name: "Ada Forgetmenot", Line1: "17 Forgetmenot Lane", City: "Forgettown", Country: "GB"}
	created, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-f", OrderId: "o-f", CustomerId: "c-forget", Currency: "EUR", ShippingAddress: secret})
	if err != nil {
		t.Fatal(err)
	}
	// The projection keeps up: the creation is applied (and published to
	// the feed) before the customer is forgotten.
	if err := e.runner.WaitForCommitted(ctx, created.GetPosition()); err != nil {
		t.Fatal(err)
	}
	fr, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "c-forget", RequestId: "r-forget"})
	if err != nil {
		t.Fatal(err)
	}
	pos := fr.GetPosition()
	got, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "o-f", Consistency: consistency(pos)})
	if err != nil {
		t.Fatal(err)
	}
	if a := got.GetOrder().GetShippingAddress(); !a.GetErased() || a.GetLine1() != "" {
		t.Fatalf("GetOrder after the forget: %v; want erased", a)
	}
	if err := e.runner.WaitForCommitted(ctx, pos); err != nil {
		t.Fatal(err)
	}

	check := func(name string, recv func() (*ordersv1.Order, uint64, error)) {
		t.Helper()
		for {
			o, p, err := recv()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if o.GetOrderId() == "o-f" && o.GetShippingAddress().GetLine1() != "" {
				t.Errorf("%s, after the customer was forgotten (at %d): change at %d serves address %q in the clear",
					name, pos, p, o.GetShippingAddress().GetLine1())
			}
			if p >= pos {
				return
			}
		}
	}
	w, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "o-f", FromPosition: 1})
	if err != nil {
		t.Fatal(err)
	}
	check("WatchOrder from 1", func() (*ordersv1.Order, uint64, error) {
		m, err := w.Recv()
		return m.GetOrder(), m.GetPosition(), err
	})
	ws, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-forget", FromPosition: proto.Uint64(1)})
	if err != nil {
		t.Fatal(err)
	}
	check("WatchOrders from 1", func() (*ordersv1.Order, uint64, error) {
		m, err := ws.Recv()
		return m.GetOrder(), m.GetPosition(), err
	})
}

// An erasure changes each of the customer's orders at the one position of
// CustomerForgotten. A watcher gets the change of every order: live, and
// resuming from before the erasure or from its position (as one cut off
// part-way through those changes does, told to resume from there).
func TestWatchOrdersSendsTheErasureOfEveryOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := startWithKeys(t, 0)
	addr := &ordersv1.Address{Name: "Ada Twice", Line1: "2 Twin Street", City: "Forgettown", Country: "GB"}
	var last uint64
	for _, id := range []string{"o-two-a", "o-two-b"} {
		res, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-" + id, OrderId: id, CustomerId: "c-two", Currency: "EUR", ShippingAddress: addr})
		if err != nil {
			t.Fatal(err)
		}
		last = res.GetPosition()
	}
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	live, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-two"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Recv(); err != nil { // the starting point
		t.Fatal(err)
	}
	fr, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "c-two", RequestId: "r-forget-two"})
	if err != nil {
		t.Fatal(err)
	}
	pos := fr.GetPosition()
	if err := e.runner.WaitForCommitted(ctx, pos); err != nil {
		t.Fatal(err)
	}

	erasures := func(name string, s ordersv1.OrderQueryService_WatchOrdersClient) {
		t.Helper()
		erased := map[string]bool{}
		for len(erased) < 2 {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("%s: %v after the erasures of %v; want both orders'", name, err, erased)
			}
			if m.GetPosition() > pos {
				t.Fatalf("%s: a change at %d after the erasure (at %d) before the erasures of both orders: got %v", name, m.GetPosition(), pos, erased)
			}
			if m.GetPosition() == pos && m.GetOrder().GetShippingAddress().GetErased() {
				erased[m.GetOrder().GetOrderId()] = true
			}
		}
	}
	erasures("live", live)
	for _, from := range []uint64{last, pos} {
		ctx, cancel := context.WithCancel(ctx)
		s, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-two", FromPosition: proto.Uint64(from)})
		if err != nil {
			t.Fatal(err)
		}
		erasures(fmt.Sprintf("resumed from %d (the erasure at %d)", from, pos), s)
		cancel()
	}
}
