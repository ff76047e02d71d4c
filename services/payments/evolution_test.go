package payments_test

import (
	"fmt"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/payments"
)

// An order holding an event of a type a newer build added (a rolling
// upgrade) is charged once it is placed: the manager folds the order past
// that event, as docs/schema-evolution.md promises, where its job failed
// the fold on every attempt and was parked.
func TestOrderHoldingANewerBuildsEventIsCharged(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	e.run(t, sim, fast())
	ctx := t.Context()
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: fmt.Sprint("c-", seq.Add(1)), CustomerId: "newer", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 700}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Bern", Country: "CH"}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	estest.AppendNewerBuildsEvent(t, e.store, id)
	if _, err := e.cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: fmt.Sprint("p-", seq.Add(1)), OrderId: id}); err != nil {
		t.Fatal(err)
	}
	st := e.waitStats(t, "the job settled", func(s payments.Stats) bool { return s.Charged+s.Parked > 0 })
	if st.Charged != 1 || st.Parked != 0 {
		t.Fatalf("%+v; want the order charged, nothing parked", st)
	}
}
