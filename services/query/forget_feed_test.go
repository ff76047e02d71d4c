package query_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
)

// After ForgetCustomer has been applied (GetOrder shows the address
// erased), a watch that resumes from a position before the order's
// creation is served the feed's kept history: it must show the address
// erased too, as the order's history read back from the log does, not as
// the order was folded before the erasure.
func TestWatchResumingFromBeforeAForgetServesNoPersonalData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{9}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	e := serve(t, &env{store: memstore.New(), keys: pii.NewKeyring(pii.NewMemStore(), master)}, 0)

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
	ws, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-forget", FromPosition: 1})
	if err != nil {
		t.Fatal(err)
	}
	check("WatchOrders from 1", func() (*ordersv1.Order, uint64, error) {
		m, err := ws.Recv()
		return m.GetOrder(), m.GetPosition(), err
	})
}
