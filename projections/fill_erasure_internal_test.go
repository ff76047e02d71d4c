package projections

import (
	"flag"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

var (
	fillOrders   = flag.Int("fill.orders", 100000, "orders in BenchmarkBulkFillWithErasures")
	fillErasures = flag.Int("fill.erasures", 50, "customers forgotten, spread over the log, in BenchmarkBulkFillWithErasures")
)

// BenchmarkBulkFillWithErasures fills a read model in bulk, as a rebuild
// does, from a log of -fill.orders one-event orders of 1,000 customers
// with -fill.erasures erasures spread over it: each erasure must find its
// customer's orders in a table whose indexes the fill dropped.
func BenchmarkBulkFillWithErasures(b *testing.B) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	n, e := *fillOrders, *fillErasures
	every := n / max(e, 1)
	var items []Item
	for i := range n {
		if e > 0 && i > 0 && i%every == 0 {
			items = append(items, Item{Rec: eventstore.Recorded{OrderID: order.CustomersSubjectID, Position: uint64(len(items) + 1), Version: uint64(i / every),
				Type: "CustomerForgotten", Time: at}, Event: order.CustomerForgotten{CustomerID: fmt.Sprint("c-", i%1000)}})
		}
		id := fmt.Sprintf("o-%08d", i)
		items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: uint64(len(items) + 1), Version: 1, Type: "OrderCreated", Time: at},
			Event: order.OrderCreated{OrderID: id, CustomerID: fmt.Sprint("c-", i%1000), Currency: "EUR",
				Shipping: &order.Address{Name: "Ada", Line1: "1 Way", City: "Paris", Country: "FR"}}})
	}
	for b.Loop() {
		m, err := OpenReadModel(b.Context(), filepath.Join(b.TempDir(), "rm.db"))
		if err != nil {
			b.Fatal(err)
		}
		end, err := m.bulk(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for i := 0; i < len(items); i += 5000 {
			if _, _, err := m.Apply(b.Context(), items[i:min(i+5000, len(items))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := end(b.Context()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(items))/time.Since(t0).Seconds(), "events/s")
		_ = m.Close()
	}
}

// A bulk fill builds the index of orders by customer at its first
// erasure, so that each erasure finds its customer's orders through it
// rather than by reading the whole table, and ends with every index of
// the orders table whichever it built then: the one an erasure built is
// not built twice (which fails), and one whose batch rolled back is built
// at the end still.
func TestBulkFillEndsWithEveryIndexAfterErasures(t *testing.T) {
	ctx := t.Context()
	indexes := func(m *ReadModel) map[string]bool {
		t.Helper()
		tx, err := m.w.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		names, err := indexesOf(ctx, tx)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	want := indexes(openModel(t, filepath.Join(t.TempDir(), "fresh.db")))
	if !want[customerIndexName] || len(want) < 4 {
		t.Fatalf("a fresh model's indexes: %v", want)
	}
	items := interleaved()
	for _, rolledBack := range []bool{false, true} {
		m := openModel(t, filepath.Join(t.TempDir(), fmt.Sprint("fill-", rolledBack, ".db")))
		end, err := m.bulk(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(items); i += 7 {
			if _, _, err := m.Apply(ctx, items[i:min(i+7, len(items))]); err != nil {
				t.Fatal(err)
			}
			if m.carry.customerIndexed && !rolledBack && !indexes(m)[customerIndexName] {
				t.Fatal("the erasure did not build the customers' index")
			}
		}
		if !m.carry.customerIndexed {
			t.Fatal("the fill met no erasure")
		}
		if rolledBack {
			if _, err := m.w.ExecContext(ctx, `DROP INDEX `+customerIndexName); err != nil {
				t.Fatal(err)
			}
		}
		if err := end(ctx); err != nil {
			t.Fatalf("rolled back %v: end of the fill: %v", rolledBack, err)
		}
		if got := indexes(m); !maps.Equal(got, want) {
			t.Fatalf("rolled back %v: indexes after the fill %v, want %v", rolledBack, got, want)
		}
	}
}
