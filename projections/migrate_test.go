package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

// histories is a log touching every field of an order: four orders through
// every event type, interleaved, with their positions and times.
func histories() []Item {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ship := order.Address{Name: "Ada", Line1: "1 Way", Line2: "Flat 2", City: "Oslo", Region: "Oslo", PostalCode: "0150", Country: "NO"}
	type ev struct {
		id string
		e  order.Event
	}
	log := []ev{
		{"a1", order.OrderCreated{OrderID: "a1", CustomerID: "c-1", Currency: "EUR", Lines: []order.Line{{SKU: "S", Quantity: 2, UnitPrice: 250}}, Shipping: &ship}},
		{"b2", order.OrderCreated{OrderID: "b2", CustomerID: "c-1", Currency: "EUR"}},
		{"a1", order.ItemAdded{SKU: "T", Quantity: 1, UnitPrice: 999}},
		{"c3", order.OrderCreated{OrderID: "c3", CustomerID: "c-2", Currency: "USD"}},
		{"a1", order.ItemQuantityChanged{SKU: "S", Quantity: 3}},
		{"b2", order.ItemAdded{SKU: "U", Quantity: 1, UnitPrice: 100}},
		{"b2", order.ShippingAddressSet{Address: order.Address{Line1: "2 Road", City: "Paris", Country: "FR"}}},
		{"a1", order.ItemRemoved{SKU: "T"}},
		{"a1", order.OrderPlaced{Subtotal: 750, Tax: 150, Total: 900}},
		{"b2", order.OrderPlaced{Total: 100}},
		{"a1", order.PaymentDeclined{PaymentRef: "p-0", Reason: "insufficient funds"}},
		{"b2", order.PaymentAuthorized{PaymentRef: "p-1", Amount: 100}},
		{"a1", order.PaymentAuthorized{PaymentRef: "p-2", Amount: 900}},
		{"b2", order.OrderCancelled{Reason: "changed mind"}},
		{"a1", order.OrderShipped{Carrier: "DHL", TrackingNumber: "T-9"}},
		{"b2", order.RefundIssued{PaymentRef: "p-1", RefundRef: "r-1", Amount: 100}},
		{"d4", order.OrderCreated{OrderID: "d4", CustomerID: "c-2", Currency: "USD"}},
		{"a1", order.OrderDelivered{}},
		{"d4", order.OrderCancelled{}},
	}
	items := make([]Item, len(log))
	for i, l := range log {
		pos := uint64(i + 1)
		items[i] = Item{Rec: eventstore.Recorded{OrderID: l.id, Position: pos, Type: l.e.EventType(), Time: at.Add(time.Duration(pos) * time.Second)}, Event: l.e}
	}
	return items
}

// fold is what the log's items fold to, order by order.
func fold(items []Item) map[string]Order {
	out := map[string]Order{}
	for _, it := range items {
		o := out[it.Rec.OrderID]
		o.State = order.Evolve(o.State, it.Event, it.Rec.Time)
		o.Revision = it.Rec.Position
		out[it.Rec.OrderID] = o
	}
	return out
}

// summaries is what the customer summaries of orders must be.
func summaries(orders map[string]Order) map[string]CustomerSummary {
	out := map[string]CustomerSummary{}
	for _, o := range orders {
		c := o.State.CustomerID
		s, ok := out[c]
		if !ok {
			s = CustomerSummary{CustomerID: c, ByStatus: map[order.Status]int64{}, Spend: map[string]int64{}}
		}
		s.ByStatus[o.State.Status]++
		if net := o.State.PaidAmount; net != 0 && o.State.RefundRef == "" {
			s.Spend[o.State.Currency] += net
		}
		out[c] = s
	}
	return out
}

// assertHolds checks that m answers every order of want, both folded and as
// the stored message, and every customer summary, as the log folds them.
func assertHolds(t *testing.T, m *ReadModel, want map[string]Order) {
	t.Helper()
	ctx := t.Context()
	for id, w := range want {
		got, _, err := m.GetOrder(ctx, id)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("GetOrder(%s) = %+v, %v\nwant %+v", id, got, err, w)
		}
		pb, _, err := m.GetOrderMessage(ctx, id)
		if err != nil || !proto.Equal(pb, convert.OrderToProto(w.State)) {
			t.Errorf("GetOrderMessage(%s) = %v, %v\nwant %v", id, pb, err, convert.OrderToProto(w.State))
		}
	}
	list, _, err := m.ListOrders(ctx, ListFilter{}, nil, 100)
	if err != nil || len(list) != len(want) {
		t.Fatalf("ListOrders: %d orders, %v; want %d", len(list), err, len(want))
	}
	for i, o := range list {
		if i > 0 && o.State.CreatedAt.After(list[i-1].State.CreatedAt) {
			t.Errorf("listed %s, created at %v, after %s, created at %v", o.State.ID, o.State.CreatedAt, list[i-1].State.ID, list[i-1].State.CreatedAt)
		}
		if !reflect.DeepEqual(o, want[o.State.ID]) {
			t.Errorf("listed %+v\nwant %+v", o, want[o.State.ID])
		}
	}
	for c, w := range summaries(want) {
		got, _, err := m.GetCustomerSummary(ctx, c)
		if err != nil || !reflect.DeepEqual(got, w) {
			t.Errorf("summary of %s = %+v, %v; want %+v", c, got, err, w)
		}
	}
}

