package projections

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/order"
)

// An event of a type a newer build added counts in its order's revision
// and changes nothing else; one that comes before its order was created
// is a dead letter, as any such event is, named by its type.
func TestNewerBuildsEventIsFoldedPast(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	enc := func(e order.Event) []byte {
		_, b, err := convert.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	newer := estest.NewerBuildsPayload()
	recs := []eventstore.Recorded{
		{OrderID: "o-1", Position: 1, Version: 1, Type: "OrderCreated", Time: at, Data: enc(order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR"})},
		{OrderID: "o-1", Position: 2, Version: 2, Type: estest.NewerBuildsType, Time: at, Data: newer},
		{OrderID: "o-1", Position: 3, Version: 3, Type: "ItemAdded", Time: at, Data: enc(order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 100})},
		{OrderID: "o-2", Position: 4, Version: 1, Type: estest.NewerBuildsType, Time: at, Data: newer},
	}
	var items []Item
	for _, r := range recs {
		items = append(items, Decode(r))
	}
	_, dead, err := m.Apply(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Position != 4 || dead[0].Type != estest.NewerBuildsType {
		t.Fatalf("dead letters %+v; want only the event of o-2, before its order was created", dead)
	}
	o, _, err := m.GetOrder(ctx, "o-1")
	if err != nil {
		t.Fatal(err)
	}
	if o.State.Version != 3 || len(o.State.Lines) != 1 {
		t.Fatalf("o-1 at version %d with %d lines; want 3 (every event counted) and the one line", o.State.Version, len(o.State.Lines))
	}
}
