package query_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/projections"
)

// ackLog collects acknowledged creations and lets a test wait for some
// beyond a log position.
type ackLog struct {
	mu      sync.Mutex
	acks    []*ordersv1.CreateOrderResponse
	changed chan struct{}
}

func newAckLog() *ackLog { return &ackLog{changed: make(chan struct{})} }

func (a *ackLog) add(c *ordersv1.CreateOrderResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acks = append(a.acks, c)
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *ackLog) all() []*ordersv1.CreateOrderResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*ordersv1.CreateOrderResponse(nil), a.acks...)
}

// waitBeyond blocks until n acknowledgements are at positions above pos,
// and returns the highest acknowledged position.
func (a *ackLog) waitBeyond(ctx context.Context, pos uint64, n int) (uint64, error) {
	for {
		a.mu.Lock()
		k, top := 0, uint64(0)
		for _, c := range a.acks {
			if c.GetPosition() > pos {
				k++
			}
			top = max(top, c.GetPosition())
		}
		ch := a.changed
		a.mu.Unlock()
		if k >= n {
			return top, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("%d of %d acknowledgements beyond position %d: %w", k, n, pos, ctx.Err())
		}
	}
}

// A rebuild overlapping live writes: a creator and two writers of random
// commands run through the whole rebuild. The rebuild is held after its
// replay until creations beyond its target were acknowledged and applied
// by the live projection (so its catch-up must bring them over), and the
// writers go on after the swap until more were acknowledged (so the live
// projection applies them to the new read model). Once they stop, the
// served read model equals the fold of the log, holds every acknowledged
// creation at its revision, and equals a fresh rebuild.
//
// TestRebuildUnderLoad covers creations during a rebuild being served after
// its swap; this adds writes on both sides of the catch-up and of the swap
// and the comparison with the fold and with a second rebuild.
func TestRebuildOverlappingWritesEqualsFold(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	ids, last := createOrders(t, e, 20)
	l, err := commands(ctx, e, ids, 150, rand.New(rand.NewPCG(31, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.WaitForCommitted(ctx, max(last, l)); err != nil {
		t.Fatal(err)
	}

	// The writers stop between calls, never cancelling one: once they
	// are done every append they caused was answered, so the log is still.
	acks := newAckLog()
	stopping := make(chan struct{})
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stopping) }) }
	running := func() bool {
		select {
		case <-stopping:
			return false
		default:
			return true
		}
	}
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }()
	var mu sync.Mutex
	var loadErrs []error
	fail := func(err error) {
		mu.Lock()
		loadErrs = append(loadErrs, err)
		mu.Unlock()
	}
	wg.Go(func() {
		for n := 0; running(); n++ {
			c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "overlap", Currency: "EUR",
				Lines: []*ordersv1.LineItem{{Sku: "O", Quantity: 1, UnitPrice: int64(10 + n)}}, ShippingAddress: addr()})
			if err != nil {
				fail(fmt.Errorf("create: %w", err))
				return
			}
			acks.add(c)
		}
	})
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(33, uint64(w)))
			for running() {
				if _, err := commands(ctx, e, ids, 5, r); err != nil {
					fail(fmt.Errorf("writer %d: %w", w, err))
					return
				}
			}
		})
	}

	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	oldRM := e.runner.ReadModel()
	var target, swappedAt uint64
	var held error
	var once sync.Once
	err = e.runner.Rebuild(ctx, func(p projections.Progress) {
		if p.Swapped {
			swappedAt = p.Position
			return
		}
		if p.Position < p.Target {
			return
		}
		once.Do(func() {
			target = p.Target
			top, err := acks.waitBeyond(waitCtx, target, 10)
			if err != nil {
				held = err
				return
			}
			held = e.runner.WaitForCommitted(waitCtx, top)
		})
	})
	if held != nil {
		stopLoad()
		wg.Wait()
		t.Fatalf("holding the rebuild after its replay: %v (load errors %v)", held, loadErrs)
	}
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if target == 0 || swappedAt <= target || e.runner.ReadModel() == oldRM {
		t.Fatalf("rebuild to target %d swapped at %d, read model replaced: %v", target, swappedAt, e.runner.ReadModel() != oldRM)
	}
	_, afterErr := acks.waitBeyond(waitCtx, swappedAt, 10)
	stopLoad()
	wg.Wait()
	if afterErr != nil {
		t.Errorf("after the swap: %v", afterErr)
	}
	for _, err := range loadErrs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.WaitForCommitted(ctx, head); err != nil {
		t.Fatal(err)
	}
	want := expectFromLog(t, e, head)
	if len(want.skipped) != 0 {
		t.Fatalf("the command side wrote events the fold refuses at %v", want.skipped)
	}
	checkServed(t, e, want, customers...)
	var duringReplay, afterSwap int
	for _, c := range acks.all() {
		g, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(), Consistency: consistency(c.GetPosition())})
		if err != nil || g.GetOrder().GetRevision() != c.GetOrder().GetRevision() {
			t.Fatalf("acknowledged creation at %d: %v %v", c.GetPosition(), g, err)
		}
		if c.GetPosition() > target && c.GetPosition() <= swappedAt {
			duringReplay++
		}
		if c.GetPosition() > swappedAt {
			afterSwap++
		}
	}
	t.Logf("rebuild target %d, swapped at %d, head %d: %d creations caught up by the rebuild, %d applied after the swap",
		target, swappedAt, head, duringReplay, afterSwap)

	rebuildEqualsIncremental(t, e, want)
}

