package projections_test

import (
	"context"
	"fmt"
	"iter"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/projections"
)

// heldReads holds every ReadBatches (a rebuild's reads) until release is
// closed.
type heldReads struct {
	*eventstore.Store
	release chan struct{}
}

func (h heldReads) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		select {
		case <-h.release:
		case <-ctx.Done():
			yield(eventstore.Batch{}, ctx.Err())
			return
		}
		for b, err := range h.Store.ReadBatches(ctx, from, opts...) {
			if !yield(b, err) {
				return
			}
		}
	}
}

// A read model ahead of the log it starts on (the log lost its last
// events to a power loss, or NATS_URL names another log) is built from the
// log again: it then holds what the log holds, the orders the log lost
// are gone, and those appended since, at positions the read model had
// already passed, are there. Before, it followed on from its checkpoint,
// serving the lost orders and never applying the new ones. While it is
// built again, the node answers as of position 0, as an empty read model
// catching up does, not from the model ahead of the log.
func TestReadModelAheadOfTheLogIsRebuiltFromIt(t *testing.T) {
	ctx := t.Context()
	dirPath := t.TempDir()
	_, before := fileStore(t)
	var last uint64
	for i := range 5 {
		last = create(t, before, fmt.Sprintf("lost-%d", i), "c")
	}
	appliedAndClosed(t, dirPath, before, last)

	_, after := fileStore(t) // the log the read model now meets: three events
	create(t, after, "kept-0", "c")
	create(t, after, "kept-1", "c")
	newPos := create(t, after, "new-order", "c")
	d, err := projections.Open(ctx, dirPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	held := heldReads{Store: after, release: make(chan struct{})}
	r, err := projections.NewRunner(held, d)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	for deadline := time.Now().Add(30 * time.Second); !r.Rebuilding(); {
		if time.Now().After(deadline) {
			t.Fatal("the read model ahead of the log was not rebuilt")
		}
		time.Sleep(time.Millisecond)
	}
	if _, _, err := r.ReadModel().GetOrder(ctx, "lost-4"); err == nil {
		t.Error("while rebuilding, the node serves an order the log does not hold")
	}
	if p, err := r.ReadModel().Position(ctx); err != nil || p != 0 {
		t.Errorf("while rebuilding, the read model answers as of position %d (%v), past the log's head; want 0", p, err)
	}
	close(held.release)
	if err := r.WaitForCommitted(ctx, newPos); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadModel().GetOrder(ctx, "new-order"); err != nil {
		t.Fatalf("the order appended at position %d, below the read model's old checkpoint %d: %v", newPos, last, err)
	}
	if _, _, err := r.ReadModel().GetOrder(ctx, "lost-4"); err == nil {
		t.Fatal("the read model still serves an order the log does not hold")
	}
	if p := r.Position(); p != newPos {
		t.Fatalf("read model at position %d, want the log's head %d", p, newPos)
	}
}
