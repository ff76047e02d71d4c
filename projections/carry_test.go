package projections

import (
	"fmt"
	"hash/maphash"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// interleavedOrders is how many orders interleaved advances together.
const interleavedOrders = 30

// interleaved is a log of interleavedOrders orders whose events are that
// far apart, so that most of them land in a batch after their order's
// previous event; one customer is forgotten between two of its orders'
// events.
func interleaved() []Item {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var items []Item
	versions := map[string]uint64{}
	add := func(id string, ev order.Event) {
		versions[id]++
		items = append(items, Item{
			Rec: eventstore.Recorded{OrderID: id, Position: uint64(len(items) + 1), Version: versions[id], Type: ev.EventType(),
				Time: at, Meta: eventstore.Metadata{OccurredAt: at.Add(time.Duration(len(items)) * time.Second)}},
			Event: ev,
		})
	}
	id := func(i int) string { return fmt.Sprintf("o-%02d", i) }
	for i := range interleavedOrders {
		add(id(i), order.OrderCreated{OrderID: id(i), CustomerID: fmt.Sprintf("c-%d", i%3), Currency: "EUR",
			Shipping: &order.Address{Name: "Ada", Line1: "1 Way", City: "Paris", Country: "FR"}})
	}
	for round := range 2 {
		for i := range interleavedOrders {
			add(id(i), order.ItemAdded{SKU: fmt.Sprintf("S-%d", round), Quantity: 1, UnitPrice: int64(100 + i)})
		}
	}
	add(order.CustomersSubjectID, order.CustomerForgotten{CustomerID: "c-1"})
	for i := range interleavedOrders {
		if i%2 == 0 {
			add(id(i), order.OrderPlaced{Subtotal: int64(300 + 2*i), Total: int64(300 + 2*i)})
		} else {
			add(id(i), order.ItemAdded{SKU: "S-late", Quantity: 2, UnitPrice: 50})
		}
	}
	return items
}

// A rebuild's bulk fill folds an order on from what the last batches
// wrote (the carry) rather than from its row read back, and finds the
// rows the carry dropped through its own index (fillIndex), since it
// drops orders_id until its end. The read model it leaves must equal the
// one the same log leaves applied batch by batch, erasure included: the
// forgotten customer's orders stay erased after their later events, in
// both. The fill index is tried with every id's hash its own, with ids
// sharing hashes in groups (the even ones all one hash, the odd ones in
// threes by their last digit, so that a hash's one row is sometimes
// another id's), and with one hash for all.
func TestBulkFillFoldsOnFromTheCarry(t *testing.T) {
	ctx := t.Context()
	items := interleaved()
	const batch = 7 // below interleavedOrders: an order's events never share a batch
	fill := func(m *ReadModel, dropCarry bool) {
		for i := 0; i < len(items); i += batch {
			if _, _, err := m.Apply(ctx, items[i:min(i+batch, len(items))]); err != nil {
				t.Fatal(err)
			}
			if dropCarry && m.carry != nil {
				m.carry.reset()
			}
		}
	}
	dir := t.TempDir()
	applied := openModel(t, filepath.Join(dir, "applied.db"))
	fill(applied, false)
	for _, tc := range []struct {
		name      string
		dropCarry bool
		hash      func(maphash.Seed, string) uint64
	}{
		{name: "carry"},
		{name: "rows", dropCarry: true},
		{name: "rows, hashes shared in groups", dropCarry: true, hash: func(_ maphash.Seed, id string) uint64 {
			if id[len(id)-1]%2 == 0 {
				return 1
			}
			return uint64(id[len(id)-1])
		}},
		{name: "rows, one hash", dropCarry: true, hash: func(maphash.Seed, string) uint64 { return 7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bulk := openModel(t, filepath.Join(t.TempDir(), "bulk.db"))
			end, err := bulk.bulk(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.hash != nil {
				bulk.carry.rows.hash = tc.hash
			}
			fill(bulk, tc.dropCarry)
			if !tc.dropCarry && len(bulk.carry.cur)+len(bulk.carry.prev) == 0 {
				t.Fatal("the bulk fill carried no order between its batches")
			}
			if tc.hash != nil && len(bulk.carry.rows.shared) == 0 {
				t.Fatal("no id shared its hash")
			}
			if err := end(ctx); err != nil {
				t.Fatal(err)
			}
			var rows int
			if err := bulk.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&rows); err != nil || rows != interleavedOrders {
				t.Fatalf("%d rows, %v; want one for each of %d orders", rows, err, interleavedOrders)
			}
			for i := range interleavedOrders {
				id := fmt.Sprintf("o-%02d", i)
				want, _, err := applied.GetOrder(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := bulk.GetOrder(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("order %s after the bulk fill:\n%+v\nwant (applied batch by batch)\n%+v", id, got, want)
				}
				if erased := got.State.PersonalDataErased(); erased != (i%3 == 1) {
					t.Fatalf("order %s (customer c-%d): personal data erased %v", id, i%3, erased)
				}
				if len(got.State.Lines) != 2+i%2 {
					t.Fatalf("order %s has %d lines, want %d", id, len(got.State.Lines), 2+i%2)
				}
			}
		})
	}
}

// A creation the log repeats for an order (which the append never writes:
// it expects the order's subject to be empty) overwrites the order's row
// live, through the upsert; a bulk fill, which has no unique index on the
// id to conflict with, must do the same rather than write a second row,
// whether the order is in its carry or only in its rows.
func TestBulkFillOverwritesARepeatedCreationAsLiveDoes(t *testing.T) {
	ctx := t.Context()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var items []Item
	add := func(id string, version uint64, ev order.Event) {
		items = append(items, Item{
			Rec: eventstore.Recorded{OrderID: id, Position: uint64(len(items) + 1), Version: version, Type: ev.EventType(),
				Time: at, Meta: eventstore.Metadata{OccurredAt: at.Add(time.Duration(len(items)) * time.Second)}},
			Event: ev,
		})
	}
	add("o-1", 1, order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR"})
	add("o-2", 1, order.OrderCreated{OrderID: "o-2", CustomerID: "c-1", Currency: "EUR"})
	add("o-1", 2, order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 100})
	add("o-1", 1, order.OrderCreated{OrderID: "o-1", CustomerID: "c-2", Currency: "USD"})
	add("o-1", 2, order.ItemAdded{SKU: "B", Quantity: 3, UnitPrice: 7})
	// carried reports, before each batch, whether the bulk fill's carry
	// holds o-1.
	var carried []bool
	fill := func(m *ReadModel, dropCarry bool) {
		for i := range items { // one event per batch
			if m.carry != nil {
				_, cur := m.carry.cur["o-1"]
				_, prev := m.carry.prev["o-1"]
				carried = append(carried, cur || prev)
			}
			if _, _, err := m.Apply(ctx, items[i:i+1]); err != nil {
				t.Fatal(err)
			}
			if dropCarry && m.carry != nil {
				m.carry.reset()
			}
		}
	}
	seqOf := func(m *ReadModel) int64 {
		t.Helper()
		var seq int64
		if err := m.r.QueryRowContext(ctx, `SELECT seq FROM orders WHERE id = 'o-1'`).Scan(&seq); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	dir := t.TempDir()
	applied := openModel(t, filepath.Join(dir, "applied.db"))
	fill(applied, false)
	want, _, err := applied.GetOrder(ctx, "o-1")
	if err != nil || want.State.CustomerID != "c-2" || len(want.State.Lines) != 1 {
		t.Fatalf("live: o-1 is %+v, %v; want the second creation's order with one line", want, err)
	}
	for _, dropCarry := range []bool{false, true} {
		t.Run(fmt.Sprint("carry dropped ", dropCarry), func(t *testing.T) {
			bulk := openModel(t, filepath.Join(t.TempDir(), "bulk.db"))
			end, err := bulk.bulk(ctx)
			if err != nil {
				t.Fatal(err)
			}
			carried = nil
			fill(bulk, dropCarry)
			// Before the repeated creation (the fourth event), o-1 is
			// in the carry or, dropped, only in the fill's rows.
			if carried[3] == dropCarry {
				t.Fatalf("o-1 carried before its repeated creation: %v; want %v", carried[3], !dropCarry)
			}
			if err := end(ctx); err != nil {
				t.Fatal(err)
			}
			if got, want := seqOf(bulk), seqOf(applied); got != want {
				t.Fatalf("o-1's seq %d, live %d", got, want)
			}
			got, _, err := bulk.GetOrder(ctx, "o-1")
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("bulk: o-1 is %+v, %v\nwant (live) %+v", got, err, want)
			}
			var rows int
			if err := bulk.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&rows); err != nil || rows != 2 {
				t.Fatalf("%d rows, %v; want 2", rows, err)
			}
		})
	}
}
