package projections

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// A row read from the file enters the recent orders only if no commit came
// between the read and its entry; a commit's rows always do, and answer at
// the commit's position.
func TestRecentTakesNoRowOlderThanItsPosition(t *testing.T) {
	c := newRecent(10)
	c.read(9, "a", storedRow{rev: 9})
	if _, _, ok := c.get("a"); ok {
		t.Fatal("a row read at 9 entered a cache at 10")
	}
	c.read(10, "a", storedRow{rev: 10})
	if r, pos, ok := c.get("a"); !ok || r.rev != 10 || pos != 10 {
		t.Fatalf("get(a) = %+v at %d, %v; want rev 10 at 10", r, pos, ok)
	}
	c.staged(12, map[string]storedRow{"a": {rev: 12}})
	c.committed()
	c.read(10, "a", storedRow{rev: 10}) // a read that started before the commit
	if r, pos, ok := c.get("a"); !ok || r.rev != 12 || pos != 12 {
		t.Fatalf("get(a) = %+v at %d, %v; want rev 12 at 12", r, pos, ok)
	}
	c.pause()
	c.staged(13, map[string]storedRow{"b": {rev: 13}})
	c.committed()
	if _, _, ok := c.get("a"); ok {
		t.Fatal("a paused cache answered")
	}
	c.resume(13)
	if _, _, ok := c.get("b"); ok {
		t.Fatal("a commit made while paused was kept")
	}
	c.read(13, "b", storedRow{rev: 13})
	if _, pos, ok := c.get("b"); !ok || pos != 13 {
		t.Fatalf("after resume: get(b) at %d, %v", pos, ok)
	}
}

// The recent orders stay within their bound however many orders are
// written.
func TestRecentIsBounded(t *testing.T) {
	c := newRecent(0)
	rows := map[string]storedRow{}
	for i := range 3 * recentOrders {
		rows[fmt.Sprint(i)] = storedRow{rev: uint64(i)}
		if len(rows) == 1000 {
			c.staged(uint64(i), rows)
			c.committed()
			rows = map[string]storedRow{}
		}
		if n := len(c.rows); n > recentOrders {
			t.Fatalf("%d rows kept, bound %d", n, recentOrders)
		}
	}
}

// A point read answers what the last commit wrote, whether the order is
// among the recent ones or not, and a read model reopened on the same file
// answers the same.
func TestPointReadsFollowCommits(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rm.db")
	m, err := OpenReadModel(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	pos := uint64(0)
	item := func(id string, version uint64, e order.Event) Item {
		pos++
		return Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Version: version, Type: e.EventType(), Time: at}, Event: e}
	}
	if _, _, err := m.Apply(ctx, []Item{item("o-1", 1, order.OrderCreated{OrderID: "o-1", CustomerID: "c", Currency: "EUR"})}); err != nil {
		t.Fatal(err)
	}
	m.recent.pause() // the next read goes to the file
	m.recent.resume(pos)
	if o, p, err := m.GetOrder(ctx, "o-1"); err != nil || p != 1 || o.State.Status != order.StatusDraft {
		t.Fatalf("GetOrder from the file = %v at %d, %v", o.State.Status, p, err)
	}
	for i := range 3 {
		if _, _, err := m.Apply(ctx, []Item{item("o-1", uint64(i+2), order.ItemAdded{SKU: fmt.Sprint("S", i), Quantity: 1, UnitPrice: 100})}); err != nil {
			t.Fatal(err)
		}
		o, p, err := m.GetOrder(ctx, "o-1")
		if err != nil || p != pos || len(o.State.Lines) != i+1 || o.Revision != pos {
			t.Fatalf("after item %d: %d lines, revision %d at %d, %v; want %d at %d", i, len(o.State.Lines), o.Revision, p, err, i+1, pos)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openModel(t, path)
	if o, p, err := m.GetOrder(ctx, "o-1"); err != nil || p != pos || len(o.State.Lines) != 3 {
		t.Fatalf("reopened: %d lines at %d, %v", len(o.State.Lines), p, err)
	}
}
