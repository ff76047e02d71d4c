package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// openModel opens the read model at path for the test, closed when it
// ends.
func openModel(t *testing.T, path string) *ReadModel {
	t.Helper()
	m, err := OpenReadModel(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// Concurrent point reads reuse the read pool's connections instead of
// opening (and closing) one per call, and answer with the checkpoint of the
// state they read; an unknown order is ErrOrderNotFound.
func TestConcurrentReadsKeepTheirConnections(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var items []Item
	for i := range 20 {
		id := fmt.Sprintf("order-%d", i)
		items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: uint64(i + 1), Type: "OrderCreated", Time: at},
			Event: order.OrderCreated{OrderID: id, CustomerID: "c-1", Currency: "EUR"}})
	}
	if _, _, err := m.Apply(ctx, items); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*readConns)
	for g := range 4 * readConns {
		wg.Go(func() {
			for i := range 25 {
				id := fmt.Sprintf("order-%d", (g+i)%20)
				o, pos, err := m.GetOrder(ctx, id)
				if err != nil || o.State.ID != id || pos != 20 {
					errs <- fmt.Errorf("GetOrder(%s) = %s at %d, %v", id, o.State.ID, pos, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := m.r.Stats(); st.MaxIdleClosed != 0 || st.MaxLifetimeClosed != 0 || st.MaxIdleTimeClosed != 0 || st.OpenConnections > readConns {
		t.Fatalf("read pool closed connections it opened: %+v", st)
	}
	if _, _, err := m.GetOrder(ctx, "nobody"); !errors.Is(err, ErrOrderNotFound) {
		t.Fatalf("unknown order: %v, want ErrOrderNotFound", err)
	}
}

// A point read of an order the recent orders do not hold reads the file
// under its context: one that has ended fails it with the context's error,
// and so does one that ends while the read waits for a read connection
// (every one of them held here), rather than the read answering after its
// caller gave up; with a connection free, it reads the order.
func TestPointReadFromTheFileHonoursItsContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rm.db")
	m := openModel(t, path)
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if _, _, err := m.Apply(t.Context(), []Item{{Rec: eventstore.Recorded{OrderID: "o-1", Position: 1, Type: "OrderCreated", Time: at},
		Event: order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = openModel(t, path) // nothing in its recent orders
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := m.GetOrder(ctx, "o-1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("GetOrder with a cancelled context: %v, want context.Canceled", err)
	}
	if _, _, err := m.OrderWire(ctx, "o-1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("OrderWire with a cancelled context: %v, want context.Canceled", err)
	}

	var held []*sql.Conn
	for range readConns {
		c, err := m.r.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	dctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	// The connections come free as the deadline passes, so a read that
	// ignored its deadline would answer instead of hanging the test.
	released := make(chan error, 1)
	go func() {
		<-dctx.Done()
		var err error
		for _, c := range held {
			err = errors.Join(err, c.Close())
		}
		released <- err
	}()
	_, _, err := m.GetOrder(dctx, "o-1")
	if rerr := <-released; rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetOrder waiting for a read connection past its deadline: %v, want context.DeadlineExceeded", err)
	}
	o, pos, err := m.GetOrder(t.Context(), "o-1")
	if err != nil || o.State.ID != "o-1" || pos != 1 {
		t.Fatalf("GetOrder = %s at %d, %v; want o-1 at 1", o.State.ID, pos, err)
	}
}

// A model filled in bulk is written without the orders table's indexes
// and ends with the schema's indexes and the DSN's durability and page
// cache, answering lists as one filled event by event does.
func TestBulkFillEndsWithTheSchemasIndexes(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	plain, bulk := openModel(t, filepath.Join(dir, "plain.db")), openModel(t, filepath.Join(dir, "bulk.db"))
	end, err := bulk.bulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The fill writes the orders table without any of its indexes, the
	// unique one on the id included.
	var during int
	if err := bulk.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_index_list('orders')`).Scan(&during); err != nil || during != 0 {
		t.Fatalf("%d indexes on orders during the fill, %v; want none", during, err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	var items []Item
	for i := range 50 {
		id := fmt.Sprintf("%08x-order", uint32(i)*2654435761)
		items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: uint64(i + 1), Type: "OrderCreated", Time: at.Add(time.Duration(i) * time.Second)},
			Event: order.OrderCreated{OrderID: id, CustomerID: fmt.Sprint("c-", i%3), Currency: "EUR"}})
	}
	for _, m := range []*ReadModel{plain, bulk} {
		for i := 0; i < len(items); i += 20 {
			if _, _, err := m.Apply(ctx, items[i:min(i+20, len(items))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	indexes := func(m *ReadModel) map[string]string {
		rows, err := m.w.QueryContext(ctx, `SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var n, q string
			if err := rows.Scan(&n, &q); err != nil {
				t.Fatal(err)
			}
			out[n] = q
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if p, b := indexes(plain), indexes(bulk); !reflect.DeepEqual(p, b) {
		t.Fatalf("indexes after a bulk fill %v, want %v", b, p)
	}
	var sync int
	if err := bulk.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 1 {
		t.Fatalf("synchronous %d (%v) after the bulk fill, want 1 (NORMAL)", sync, err)
	}
	var cache, want int
	if err := bulk.w.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cache); err != nil {
		t.Fatal(err)
	}
	if err := plain.w.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if cache != want || want == -2000 {
		t.Fatalf("writer's cache_size %d after the bulk fill, %d opened (SQLite's default is -2000)", cache, want)
	}
	var mapped int64
	if err := bulk.w.QueryRowContext(ctx, `PRAGMA mmap_size`).Scan(&mapped); err != nil || mapped != 0 {
		t.Fatalf("writer's mmap_size %d (%v) after the bulk fill, want 0: the index build's mapping outlived it", mapped, err)
	}
	for _, f := range []ListFilter{{}, {CustomerID: "c-1"}, {Status: order.StatusDraft}} {
		want, _, err := plain.ListOrders(ctx, f, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := bulk.ListOrders(ctx, f, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("list %+v after a bulk fill differs", f)
		}
	}
}

// An order's first event is folded without a lookup, and what follows in
// later batches still finds the row it made: its items, and a second
// OrderCreated dead-lettered as inapplicable.
func TestFirstEventsThenLaterBatches(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	item := func(pos, version uint64, e order.Event) Item {
		return Item{Rec: eventstore.Recorded{OrderID: "order-1", Position: pos, Version: version, Type: e.EventType(), Time: at}, Event: e}
	}
	created := order.OrderCreated{OrderID: "order-1", CustomerID: "c-1", Currency: "EUR"}
	if _, _, err := m.Apply(ctx, []Item{item(1, 1, created)}); err != nil {
		t.Fatal(err)
	}
	_, dead, err := m.Apply(ctx, []Item{item(2, 2, order.ItemAdded{SKU: "S", Quantity: 2, UnitPrice: 100}), item(3, 3, created)})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Position != 3 {
		t.Fatalf("dead letters %+v, want the second OrderCreated at 3", dead)
	}
	o, pos, err := m.GetOrder(ctx, "order-1")
	if err != nil || pos != 3 || len(o.State.Lines) != 1 || o.State.CustomerID != "c-1" {
		t.Fatalf("GetOrder = %+v at %d, %v; want the created order with its item at 3", o.State, pos, err)
	}
}

// Orders changed one event per batch keep their rows and the lists that
// filter on their indexed columns right, whether an event left those
// columns as they were (the row is updated without touching the indexes)
// or moved the order to another status: each row reads back as what its
// history folds to, and each list finds exactly the orders it should.
func TestRowsAndIndexesFollowEveryEvent(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		id string
		e  order.Event
	}
	steps := []step{
		{"o-1", order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR"}},
		{"o-2", order.OrderCreated{OrderID: "o-2", CustomerID: "c-2", Currency: "EUR"}},
		{"o-1", order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 100}},
		{"o-2", order.ItemAdded{SKU: "B", Quantity: 2, UnitPrice: 50}},
		{"o-1", order.ShippingAddressSet{Address: order.Address{Line1: "1", City: "Oslo", Country: "NO"}}},
		{"o-1", order.OrderPlaced{Subtotal: 100, Total: 100}},
		{"o-1", order.ItemAdded{SKU: "C", Quantity: 1, UnitPrice: 1}}, // a fact after the status change that leaves the indexed columns alone
	}
	folded := map[string]order.State{}
	versions := map[string]uint64{}
	revisions := map[string]uint64{} // position of each order's last applied event
	for i, s := range steps {
		versions[s.id]++
		item := Item{Rec: eventstore.Recorded{OrderID: s.id, Position: uint64(i + 1), Version: versions[s.id], Type: s.e.EventType(), Time: at}, Event: s.e}
		if _, _, err := m.Apply(ctx, []Item{item}); err != nil {
			t.Fatal(err)
		}
		if applicable(folded[s.id], item.Rec, s.e) == nil {
			folded[s.id] = order.Evolve(folded[s.id], s.e, at)
			revisions[s.id] = item.Rec.Position
		}
	}
	for id, want := range folded {
		var rev uint64
		var customer string
		var status int
		var body []byte
		if err := m.w.QueryRowContext(ctx, `SELECT revision, customer_id, status, body FROM orders WHERE id = ?`, id).Scan(&rev, &customer, &status, &body); err != nil {
			t.Fatal(err)
		}
		pb, err := readBody(id, customer, body)
		if err != nil {
			t.Fatal(err)
		}
		if got := convert.OrderFromProto(pb); !reflect.DeepEqual(got, want) || customer != want.CustomerID || order.Status(status) != want.Status {
			t.Errorf("row of %s: %+v (customer %s, status %d), want %+v", id, got, customer, status, want)
		}
		if rev != revisions[id] {
			t.Errorf("row of %s: revision %d, want %d", id, rev, revisions[id])
		}
	}
	for _, tc := range []struct {
		f    ListFilter
		want []string
	}{
		{ListFilter{Status: order.StatusPlaced}, []string{"o-1"}},
		{ListFilter{Status: order.StatusDraft}, []string{"o-2"}},
		{ListFilter{CustomerID: "c-1"}, []string{"o-1"}},
		{ListFilter{}, []string{"o-2", "o-1"}},
	} {
		got, _, err := m.ListOrders(ctx, tc.f, nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range got {
			ids = append(ids, o.State.ID)
		}
		if !reflect.DeepEqual(ids, tc.want) {
			t.Errorf("list %+v: %v, want %v", tc.f, ids, tc.want)
		}
	}
}

// The checkpoint an apply starts from is the one the last commit left,
// kept in memory rather than read back per batch: an item at or below it
// is skipped, and an apply that fails part-way (here a trigger refuses one
// order's row) moves nothing, so its positions are applied by the next
// batch that holds them.
func TestApplyStartsFromTheLastCommittedCheckpoint(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	if _, err := m.w.ExecContext(ctx, `CREATE TRIGGER refuse_poison BEFORE INSERT ON orders WHEN NEW.customer_id = 'poison'
		BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	created := func(pos uint64, id, customer string) Item {
		e := order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR"}
		return Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Version: 1, Type: e.EventType(), Time: at}, Event: e}
	}
	if p, _, err := m.Apply(ctx, []Item{created(1, "o-1", "c")}); err != nil || p != 1 {
		t.Fatalf("Apply = %d, %v; want 1", p, err)
	}
	if _, _, err := m.Apply(ctx, []Item{created(2, "o-2", "c"), created(3, "o-3", "poison")}); err == nil {
		t.Fatal("Apply of a refused row succeeded")
	}
	if p, err := m.Position(ctx); err != nil || p != 1 {
		t.Fatalf("checkpoint after a failed apply = %d, %v; want 1", p, err)
	}
	// Redelivered with what came before it: 1 is skipped, 2 and 3 apply.
	if p, _, err := m.Apply(ctx, []Item{created(1, "o-1", "c"), created(2, "o-2", "c"), created(3, "o-3", "c")}); err != nil || p != 3 {
		t.Fatalf("Apply = %d, %v; want 3", p, err)
	}
	s, _, err := m.GetCustomerSummary(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if s.ByStatus[order.StatusDraft] != 3 {
		t.Fatalf("customer c has %d draft orders, want 3 (each created once)", s.ByStatus[order.StatusDraft])
	}
	if p, err := m.Position(ctx); err != nil || p != 3 {
		t.Fatalf("checkpoint = %d, %v; want 3", p, err)
	}
}

// The fill is written without syncs, so its end must get a checkpoint
// through before the model can be made current: while a reader's snapshot
// holds the WAL, the end fails rather than report a model a power loss
// could take the indexes from. Once the reader is gone it gets through.
func TestBulkFillEndFailsWhenItsCheckpointCannotGetThrough(t *testing.T) {
	ctx := t.Context()
	bulk := openModel(t, filepath.Join(t.TempDir(), "bulk.db"))
	end, err := bulk.bulk(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if _, _, err := bulk.Apply(ctx, []Item{{Rec: eventstore.Recorded{OrderID: "o-1", Position: 1, Type: "OrderCreated", Time: at},
		Event: order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	// A read transaction that has read holds its snapshot, and with it
	// the WAL, until it ends.
	tx, err := bulk.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the reader sees %d orders, %v", n, err)
	}
	// Each try of the checkpoint waits for the reader up to the busy
	// timeout: shortened, so the test does not wait out the DSN's.
	if _, err := bulk.w.ExecContext(ctx, `PRAGMA busy_timeout = 20`); err != nil {
		t.Fatal(err)
	}
	if err := end(ctx); err == nil {
		t.Fatal("the fill ended with its WAL held by a reader: its checkpoint cannot have got through")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if done, err := bulk.truncateWAL(ctx); err != nil || !done {
		t.Fatalf("checkpoint once the reader is gone: done %v, %v", done, err)
	}
}
