package projections_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/orderstream/orderstream/projections"
)

// A read model ahead of the log it starts on (the log lost its last
// events to a power loss, or NATS_URL names another log) is built from the
// log again: it then holds what the log holds, the orders the log lost
// are gone, and those appended since, at positions the read model had
// already passed, are there. Before, it followed on from its checkpoint,
// serving the lost orders and never applying the new ones.
func TestReadModelAheadOfTheLogIsRebuiltFromIt(t *testing.T) {
	ctx := t.Context()
	dirPath := t.TempDir()
	_, before := fileStore(t)
	var last uint64
	for i := range 5 {
		last = create(t, before, fmt.Sprintf("lost-%d", i), "c")
	}
	d, err := projections.Open(ctx, dirPath)
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(before, d)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	if err := r.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	_, after := fileStore(t) // the log the read model now meets: three events
	create(t, after, "kept-0", "c")
	create(t, after, "kept-1", "c")
	newPos := create(t, after, "new-order", "c")
	d, err = projections.Open(ctx, dirPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err = projections.NewRunner(after, d)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
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
