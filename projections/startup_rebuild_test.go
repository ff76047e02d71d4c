package projections_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/projections"
)

// startingLog is a log whose first Head fails (NATS not up yet as the
// runner starts), which says when it was asked, and when the runner first
// follows it: past its start-up.
type startingLog struct {
	*memstore.Store
	calls     atomic.Int32
	asked     chan struct{}
	following chan struct{}
	once      sync.Once
	replays   atomic.Int32 // reads of the log from its start
}

func (l *startingLog) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	if from <= 1 {
		l.replays.Add(1)
	}
	return l.Store.ReadBatches(ctx, from, opts...)
}

func (l *startingLog) Head(ctx context.Context) (uint64, error) {
	if l.calls.Add(1) == 1 {
		close(l.asked)
		return 0, errors.New("nats: no responders available")
	}
	return l.Store.Head(ctx)
}

func (l *startingLog) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	l.once.Do(func() { close(l.following) })
	return l.Store.FollowBatches(ctx, from, opts...)
}

// An admin rebuild (which needs only the log) swapped in while the runner
// still waits for the log's head at start-up leaves the runner at the
// rebuilt model's position, and the log read once: lists wait for nothing
// it holds. The runner went on from the position it read before, and its
// committed position went back to 0, so every list with a min_position
// waited until something new was committed; with a log long enough for a
// bulk catch-up, it replayed the whole log again over the rebuilt model.
func TestRebuildDuringStartUpKeepsTheCommittedPosition(t *testing.T) {
	ctx := t.Context()
	store := memstore.New()
	var last uint64
	for i := range 50 {
		last = create(t, store, fmt.Sprintf("o-%d", i), "c")
	}
	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	log := &startingLog{Store: store, asked: make(chan struct{}), following: make(chan struct{})}
	r, err := projections.NewRunner(log, d, projections.WithBulkCatchUp(10))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	<-log.asked // the runner waits a second before it asks again
	if err := r.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	<-log.following
	if c := r.Committed(); c != last {
		t.Fatalf("the rebuilt model is at %d, the runner follows the log with its committed position at %d", last, c)
	}
	if n := log.replays.Load(); n != 1 {
		t.Fatalf("the log was read from its start %d times, want once (the rebuild)", n)
	}
}
