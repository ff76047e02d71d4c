package projections

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/order"
)

// After a rebuild's swap the replaced file keeps serving the queries that
// started on it for a while, and an erasure applied meanwhile reaches only
// the new file: the replaced one holds the forgotten customer's address
// until it goes. Unlinking it left those bytes on the disk, here read
// through a second link to its files made before the swap.
func TestReplacedReadModelKeepsNoErasedDataOnceDiscarded(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	store, err := eventstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	appendEvent := func(subject string, e order.Event) uint64 {
		t.Helper()
		typ, data, err := convert.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Append(ctx, subject, 0, []eventstore.EventData{{Type: typ, Data: data,
			Meta: eventstore.Metadata{RequestID: subject + typ, OccurredAt: time.Now()}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Position
	}
	d, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := NewRunner(store, d)
	if err != nil {
		t.Fatal(err)
	}
	graceOver := make(chan func(), 1)
	r.afterGrace = func(discard func()) { graceOver <- discard }
	rctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- r.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	const id, customer, secret = "o-1", "c-1", "29 Forgotten Row, flat Babbage"
	created := appendEvent(id, order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR",
		Shipping: &order.Address{Name: "Ada", Line1: secret, City: "London", Country: "GB"}})
	if err := r.WaitForCommitted(ctx, created); err != nil {
		t.Fatal(err)
	}
	old := r.ReadModel()
	kept := t.TempDir()
	for _, s := range dbFiles {
		if err := os.Link(old.Path()+s, filepath.Join(kept, "orders"+s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := r.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	forgot := appendEvent(order.CustomersSubjectID, order.CustomerForgotten{CustomerID: customer})
	if err := r.WaitForCommitted(ctx, forgot); err != nil {
		t.Fatal(err)
	}
	if held, _, err := old.ListOrders(ctx, ListFilter{CustomerID: customer}, nil, 10); err != nil || len(held) != 1 ||
		held[0].State.Shipping == nil || held[0].State.Shipping.Line1 != secret {
		t.Fatalf("the replaced model before its grace is over: %+v, %v; want the address it held", held, err)
	}

	(<-graceOver)()
	if files, err := os.ReadDir(kept); err != nil || len(files) == 0 {
		t.Fatalf("no link to the replaced model's files was made (%v)", err)
	}
	for name, at := range secretIn(t, kept, secret) {
		t.Errorf("the forgotten customer's address is still in the bytes of the discarded %s, at offset %d", name, at)
	}
}

// secretIn returns the files in dir whose bytes hold secret, with its
// offset in each.
func secretIn(t *testing.T, dir, secret string) map[string]int {
	t.Helper()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(secret)); i >= 0 {
			in[f.Name()] = i
		}
	}
	return in
}

// A process that died between a swap and the replaced file's discard left
// that file beside the live one, and an erasure applied after the swap is
// not in it: start-up, which deletes it, overwrites it first, its WAL
// too. Here the dead process's files are copies of a model still open (a
// WAL with frames in it), and a second link to them reads what the
// deletion left on the disk.
func TestStartUpOverwritesAReplacedReadModelACrashLeft(t *testing.T) {
	ctx := t.Context()
	const secret = "41 Crashed Close, flat Hopper"
	old := openModel(t, filepath.Join(t.TempDir(), "orders.db"))
	withAddress := created("o-1", "c-1", 1)
	ev := withAddress.Event.(order.OrderCreated)
	ev.Shipping = &order.Address{Name: "Grace", Line1: secret, City: "Arlington", Country: "US"}
	withAddress.Event = ev
	if _, _, err := old.Apply(ctx, []Item{withAddress}); err != nil {
		t.Fatal(err)
	}
	crashed, kept := t.TempDir(), t.TempDir()
	for _, s := range dbFiles {
		copyFile(t, old.Path()+s, filepath.Join(crashed, "orders.db"+s))
		if err := os.Link(filepath.Join(crashed, "orders.db"+s), filepath.Join(kept, "orders"+s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(crashed, currentFile), []byte("orders-2.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(secretIn(t, kept, secret)) == 0 {
		t.Fatal("the replaced model's files hold no address before start-up: nothing to show")
	}

	d, err := Open(ctx, crashed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	for _, s := range dbFiles {
		if _, err := os.Stat(filepath.Join(crashed, "orders.db"+s)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("orders.db%s after start-up: %v; want it deleted", s, err)
		}
	}
	for name, at := range secretIn(t, kept, secret) {
		t.Errorf("the address is still in the bytes of the deleted %s, at offset %d", name, at)
	}
}

// A discard overwrites the files only once release finds no connection
// open on them. A query that started before the model was closed keeps
// its connection, and reads the file, until it ends: the count release
// waits on includes it.
func TestClosedReadModelCountsTheConnectionOfAQueryStillRunning(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	if _, _, err := m.Apply(ctx, []Item{created("o-1", "c-1", 1), created("o-2", "c-1", 2)}); err != nil {
		t.Fatal(err)
	}
	rows, err := m.r.QueryContext(ctx, `SELECT id FROM orders ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := m.openConns(); n == 0 {
		t.Fatal("no connection counted open while a query still runs on the closed model")
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) != 2 {
		t.Fatalf("the query that outlived the close read %v, %v; want both orders", ids, err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if n := m.openConns(); n != 0 {
		t.Fatalf("%d connections counted open once the last query ended", n)
	}
}

// A discard waits for a query still running on the model before it
// overwrites the files: here one that started before it, which still
// reads the file as it was, and the overwrite follows its end.
func TestDiscardWaitsForAQueryStillRunning(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	m := openModel(t, filepath.Join(dir, "rm.db"))
	if _, _, err := m.Apply(ctx, []Item{created("o-1", "c-1", 1), created("o-2", "c-1", 2)}); err != nil {
		t.Fatal(err)
	}
	// A second link reads what the discard leaves of the file.
	kept := filepath.Join(dir, "kept")
	if err := os.Link(m.Path(), kept); err != nil {
		t.Fatal(err)
	}
	rows, err := m.r.QueryContext(ctx, `SELECT id FROM orders ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	waiting := make(chan struct{})
	var once sync.Once
	releaseWaiting = func() { once.Do(func() { close(waiting) }) }
	t.Cleanup(func() { releaseWaiting = nil })
	done := make(chan struct{})
	go func() { discard(m); close(done) }()
	select {
	case <-waiting:
	case <-done:
		t.Fatal("the discard did not wait for a query still holding a connection")
	}
	if b, err := os.ReadFile(kept); err != nil || !bytes.HasPrefix(b, []byte("SQLite format 3")) {
		t.Fatalf("the file was overwritten under a query still running (%v)", err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil || n != 2 {
		t.Fatalf("the query read %d orders, %v; want 2", n, err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if b, err := os.ReadFile(kept); err != nil || bytes.Contains(b, []byte("SQLite format 3")) {
		t.Fatalf("the file was not overwritten once the query ended (%v)", err)
	}
}
