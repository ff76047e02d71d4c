package query_test

import (
	"context"
	"iter"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
)

// checkGate is the runners' log whose read from one position (a starting
// runner's check that the log still holds its checkpoint, logHolds) waits,
// once armed, until the test opens it; it tells when the next follow
// begins. Other reads are untouched.
type checkGate struct {
	projections.Log
	mu        sync.Mutex
	at        uint64
	hit, open chan struct{}
	following chan struct{}
}

func (g *checkGate) arm(at uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.at, g.hit, g.open, g.following = at, make(chan struct{}), make(chan struct{}), make(chan struct{})
}

func (g *checkGate) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	g.mu.Lock()
	hit, open := g.hit, g.open
	gated := hit != nil && from == g.at
	if gated {
		g.at = 0 // once
	}
	g.mu.Unlock()
	if gated {
		close(hit)
		select {
		case <-open:
		case <-ctx.Done():
		}
	}
	return g.Log.ReadBatches(ctx, from, opts...)
}

func (g *checkGate) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	g.mu.Lock()
	if f := g.following; f != nil {
		close(f)
		g.following = nil
	}
	g.mu.Unlock()
	return g.Log.FollowBatches(ctx, from, opts...)
}

// servedWithGate serves a query node whose runners read the log through a
// checkGate, and creates n orders of customer, committed at checkpoint.
func servedWithGate(t *testing.T, customer string, n int) (e *env, gate *checkGate, checkpoint uint64) {
	t.Helper()
	gate = &checkGate{}
	e = serve(t, &env{store: memstore.New(), wrapLog: func(l projections.Log) projections.Log {
		gate.Log = l
		return gate
	}}, 0)
	createCommitted(t, e, customer, n)
	return e, gate, e.runner.Committed()
}

// stoppedWithGate is servedWithGate with the runner stopped at checkpoint.
func stoppedWithGate(t *testing.T, customer string, n int) (e *env, gate *checkGate, checkpoint uint64) {
	t.Helper()
	e, gate, checkpoint = servedWithGate(t, customer, n)
	e.stop()
	return e, gate, checkpoint
}

// An admin rebuild (which needs only the log) swapped in while a starting
// runner checks its read model's checkpoint against the log leaves the
// runner's committed position at the rebuilt model's: the model holds
// everything up to it, and a list given a position it holds answers. The
// runner set its committed position back to the checkpoint it had read
// before the check, so until something new was committed every list,
// summary and WatchOrders given such a position waited and answered
// UNAVAILABLE, while a list without it showed the orders.
func TestRebuildSwappedInWhileTheRunnerChecksItsCheckpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, gate, checkpoint := stoppedWithGate(t, "early", 3)
	// Appended while no runner follows the log.
	var last uint64
	for range 3 {
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "late", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		last = c.GetPosition()
	}
	gate.arm(checkpoint)
	e.startRunner(t)
	select {
	case <-gate.hit:
	case <-ctx.Done():
		t.Fatal("the runner never checked its checkpoint against the log")
	}
	if p, err := rebuildRPC(ctx, e); err != nil || p.GetPosition() != last {
		t.Fatalf("rebuild during the check: %v, %v; want it swapped in at %d", p, err, last)
	}
	following := gate.following
	close(gate.open)
	select {
	case <-following:
	case <-ctx.Done():
		t.Fatal("the runner never followed the log")
	}
	// The rebuilt model holds the orders appended before it ...
	all, err := e.q.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "late"})
	if err != nil || len(all.GetOrders()) != 3 || all.GetPosition() != last {
		t.Fatalf("list without min_position: %d orders at %d, %v; want 3 at %d", len(all.GetOrders()), all.GetPosition(), err, last)
	}
	// ... and so answers a read given their position.
	res, err := e.q.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "late",
		Consistency: &ordersv1.Consistency{MinPosition: last, MaxWait: durationpb.New(500 * time.Millisecond)}})
	if err != nil {
		t.Fatalf("list at min_position %d, which the read model holds (runner committed at %d): %v", last, e.runner.Committed(), err)
	}
	if len(res.GetOrders()) != 3 {
		t.Fatalf("list at min_position %d: %d orders, want 3", last, len(res.GetOrders()))
	}
}

// A watch of orders from now, on a node whose runner has not started its
// feed yet (a restarted process, checking its checkpoint against the
// log), is taken on and starts once the runner started the feed, at the
// read model's position. It was told position 0, the feed knowing no
// other yet, and ended with OUT_OF_RANGE (list again) once the runner
// started the feed at its checkpoint.
func TestWatchOrdersFromNowWaitsForTheFeedToStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, gate, checkpoint := stoppedWithGate(t, "fresh", 2)
	// A new process's feed, and a query service on it.
	e.feed = projections.NewFeed(0)
	gate.arm(checkpoint)
	e.startRunner(t)
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runnerRef{e}, query.WithFeed(e.feed)))
	q := ordersv1.NewOrderQueryServiceClient(listen(t, gs))
	select {
	case <-gate.hit:
	case <-ctx.Done():
		t.Fatal("the runner never checked its checkpoint against the log")
	}
	w, err := q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Taken on while the runner starts.
	if _, err := w.Header(); err != nil {
		t.Fatal(err)
	}
	close(gate.open)
	if m, err := w.Recv(); err != nil || m.GetPosition() != checkpoint {
		t.Fatalf("first message of a watch from now opened before the feed started: at %d, %v; want at %d", m.GetPosition(), err, checkpoint)
	}
	next, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "fresh", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetPosition() != next.GetPosition() {
		t.Fatalf("watch from now after the feed started: at %d, %v; want the change at %d", m.GetPosition(), err, next.GetPosition())
	}
}
