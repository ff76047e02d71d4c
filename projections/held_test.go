package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// created is an OrderCreated for id at position pos, the order's first
// event.
func created(id, customer string, pos uint64) Item {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	return Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Version: 1, Type: "OrderCreated", Time: at},
		Event: order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR"}}
}

// listed returns the ids a list of customer's orders answers, and its
// position.
func listed(t *testing.T, m *ReadModel, customer string) ([]string, uint64) {
	t.Helper()
	orders, pos, err := m.ListOrders(t.Context(), ListFilter{CustomerID: customer}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range orders {
		ids = append(ids, o.State.ID)
	}
	return ids, pos
}

// A held apply is visible to point reads at once, and to lists, summaries
// and the file only once committed.
func TestHeldApplyIsVisibleToPointReadsBeforeItsCommit(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rm.db")
	m := openModel(t, path)
	if _, _, err := m.Apply(ctx, []Item{created("o-1", "c", 1)}); err != nil {
		t.Fatal(err)
	}
	pos, _, committed, err := m.apply(ctx, []Item{created("o-2", "c", 2)}, nil, true)
	if err != nil || committed || pos != 2 {
		t.Fatalf("held apply = %d, committed %v, %v; want 2, not committed", pos, committed, err)
	}
	if o, p, err := m.GetOrder(ctx, "o-2"); err != nil || p != 2 || o.Revision != 2 {
		t.Fatalf("GetOrder(o-2) before the commit = revision %d at %d, %v; want 2 at 2", o.Revision, p, err)
	}
	// An order the held transaction did not touch reads from the file and
	// answers at the held position: nothing about it is uncommitted.
	m.recent.mu.Lock()
	delete(m.recent.rows, "o-1")
	m.recent.mu.Unlock()
	if o, p, err := m.GetOrder(ctx, "o-1"); err != nil || p != 2 || o.Revision != 1 {
		t.Fatalf("GetOrder(o-1) from the file = revision %d at %d, %v; want 1 at 2", o.Revision, p, err)
	}
	if ids, p := listed(t, m, "c"); len(ids) != 1 || p != 1 {
		t.Fatalf("list before the commit = %v at %d; want [o-1] at 1", ids, p)
	}
	if _, _, err := m.commit(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, p := listed(t, m, "c"); len(ids) != 2 || p != 2 {
		t.Fatalf("list after the commit = %v at %d; want two orders at 2", ids, p)
	}
}

// The commit makes a held apply durable: lists see it, and a read model
// opened again on the file holds it.
func TestCommitMakesHeldAppliesDurable(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rm.db")
	m := openModel(t, path)
	for i, id := range []string{"o-1", "o-2", "o-3"} {
		if _, _, committed, err := m.apply(ctx, []Item{created(id, "c", uint64(i+1))}, nil, true); err != nil || committed {
			t.Fatalf("held apply of %s: committed %v, %v", id, committed, err)
		}
	}
	pos, committed, err := m.commit(ctx)
	if err != nil || !committed || pos != 3 {
		t.Fatalf("commit = %d, %v, %v; want 3, committed", pos, committed, err)
	}
	if ids, p := listed(t, m, "c"); len(ids) != 3 || p != 3 {
		t.Fatalf("list after the commit = %v at %d; want three orders at 3", ids, p)
	}
	if pos, committed, err := m.commit(ctx); err != nil || committed || pos != 3 {
		t.Fatalf("commit with nothing held = %d, %v, %v; want 3, nothing committed", pos, committed, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	again := openModel(t, path)
	if cp, err := again.Position(ctx); err != nil || cp != 3 {
		t.Fatalf("reopened at %d, %v; want 3", cp, err)
	}
	if ids, _ := listed(t, again, "c"); len(ids) != 3 {
		t.Fatalf("reopened list = %v", ids)
	}
}

// A failed apply abandons everything held with it: point reads no longer
// see the held orders, and the next apply starts again from the last
// commit, so the log's replay applies them again.
func TestFailedApplyAbandonsWhatWasHeld(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	if _, _, err := m.Apply(ctx, []Item{created("o-1", "c", 1)}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := m.apply(ctx, []Item{created("o-2", "c", 2)}, nil, true); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := m.apply(ended, []Item{created("o-3", "c", 3)}, nil, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("apply with its context ended: %v", err)
	}
	for _, id := range []string{"o-2", "o-3"} {
		if _, _, err := m.GetOrder(ctx, id); !errors.Is(err, ErrOrderNotFound) {
			t.Fatalf("GetOrder(%s) after the failure: %v; want ErrOrderNotFound", id, err)
		}
	}
	if _, p, err := m.GetOrder(ctx, "o-1"); err != nil || p != 1 {
		t.Fatalf("GetOrder(o-1) after the failure at %d, %v; want at 1", p, err)
	}
	pos, _, err := m.Apply(ctx, []Item{created("o-2", "c", 2), created("o-3", "c", 3)})
	if err != nil || pos != 3 {
		t.Fatalf("replay = %d, %v; want 3", pos, err)
	}
	if ids, _ := listed(t, m, "c"); len(ids) != 3 {
		t.Fatalf("after the replay: %v", ids)
	}
}

// Erasing personal data is never held: it reaches the file, scrubbed, with
// the batch that erased it, and commits what was held before it.
func TestErasureCommitsAtOnce(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	if _, _, _, err := m.apply(ctx, []Item{created("o-1", "c", 1)}, nil, true); err != nil {
		t.Fatal(err)
	}
	forget := Item{Rec: eventstore.Recorded{OrderID: "o-1", Position: 2, Version: 2, Type: "CustomerForgotten", Time: time.Now()},
		Event: order.CustomerForgotten{CustomerID: "c"}}
	pos, _, committed, err := m.apply(ctx, []Item{forget}, nil, true)
	if err != nil || !committed || pos != 2 {
		t.Fatalf("erasing apply = %d, committed %v, %v; want 2, committed", pos, committed, err)
	}
	if ids, p := listed(t, m, "c"); len(ids) != 1 || p != 2 {
		t.Fatalf("list after the erasure = %v at %d; want [o-1] at 2", ids, p)
	}
}

// Past heldRows orders, an apply commits without waiting for its caller.
func TestHeldRowsAreBounded(t *testing.T) {
	ctx := t.Context()
	m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
	items := make([]Item, heldRows)
	for i := range items {
		items[i] = created(fmt.Sprintf("o-%d", i), "c", uint64(i+1))
	}
	if _, _, committed, err := m.apply(ctx, items[:heldRows-1], nil, true); err != nil || committed {
		t.Fatalf("apply of %d orders: committed %v, %v", heldRows-1, committed, err)
	}
	if _, _, committed, err := m.apply(ctx, items[heldRows-1:], nil, true); err != nil || !committed {
		t.Fatalf("apply reaching %d orders: committed %v, %v", heldRows, committed, err)
	}
}

// An erasure's WAL scrub that readers' snapshots held up is tried again
// without waiting for another apply: a quiet read model does not keep the
// erased data in its WAL. Before, only the next apply tried again.
func TestScrubLeftDueIsRetried(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "rm.db")
	m := openModel(t, path)
	retried := make(chan struct{}, 16)
	m.scrubRetried = func() { retried <- struct{}{} }
	m.scrubPause = 10 * time.Millisecond
	if _, _, err := m.Apply(ctx, []Item{created("o-1", "c", 1)}); err != nil {
		t.Fatal(err)
	}
	// A reader holding a snapshot from before the erasure keeps the WAL's
	// frames from being checkpointed.
	release := holdSnapshot(t, path)
	forget := Item{Rec: eventstore.Recorded{OrderID: "o-1", Position: 2, Version: 2, Type: "CustomerForgotten", Time: time.Now()},
		Event: order.CustomerForgotten{CustomerID: "c"}}
	if _, _, err := m.Apply(ctx, []Item{forget}); err != nil {
		t.Fatal(err)
	}
	first := m.scrubDue.Load()
	if first == 0 {
		t.Fatal("the scrub finished with a reader holding an older snapshot")
	}
	// Another erasure left due gets a number of its own: a retry that
	// began before it must not settle it with the first.
	forget.Rec.Position, forget.Rec.Version = 3, 3
	if _, _, err := m.Apply(ctx, []Item{forget}); err != nil {
		t.Fatal(err)
	}
	if due := m.scrubDue.Load(); due == 0 || due == first {
		t.Fatalf("scrub due %d after a second erasure left due, %d after the first; want another number", due, first)
	}
	<-retried // still held up: due again
	if m.scrubDue.Load() == 0 {
		t.Fatal("a retry finished with the reader's snapshot still held")
	}
	release()
	for m.scrubDue.Load() != 0 {
		<-retried
	}
	if st, err := os.Stat(path + "-wal"); err != nil || st.Size() != 0 {
		t.Fatalf("the WAL after the retried scrub: %v, %v; want it empty", st, err)
	}
}

// holdSnapshot opens a reader of the read model at path holding a read
// snapshot of it, which keeps a checkpoint from moving the WAL's later
// frames into the file, until release ends it.
func holdSnapshot(t *testing.T, path string) (release func()) {
	t.Helper()
	reader, err := sql.Open("sqlite", dsn(path, true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close() })
	tx, err := reader.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(t.Context(), `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
}
