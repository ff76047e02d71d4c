package projections_test

import (
	"context"
	"errors"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/projections"
)

// readGate is a log whose reads (ReadBatches, not the runner's follow)
// from one armed position wait: until released, or, with no release,
// until the reader's context ends. hit is closed as such a read begins.
type readGate struct {
	projections.Log
	mu      sync.Mutex
	at      uint64
	hit     chan struct{}
	release chan struct{}
}

func (g *readGate) arm(at uint64) (hit, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.at, g.hit, g.release = at, make(chan struct{}), make(chan struct{})
	return g.hit, g.release
}

func (g *readGate) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	g.mu.Lock()
	hit, release := g.hit, g.release
	gated := hit != nil && from == g.at
	if gated {
		g.hit = nil
	}
	g.mu.Unlock()
	if gated {
		close(hit)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	return g.Log.ReadBatches(ctx, from, opts...)
}

// A runner stopped while a rebuild swaps its model in (the swap holding
// the applies as it catches up with the log) cancels the swap, and
// returns: a node's shutdown stops the runner before it ends the
// rebuild's stream, and waited on the swap's reads, unbounded by
// SHUTDOWN_TIMEOUT, when the log did not answer them. The rebuild fails;
// the live model stays.
func TestStoppedRunnerCancelsTheSwapInProgress(t *testing.T) {
	bound, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, store := fileStore(t)
	d, err := projections.Open(bound, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gate := &readGate{Log: store}
	r, err := projections.NewRunner(gate, d)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(bound)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(rctx) }()
	var target uint64
	for _, id := range []string{"s-1", "s-2"} {
		target = create(t, store, id, "c")
	}
	if err := r.WaitForCommitted(bound, target); err != nil {
		t.Fatal(err)
	}
	// The replay waits while the live model moves past its target, so
	// that the swap has a catch-up to read.
	replayHit, replayGo := gate.arm(1)
	rebuilt := make(chan error, 1)
	go func() { rebuilt <- r.Rebuild(t.Context(), nil) }()
	select {
	case <-replayHit:
	case <-bound.Done():
		t.Fatal("the rebuild never read the log")
	}
	live := create(t, store, "s-3", "c")
	if err := r.WaitForCommitted(bound, live); err != nil {
		t.Fatal(err)
	}
	catchUpHit, _ := gate.arm(target + 1)
	close(replayGo)
	select {
	case <-catchUpHit:
	case <-bound.Done():
		t.Fatal("the swap never caught up with the log")
	}

	stop()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-bound.Done():
		t.Fatal("Run did not return while a swap read a log that does not answer")
	}
	if err := <-rebuilt; !errors.Is(err, projections.ErrRunnerStopped) {
		t.Fatalf("the rebuild whose swap the stop cancelled: %v; want ErrRunnerStopped", err)
	}
}
