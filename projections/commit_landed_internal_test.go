package projections

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// A commit that reports an error may have reached the file all the same
// (the next apply reads the checkpoint back for that reason). The recent
// orders kept the rows of before it, and the next apply folded an order
// from its cached row: the events of the commit that landed were lost
// from the order for good. Here the commit lands and the rollback a
// failed commit runs follows it.
func TestCommitThatLandedDespiteItsErrorIsNotFoldedFromTheCache(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	item := func(pos, version uint64, e order.Event) Item {
		return Item{Rec: eventstore.Recorded{OrderID: "o1", Position: pos, Version: version, Type: e.EventType(), Time: at}, Event: e}
	}
	if _, _, err := m.Apply(ctx, []Item{created("o1", "c1", 1)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.GetOrderMessage(ctx, "o1"); err != nil { // cached
		t.Fatal(err)
	}
	// An item added, its commit landing, then reported failed.
	if _, _, _, err := m.apply(ctx, []Item{item(2, 2, order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 100})}, nil, true); err != nil {
		t.Fatal(err)
	}
	m.applyMu.Lock()
	if err := m.open.Commit(); err != nil {
		t.Fatal(err)
	}
	m.rollback()
	m.applyMu.Unlock()
	if _, _, err := m.Apply(ctx, []Item{item(3, 3, order.ItemAdded{SKU: "B", Quantity: 1, UnitPrice: 200})}); err != nil {
		t.Fatal(err)
	}
	o, _, err := m.GetOrderMessage(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.GetLines()) != 2 || o.GetRevision() != 3 {
		t.Fatalf("order after the landed commit and one more event: %d lines, revision %d; want both lines, revision 3", len(o.GetLines()), o.GetRevision())
	}
}
