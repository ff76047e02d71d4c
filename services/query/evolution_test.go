package query_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// An order holding an event of a type a newer build added (a rolling
// upgrade) reads with the revision the command side holds it at: the
// event counts and changes nothing else, as docs/schema-evolution.md
// promises. Before, the read model dead-lettered it, and the revision it
// answered stayed one behind for good: every command sent with it as the
// expected revision was ABORTED.
func TestRevisionCountsANewerBuildsEvent(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "upgrade-1", CustomerId: "cust-up", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	pos := estest.AppendNewerBuildsEvent(t, e.store, "upgrade-1")
	got, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "upgrade-1", Consistency: consistency(pos)})
	if err != nil {
		t.Fatal(err)
	}
	rev := got.GetOrder().GetRevision()
	if want := c.GetOrder().GetRevision() + 1; rev != want {
		t.Fatalf("GetOrder revision %d, want %d (the newer build's event counted)", rev, want)
	}
	if _, err := e.cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "upgrade-1", Sku: "A", Quantity: 1, UnitPrice: 1, ExpectedRevision: &rev}); err != nil {
		t.Fatalf("AddItem at the revision GetOrder answered: %v", err)
	}
}