// gatedLog is the runner's log whose next read from position 1 after arm
// (a rebuild's replay) delivers its events only as the test lets them
// through, one batch each: a seam to stop a rebuild after chosen batches
// without any hook in the production code. Other reads are untouched.
type gatedLog struct {
	projections.Log
	mu   sync.Mutex
	next *gate
}

func (l *gatedLog) arm() *gate {
	g := &gate{tokens: make(chan struct{}, 1<<16), released: make(chan struct{}), changed: make(chan struct{})}
	l.mu.Lock()
	l.next = g
	l.mu.Unlock()
	return g
}

func (l *gatedLog) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	l.mu.Lock()
	g := l.next
	if from <= 1 {
		l.next = nil
	}
	l.mu.Unlock()
	if from > 1 || g == nil {
		return l.Log.ReadBatches(ctx, from, opts...)
	}
	return func(yield func(eventstore.Batch, error) bool) {
		for b, err := range l.Log.ReadBatches(ctx, from, opts...) {
			if err != nil {
				yield(b, err)
				return
			}
			for i := range b.Entries {
				select {
				case <-g.tokens:
				case <-g.released:
				case <-ctx.Done():
					yield(eventstore.Batch{}, ctx.Err())
					return
				}
				g.passed(b.Entries[i].Position)
				if !yield(eventstore.Batch{Entries: b.Entries[i : i+1], Pending: b.Pending}, nil) {
					return
				}
			}
		}
	}
}

// gate lets messages through one token at a time, or all once released.
type gate struct {
	tokens   chan struct{}
	released chan struct{}
	once     sync.Once

	mu      sync.Mutex
	n       int
	last    uint64
	changed chan struct{}
}

func (g *gate) allow(n int) {
	for range n {
		g.tokens <- struct{}{}
	}
}

func (g *gate) release() { g.once.Do(func() { close(g.released) }) }

func (g *gate) passed(seq uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	g.last = seq
	close(g.changed)
	g.changed = make(chan struct{})
}

// waitPassed blocks until n messages passed and returns the last one's
// stream sequence.
func (g *gate) waitPassed(ctx context.Context, n int) (uint64, error) {
	for {
		g.mu.Lock()
		k, last, ch := g.n, g.last, g.changed
		g.mu.Unlock()
		if k >= n {
			return last, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("%d of %d messages passed the gate: %w", k, n, ctx.Err())
		}
	}
}

// partialCheckpoint reads the checkpoint of the one database file in dir
// other than live, through a read-only connection of its own; ok is false
// while there is no such file or it has no checkpoint yet.
func partialCheckpoint(t *testing.T, dir, live string) (path string, pos uint64, ok bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if strings.HasSuffix(en.Name(), ".db") && en.Name() != filepath.Base(live) {
			if path != "" {
				t.Fatalf("two database files besides the live one: %s, %s", path, en.Name())
			}
			path = filepath.Join(dir, en.Name())
		}
	}
	if path == "" {
		return "", 0, false
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRowContext(t.Context(), `SELECT position FROM checkpoint`).Scan(&pos); err != nil {
		return path, 0, false // not migrated yet
	}
	return path, pos, true
}

