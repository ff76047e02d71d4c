package command_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A command on an order holding an event of a type a newer build added (a
// rolling upgrade) is decided, the event counted in the revision and
// otherwise skipped, as docs/schema-evolution.md promises: every command
// on such an order answered INTERNAL.
func TestCommandOnAnOrderHoldingANewerBuildsEvent(t *testing.T) {
	e := start(t)
	id := createDraft(t, e).GetOrder().GetOrderId()
	estest.AppendNewerBuildsEvent(t, e.store, id)
	res, err := e.client.AddItem(t.Context(), &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "PEN", Quantity: 1, UnitPrice: 5})
	if err != nil {
		t.Fatalf("AddItem on an order holding a newer build's event: %v", err)
	}
	if res.GetRevision() != 3 {
		t.Errorf("revision %d, want 3 (the newer build's event counted)", res.GetRevision())
	}
}