// Every order the read model holds reads back equal to what its history
// folds to, whether the read folds the stored message or hands it out.
func TestOrdersReadBackAsTheLogFoldsThem(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	items := histories()
	// Two batches, so orders are loaded back from their stored bodies.
	for _, b := range [][]Item{items[:9], items[9:]} {
		if _, _, err := m.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	want := fold(items)
	assertHolds(t, m, want)
	// What the row's columns and the other fields give is not stored.
	rows, err := m.r.QueryContext(ctx, `SELECT body FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var blob []byte
		var raw ordersv1.Order
		if err := rows.Scan(&blob); err != nil || proto.Unmarshal(blob, &raw) != nil {
			t.Fatal("unreadable body", err)
		}
		if raw.OrderId != "" || raw.CustomerId != "" || raw.Revision != 0 || raw.GrandTotal != 0 || slices.ContainsFunc(raw.Lines, func(l *ordersv1.LineItem) bool { return l.LineTotal != 0 }) {
			t.Errorf("stored body keeps derived fields: %v", &raw)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	// Bodies written with every field set, the derived ones included (as
	// schema 3 first wrote them), read the same.
	for id, o := range want {
		full, err := proto.Marshal(convert.OrderToProto(o.State))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.w.ExecContext(ctx, `UPDATE orders SET body = ? WHERE id = ?`, full, id); err != nil {
			t.Fatal(err)
		}
	}
	assertHolds(t, m, want)
}

// writeLegacy writes orders, their summaries and the checkpoint the way
// schemas 1 and 2 stored them: encoding/json of order.State in the state
// column, beside the display columns.
func writeLegacy(t *testing.T, db *sql.DB, orders map[string]Order, position uint64) {
	t.Helper()
	nt := func(at time.Time) any {
		if at.IsZero() {
			return nil
		}
		return at.UnixNano()
	}
	for id, o := range orders {
		s := o.State
		blob, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var country, city string
		if s.Shipping != nil {
			country, city = s.Shipping.Country, s.Shipping.City
		}
		if _, err := db.Exec(`INSERT INTO orders (id, customer_id, status, currency, total, line_count, ship_country, ship_city,
			created_at, updated_at, placed_at, paid_at, shipped_at, delivered_at, cancelled_at, revision, version, state)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, s.CustomerID, int(s.Status), s.Currency, s.Total, len(s.Lines), country, city, s.CreatedAt.UnixNano(), s.UpdatedAt.UnixNano(),
			nt(s.PlacedAt), nt(s.PaidAt), nt(s.ShippedAt), nt(s.DeliveredAt), nt(s.CancelledAt), o.Revision, s.Version, blob); err != nil {
			t.Fatal(err)
		}
	}
	for c, sum := range summaries(orders) {
		for st, n := range sum.ByStatus {
			if _, err := db.Exec(`INSERT INTO customer_status (customer_id, status, count) VALUES (?, ?, ?)`, c, int(st), n); err != nil {
				t.Fatal(err)
			}
		}
		for cur, amt := range sum.Spend {
			if _, err := db.Exec(`INSERT INTO customer_spend (customer_id, currency, amount) VALUES (?, ?, ?)`, c, cur, amt); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := db.Exec(`UPDATE checkpoint SET position = ? WHERE id = 1`, position); err != nil {
		t.Fatal(err)
	}
}

// A read model written by an older schema (state as JSON of the Go struct)
// opens under the current one with every order, list and summary as the
// log folds them, in the compact format, and goes on applying events.
func TestMigrationConvertsOlderSchemas(t *testing.T) {
	for _, from := range []int{1, 2, 3, 4} {
		t.Run(fmt.Sprint("schema ", from), func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "rm.db")
			items := histories()
			head := items[:len(items)-3]
			db, err := sql.Open("sqlite", dsn(path, false))
			if err != nil {
				t.Fatal(err)
			}
			db.SetMaxOpenConns(1)
			if err := migrate(ctx, db, min(from, 2)); err != nil {
				t.Fatal(err)
			}
			writeLegacy(t, db, fold(head), head[len(head)-1].Rec.Position)
			// Later schemas' files are schema 2's converted, as an upgrade
			// left them.
			if err := migrate(ctx, db, from); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			m := openModel(t, path)
			assertSchema(ctx, t, m)
			assertHolds(t, m, fold(head))
			// Stored orders are numbered below every log position.
			var most int64
			if err := m.r.QueryRowContext(ctx, `SELECT MAX(seq) FROM orders`).Scan(&most); err != nil || most >= 1 {
				t.Fatalf("migrated orders numbered up to %d, %v; want below 1", most, err)
			}
			if p, err := m.Position(ctx); err != nil || p != head[len(head)-1].Rec.Position {
				t.Fatalf("checkpoint %d %v, want %d", p, err, head[len(head)-1].Rec.Position)
			}
			// It keeps applying: updates of migrated orders and a new one.
			if _, _, err := m.Apply(ctx, items); err != nil {
				t.Fatal(err)
			}
			assertHolds(t, m, fold(items))
		})
	}
}