// A rebuild cancelled after some of its replay batches were committed to
// the new database: the live read model keeps serving and following the
// log throughout, the rebuild returns the cancellation, the partial file is
// deleted, a restart opens the live read model, and a later rebuild
// succeeds and equals the fold of the log and the incremental read model.
//
// TestCancelledRebuildLeavesLiveIntact covers a rebuild whose context is
// cancelled before it starts; this cancels one with committed batches.
func TestRebuildCancelledAfterBatches(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	ids, last := createOrders(t, e, 100)
	l, err := commands(ctx, e, ids[:20], 150, rand.New(rand.NewPCG(41, 42)))
	if err != nil {
		t.Fatal(err)
	}
	last = max(last, l)
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	const first, second = 30, 80
	if head, err := e.store.Head(ctx); err != nil || head <= second+20 {
		t.Fatalf("log too short for the test: %d %v", head, err)
	}
	// The runner again on the same files, over a JetStream handle that can
	// gate the consumer a rebuild opens.
	e.stop()
	gl := &gatedLog{Log: e.store}
	e.log = gl
	e.startRunner(t)
	// Ready once the live projection's own consumer is open (from its
	// checkpoint, so never gated).
	select {
	case <-e.runner.Ready():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	live := e.runner.ReadModel()
	current, currentErr := os.ReadFile(filepath.Join(e.dir, "CURRENT"))

	g := gl.arm()
	t.Cleanup(g.release)
	rctx, cancelRebuild := context.WithCancel(ctx)
	defer cancelRebuild()
	done := make(chan error, 1)
	go func() { done <- e.runner.Rebuild(rctx, nil) }()

	waitCtx, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	// Let n messages through and wait until the partial database has
	// committed every one of them.
	var partial string
	allowed := 0
	replayTo := func(n int) uint64 {
		t.Helper()
		g.allow(n - allowed)
		allowed = n
		seq, err := g.waitPassed(waitCtx, n)
		if err != nil {
			select {
			case rerr := <-done:
				t.Fatalf("%v; the rebuild returned %v", err, rerr)
			default:
				t.Fatal(err)
			}
		}
		for {
			path, pos, ok := partialCheckpoint(t, e.dir, live.Path())
			if ok && pos == seq {
				partial = path
				return pos
			}
			if ok && pos > seq {
				t.Fatalf("partial read model at %d, only %d delivered", pos, seq)
			}
			if waitCtx.Err() != nil {
				t.Fatalf("partial read model never reached %d: at %d (%s)", seq, pos, path)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	p1 := replayTo(first)
	p2 := replayTo(second)
	if !(0 < p1 && p1 < p2) {
		t.Fatalf("partial checkpoints %d then %d", p1, p2)
	}

	// Mid-rebuild the live read model serves a new order.
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "mid-rebuild", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(), Consistency: consistency(c.GetPosition())}); err != nil {
		t.Fatalf("read during the rebuild: %v", err)
	}
	if e.runner.ReadModel() != live || !e.runner.Rebuilding() {
		t.Fatal("the live read model was replaced mid-rebuild")
	}

	cancelRebuild()
	select {
	case err = <-done:
	case <-waitCtx.Done():
		t.Fatal("the cancelled rebuild did not return")
	}
	g.release()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled rebuild returned %v", err)
	}
	if e.runner.ReadModel() != live || e.runner.Rebuilding() {
		t.Fatal("a cancelled rebuild replaced the live read model or still runs")
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(partial + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("partial read model %s left behind: %v", filepath.Base(partial+suffix), err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(e.dir, "CURRENT")); string(got) != string(current) || (err == nil) != (currentErr == nil) {
		t.Fatalf("CURRENT changed by a cancelled rebuild: %q (%v), was %q (%v)", got, err, current, currentErr)
	}
	c2, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "mid-rebuild", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c2.GetOrder().GetOrderId(), Consistency: consistency(c2.GetPosition())}); err != nil {
		t.Fatalf("read after the cancelled rebuild: %v", err)
	}

	// A restart opens the same live read model.
	e.stop()
	e.startRunner(t)
	if e.runner.ReadModel().Path() != live.Path() {
		t.Fatalf("after a restart the live read model is %s, was %s", e.runner.ReadModel().Path(), live.Path())
	}
	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.WaitForCommitted(ctx, head); err != nil {
		t.Fatal(err)
	}
	want := expectFromLog(t, e, head)
	checkServed(t, e, want, customers...)
	rebuildEqualsIncremental(t, e, want)
	if e.runner.ReadModel().Path() == live.Path() {
		t.Fatal("the later rebuild did not swap")
	}
}
