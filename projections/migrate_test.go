package projections

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// A read model written by the first schema (orders clustered on their id)
// opens under the current one with every order, list and summary as it was,
// and goes on applying events.
func TestMigrationKeepsAReadModelBuiltByTheFirstSchema(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rm.db")

	// Build a model at schema 1 through the same Apply the runner uses.
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if err := migrate(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	old, err := prepare(ctx, path, db, db)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	pos := uint64(0)
	var items []Item
	add := func(id string, e order.Event) {
		pos++
		items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Type: e.EventType(), Time: at.Add(time.Duration(pos) * time.Second)}, Event: e})
	}
	for i := range 30 {
		id := fmt.Sprintf("%08x-order", uint32(i)*2654435761) // scattered, as derived ids are
		add(id, order.OrderCreated{OrderID: id, CustomerID: fmt.Sprint("c-", i%3), Currency: "EUR",
			Lines: []order.Line{{SKU: "S", Quantity: int64(1 + i), UnitPrice: 100}}})
		if i%2 == 0 {
			add(id, order.ShippingAddressSet{Address: order.Address{Line1: "1", City: "Oslo", Country: "NO"}})
			add(id, order.OrderPlaced{Total: int64(100 * (1 + i))})
		}
	}
	if _, _, err := old.Apply(ctx, items); err != nil {
		t.Fatal(err)
	}
	type snapshot struct {
		orders    []Order
		summaries []CustomerSummary
	}
	read := func(m *ReadModel) snapshot {
		t.Helper()
		var s snapshot
		var err error
		if s.orders, _, err = m.ListOrders(ctx, ListFilter{}, nil, 500); err != nil {
			t.Fatal(err)
		}
		for c := range 3 {
			sum, _, err := m.GetCustomerSummary(ctx, fmt.Sprint("c-", c))
			if err != nil {
				t.Fatal(err)
			}
			s.summaries = append(s.summaries, sum)
		}
		return s
	}
	before := read(old)
	if len(before.orders) != 30 {
		t.Fatalf("schema 1 model lists %d orders, want 30", len(before.orders))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	m, err := OpenReadModel(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	var ddl string
	if err := m.r.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(ddl), "WITHOUT ROWID") {
		t.Fatalf("orders is still clustered on its id: %s", ddl)
	}
	after := read(m)
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("migration changed the model:\nbefore %v\nafter  %v", before, after)
	}
	if p, err := m.Position(ctx); err != nil || p != pos {
		t.Fatalf("checkpoint %d %v, want %d", p, err, pos)
	}

	// It keeps applying: an update of a migrated order and a new order.
	first := before.orders[len(before.orders)-1].State.ID
	items = items[:0]
	add(first, order.ItemAdded{SKU: "T", Quantity: 2, UnitPrice: 50})
	add("new-order", order.OrderCreated{OrderID: "new-order", CustomerID: "c-0", Currency: "EUR"})
	if _, _, err := m.Apply(ctx, items); err != nil {
		t.Fatal(err)
	}
	o, _, err := m.GetOrder(ctx, first)
	if err != nil || len(o.State.Lines) != 2 || o.Revision != pos-1 {
		t.Fatalf("updated order after migration: %+v %v", o, err)
	}
	if _, _, err := m.GetOrder(ctx, "new-order"); err != nil {
		t.Fatalf("new order after migration: %v", err)
	}
	if n, _, err := m.ListOrders(ctx, ListFilter{}, nil, 500); err != nil || len(n) != 31 {
		t.Fatalf("after migration and two events: %d orders, %v", len(n), err)
	}
}
