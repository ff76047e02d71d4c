package projections_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/projections"
)

// lostAndRetaken returns a log that held lost-0 … lost-4 at positions 1
// to 5, lost its last three, and took new-0 … new-3 at positions 3 to 6:
// it reaches past where it held the lost ones, and a head check alone
// cannot tell it from the log before. It also returns that log before the
// loss and the new log's head.
func lostAndRetaken(t *testing.T) (before, after *memstore.Store, lastBefore, head uint64) {
	t.Helper()
	before, after = memstore.New(), memstore.New()
	for i := range 5 {
		lastBefore = create(t, before, fmt.Sprintf("lost-%d", i), "c")
	}
	create(t, after, "lost-0", "c")
	create(t, after, "lost-1", "c")
	for i := range 4 {
		head = create(t, after, fmt.Sprintf("new-%d", i), "c")
	}
	return before, after, lastBefore, head
}

// servesTheLog runs a runner of log on d until the test ends and checks
// that, once it has caught up with head, its read model holds the new
// orders of lostAndRetaken and none of the lost ones.
func servesTheLog(t *testing.T, log projections.Log, d *projections.Dir, head uint64) {
	t.Helper()
	r, err := projections.NewRunner(log, d)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	if err := r.WaitForCommitted(t.Context(), head); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, _, err := r.ReadModel().GetOrder(t.Context(), fmt.Sprintf("new-%d", i)); err != nil {
			t.Errorf("order new-%d, which the log holds: %v", i, err)
		}
	}
	for i := 2; i < 5; i++ {
		if _, _, err := r.ReadModel().GetOrder(t.Context(), fmt.Sprintf("lost-%d", i)); !errors.Is(err, projections.ErrOrderNotFound) {
			t.Errorf("order lost-%d, which the log lost: %v, want not found", i, err)
		}
	}
}

// appliedAndClosed leaves in dir a read model of log applied up to last,
// closed.
func appliedAndClosed(t *testing.T, dir string, log projections.Log, last uint64) {
	t.Helper()
	d, err := projections.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(log, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if err := r.WaitForCommitted(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// A read model started on a log that lost its last events and took new
// ones at their positions since, past its checkpoint, is rebuilt from the
// log: followed from the checkpoint it kept the lost orders and never
// applied the new ones at the positions it had passed (a read at such a
// position found the order missing, every time).
func TestReadModelOnALogThatRetookItsPositionsIsRebuilt(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	before, after, lastBefore, head := lostAndRetaken(t)
	appliedAndClosed(t, dir, before, lastBefore)
	d, err := projections.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	servesTheLog(t, after, d, head)
}

// switchedLog is a log replaced under a running runner: its follow fails
// when the log is switched, as a follow does when its NATS server goes.
type switchedLog struct {
	mu       sync.Mutex
	cur      *memstore.Store
	switched chan struct{}
}

func (l *switchedLog) now() (*memstore.Store, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur, l.switched
}

func (l *switchedLog) SubjectPrefix() string { s, _ := l.now(); return s.SubjectPrefix() }

func (l *switchedLog) Head(ctx context.Context) (uint64, error) { s, _ := l.now(); return s.Head(ctx) }

func (l *switchedLog) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	s, _ := l.now()
	return s.ReadBatches(ctx, from, opts...)
}

func (l *switchedLog) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	s, switched := l.now()
	return func(yield func(eventstore.Batch, error) bool) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-switched:
				cancel()
			case <-fctx.Done():
			}
		}()
		for b, err := range s.FollowBatches(fctx, from, opts...) {
			if !yield(b, err) {
				return
			}
		}
		if ctx.Err() == nil {
			yield(eventstore.Batch{}, errors.New("connection to the log lost"))
		}
	}
}

func (l *switchedLog) to(s *memstore.Store) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.switched)
	l.cur, l.switched = s, make(chan struct{})
}

// A runner whose log comes back without its last events, and with new
// ones at their positions, stops with ErrNotTheLog rather than following
// on from its checkpoint past what the log holds; started again, it
// rebuilds the read model from the log.
func TestRunnerStopsWhenItsLogRetookItsPositions(t *testing.T) {
	ctx := t.Context()
	before, after, lastBefore, head := lostAndRetaken(t)
	l := &switchedLog{cur: before, switched: make(chan struct{})}
	dir := t.TempDir()
	d, err := projections.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(l, d)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if err := r.WaitForCommitted(ctx, lastBefore); err != nil {
		t.Fatal(err)
	}
	wctx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	followedOn := make(chan struct{})
	first := r
	go func() {
		if first.WaitForCommitted(wctx, head) == nil {
			close(followedOn)
		}
	}()
	l.to(after)
	select {
	case err := <-done:
		if !errors.Is(err, projections.ErrNotTheLog) {
			t.Fatalf("Run on a log that lost the read model's checkpoint: %v, want ErrNotTheLog", err)
		}
	case <-followedOn:
		t.Fatalf("the runner followed on to position %d of a log that no longer holds its checkpoint", head)
	}
	servesTheLog(t, l, d, head)
}

// A read model a build before checkpoints named their event applied to
// since (a rollback, then the upgrade again) has a name of another
// position than its checkpoint: it is checked against the log's head only,
// not rebuilt from scratch for a name that says nothing. The file's
// checkpoint is moved here as that build's applies moved it.
func TestCheckpointMovedByAnOlderBuildIsNotRebuilt(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store := memstore.New()
	first := create(t, store, "o-1", "c")
	appliedAndClosed(t, dir, store, first)
	last := create(t, store, "o-2", "c")
	model := currentModel(t, dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, model))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE checkpoint SET position = ? WHERE id = 1`, last); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	d, err := projections.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(store, d)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	if err := r.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	if now := currentModel(t, dir); now != model {
		t.Fatalf("the read model %s was replaced by %s: rebuilt", model, now)
	}
}

// currentModel is the file name of dir's current read model: the first,
// until a rebuild names another in CURRENT.
func currentModel(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	if errors.Is(err, os.ErrNotExist) {
		return "orders.db"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
