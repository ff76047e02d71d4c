package projections

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/eventstore/memstore"
)

// A rebuild's swap commits what the live model holds first. That commit is
// the live model's, not the rebuild's: a rebuild whose caller gave up (an
// admin's RPC cancelled) must not fail it, as a failed commit stops the
// projection. Here the commit has a WAL scrub due, the part of it that
// takes a context.
func TestCancelledSwapLeavesTheLiveCommitToTheRunner(t *testing.T) {
	ctx := t.Context()
	d, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(memstore.New(), d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.ReadModel().Close() })
	live := r.ReadModel()
	if _, _, committed, err := live.apply(ctx, []Item{created("o-1", "c", 1)}, nil, true); err != nil || committed {
		t.Fatalf("held apply: committed %v, %v", committed, err)
	}
	live.scrubDue.Store(1)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	nm, err := d.newModel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { discard(nm) })
	if err := r.swapIn(cctx, &replay{nm: nm}); !errors.Is(err, context.Canceled) {
		t.Fatalf("swap with its context cancelled: %v, want context.Canceled", err)
	}
	r.mu.Lock()
	failed := r.failed
	r.mu.Unlock()
	if failed != nil {
		t.Fatalf("the cancelled swap failed the runner: %v", failed)
	}
	if pos, err := live.Position(ctx); err != nil || pos != 1 {
		t.Fatalf("the live model's checkpoint: %d, %v; want the held apply committed at 1", pos, err)
	}
}