// assertSchema checks that m's orders table is schema 5's: a rowid table
// whose rowid is the seq column, with the body column and without the JSON
// state, with no UNIQUE constraint (whose index a bulk fill could not
// drop), the unique index orders_id on the id alone, and three list
// indexes none of which holds the order id.
func assertSchema(ctx context.Context, t *testing.T, m *ReadModel) {
	t.Helper()
	var ddl string
	if err := m.r.QueryRowContext(ctx, `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	up := strings.Join(strings.Fields(strings.ToUpper(ddl)), " ")
	if strings.Contains(up, "WITHOUT ROWID") || !strings.Contains(up, "SEQ INTEGER PRIMARY KEY") || !strings.Contains(up, "BODY") || strings.Contains(up, "STATE") || strings.Contains(up, "UNIQUE") {
		t.Fatalf("orders table after migration: %s", ddl)
	}
	rows, err := m.r.QueryContext(ctx, `SELECT name, "unique", origin FROM pragma_index_list('orders')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var idx int
	var byID bool
	for rows.Next() {
		var name, origin string
		var unique bool
		if err := rows.Scan(&name, &unique, &origin); err != nil {
			t.Fatal(err)
		}
		if origin != "c" {
			t.Errorf("index %s comes from a constraint (%s), not CREATE INDEX", name, origin)
		}
		cols, err := m.r.QueryContext(ctx, `SELECT name FROM pragma_index_info(?)`, name)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for cols.Next() {
			var col string
			if err := cols.Scan(&col); err != nil {
				t.Fatal(err)
			}
			names = append(names, col)
		}
		switch {
		case name == "orders_id":
			byID = true
			if !unique || !slices.Equal(names, []string{"id"}) {
				t.Errorf("orders_id: unique %v on %v; want unique on id", unique, names)
			}
		case unique || slices.Contains(names, "id"):
			t.Errorf("index %s: unique %v on %v; want a list index without the order id", name, unique, names)
		default:
			idx++
		}
		if err := cols.Err(); err != nil {
			t.Fatal(err)
		}
		_ = cols.Close()
	}
	if err := rows.Err(); err != nil || idx != 3 || !byID {
		t.Fatalf("orders has %d list indexes and orders_id %v, %v; want 3 and orders_id", idx, byID, err)
	}
}

var (
	migrateOrders = flag.Int("migrate.orders", 2000, "orders in the file BenchmarkMigration migrates")
	migrateFrom   = flag.Int("migrate.from", 2, "the schema of the file BenchmarkMigration migrates (2 to 4)")
)

// BenchmarkMigration opens a read model of -migrate.orders orders (each as
// a five-event history folds it: created with an address, two items,
// placed, paid) at schema -migrate.from, which migrates every row to the
// current schema. 200,000 orders are a log of 1,000,000 events.
func BenchmarkMigration(b *testing.B) {
	ctx := b.Context()
	if *migrateFrom < 2 || *migrateFrom > 4 {
		b.Fatalf("-migrate.from %d: want 2 to 4", *migrateFrom)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for b.Loop() {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "rm.db")
		db, err := sql.Open("sqlite", dsn(path, false))
		if err != nil {
			b.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		if err := migrate(ctx, db, 2); err != nil {
			b.Fatal(err)
		}
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		for i := range *migrateOrders {
			id := fmt.Sprintf("%08x-%07d", uint32(i)*2654435761, i)
			var s order.State
			for j, e := range []order.Event{
				order.OrderCreated{OrderID: id, CustomerID: fmt.Sprint("c-", i%97), Currency: "EUR", Shipping: &order.Address{Line1: "1 Way", City: "Paris", Country: "FR"}},
				order.ItemAdded{SKU: "A", Quantity: 2, UnitPrice: 1250}, order.ItemAdded{SKU: "B", Quantity: 1, UnitPrice: 499},
				order.OrderPlaced{Total: 2999}, order.PaymentAuthorized{PaymentRef: "psp", Amount: 2999},
			} {
				s = order.Evolve(s, e, at.Add(time.Duration(5*i+j)*time.Millisecond))
			}
			blob, _ := json.Marshal(s)
			if _, err := tx.Exec(`INSERT INTO orders (id, customer_id, status, currency, total, line_count, ship_country, ship_city,
				created_at, updated_at, placed_at, paid_at, revision, version, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				id, s.CustomerID, int(s.Status), s.Currency, s.Total, len(s.Lines), "FR", "Paris", s.CreatedAt.UnixNano(), s.UpdatedAt.UnixNano(),
				s.PlacedAt.UnixNano(), s.PaidAt.UnixNano(), 5*i+5, s.Version, blob); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		if err := migrate(ctx, db, *migrateFrom); err != nil {
			b.Fatal(err)
		}
		_ = db.Close()
		b.StartTimer()
		m, err := OpenReadModel(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = m.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(*migrateOrders), "orders")
}
