package projections_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// fileStore starts an embedded server with a file-stored log and returns
// its JetStream context and the event store on it.
func fileStore(t testing.TB) (jetstream.JetStream, *eventstore.Store) {
	t.Helper()
	_, js := estest.Connect(t, estest.StartServer(t))
	store, err := eventstore.New(context.Background(), js, eventstore.WithStorage(jetstream.FileStorage))
	if err != nil {
		t.Fatal(err)
	}
	return js, store
}

// appender is an event store a test appends to (the JetStream store or
// the memory one).
type appender interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
}

// create appends an OrderCreated for id and returns its position.
func create(t testing.TB, store appender, id, customer string) uint64 {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(t.Context(), id, 0, []eventstore.EventData{{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: id, OccurredAt: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

// A runner's applied position is what point reads answer as of; its
// committed one, never ahead of it, is what lists answer as of and what
// the feed publishes. Stopping an idle runner commits what it held, so
// the file has every batch that was visible.
func TestRunnerCommitsWhatPointReadsSaw(t *testing.T) {
	_, store := fileStore(t)
	ctx := t.Context()
	dirPath := t.TempDir()
	d, err := projections.Open(ctx, dirPath)
	if err != nil {
		t.Fatal(err)
	}
	feed := projections.NewFeed(100)
	r, err := projections.NewRunner(store, d, projections.WithFeed(feed))
	if err != nil {
		t.Fatal(err)
	}
	sub, _, _, _ := feed.Subscribe("", nil, 100, 0)
	defer sub.Close()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	var last uint64
	for i := range 20 {
		id := fmt.Sprintf("o-%d", i)
		last = create(t, store, id, "c")
		if err := r.WaitFor(ctx, last); err != nil {
			t.Fatal(err)
		}
		if _, p, err := r.ReadModel().GetOrder(ctx, id); err != nil || p < last {
			t.Fatalf("GetOrder(%s) once applied: at %d, %v; want at %d or later", id, p, err, last)
		}
		if c := r.Committed(); c > r.Position() {
			t.Fatalf("committed %d ahead of applied %d", c, r.Position())
		}
	}
	if err := r.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	orders, p, err := r.ReadModel().ListOrders(ctx, projections.ListFilter{CustomerID: "c"}, nil, 50)
	if err != nil || len(orders) != 20 || p < last {
		t.Fatalf("list once committed: %d orders at %d, %v; want 20 at %d", len(orders), p, err, last)
	}
	for want := uint64(1); want <= last; want++ {
		select {
		case c := <-sub.C():
			if c.Position != want {
				t.Fatalf("feed delivered %d, want %d", c.Position, want)
			}
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}

	// The last one applied and stopped at once: the stop commits it.
	id := "o-last"
	last = create(t, store, id, "c")
	if err := r.WaitFor(ctx, last); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Committed() != last {
		t.Fatalf("stopped with %d committed, %d applied", r.Committed(), last)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := projections.Open(ctx, dirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if cp, err := again.Current().Position(ctx); err != nil || cp != last {
		t.Fatalf("reopened at %d, %v; want %d", cp, err, last)
	}
	if _, _, err := again.Current().GetOrder(ctx, id); err != nil {
		t.Fatalf("GetOrder(%s) after the stop: %v", id, err)
	}
}

// runUntilCleanup runs r until the test's cleanup, which fails the test if
// Run returned an error; the returned channel is closed when Run returns.
func runUntilCleanup(t *testing.T, r *projections.Runner) <-chan struct{} {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ended := make(chan struct{})
	var err error
	go func() {
		defer close(ended)
		err = r.Run(ctx)
	}()
	t.Cleanup(func() {
		stop()
		<-ended
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ended
}

// followLog records where each follow of the log starts.
type followLog struct {
	projections.Log
	mu    sync.Mutex
	froms []uint64
}

func (l *followLog) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	l.mu.Lock()
	l.froms = append(l.froms, from)
	l.mu.Unlock()
	return l.Log.FollowBatches(ctx, from, opts...)
}

func (l *followLog) firstFrom() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.froms) == 0 {
		return 0
	}
	return l.froms[0]
}

// A runner that starts on an empty read model and a log of at least
// WithBulkCatchUp events catches up as a rebuild replays, into a new file
// swapped in, and then follows the log from where the replay ended: its
// read model holds what one caught up batch by batch holds, lists and
// summaries included. A watcher that subscribed before is ended with
// ErrFeedRestarted rather than left to miss the replayed changes; the
// batch-by-batch runner publishes them to its own.
func TestRunnerCatchesUpInBulkOnAnEmptyReadModel(t *testing.T) {
	_, store := fileStore(t)
	ctx := t.Context()
	for i := range 300 {
		create(t, store, fmt.Sprintf("o-%03d", i), fmt.Sprintf("c-%d", i%7))
	}
	// An item for an order nobody created: a dead letter, counted alike.
	typ, data, err := convert.EncodeEvent(order.ItemAdded{SKU: "X", Quantity: 1, UnitPrice: 1})
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := store.Append(ctx, "ghost", 0, []eventstore.EventData{{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: "ghost", OccurredAt: time.Now()}}})
	if err != nil {
		t.Fatal(err)
	}
	head := ghost.Position
	type started struct {
		r       *projections.Runner
		first   string
		log     *followLog
		watcher *projections.Subscription
	}
	run := func(threshold uint64) started {
		d, err := projections.Open(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		first := d.Current().Path()
		log := &followLog{Log: store}
		r, err := projections.NewRunner(log, d, projections.WithBulkCatchUp(threshold))
		if err != nil {
			t.Fatal(err)
		}
		watcher, _, _, _ := r.Feed().Subscribe("", nil, 400, 0)
		t.Cleanup(watcher.Close)
		ended := runUntilCleanup(t, r)
		select {
		case <-r.Ready():
		case <-ended:
			t.Fatal("Run ended before ready")
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		if r.Position() < 300 {
			t.Fatalf("ready at %d, want 300", r.Position())
		}
		return started{r, first, log, watcher}
	}
	live, bulk := run(0), run(100)
	// Both follow the log from there.
	last := create(t, store, "o-after", "c-0")
	for _, r := range []*projections.Runner{live.r, bulk.r} {
		if err := r.WaitForCommitted(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	// The swap readies the runner just before its rebuild returns: once
	// it follows the log, the rebuild is over.
	if bulk.r.Rebuilding() {
		t.Fatal("still rebuilding while following the log")
	}
	// Each followed the log from where its catch-up left it.
	if live.r.ReadModel().Path() != live.first || live.log.firstFrom() != 1 {
		t.Fatalf("with WithBulkCatchUp(0): read model replaced %v, followed from %d; want kept, from 1",
			live.r.ReadModel().Path() != live.first, live.log.firstFrom())
	}
	if bulk.r.ReadModel().Path() == bulk.first || bulk.log.firstFrom() != head+1 {
		t.Fatalf("bulk: read model replaced %v, followed from %d; want replaced, from %d",
			bulk.r.ReadModel().Path() != bulk.first, bulk.log.firstFrom(), head+1)
	}
	// The feed publishes a batch just after the commit that
	// WaitForCommitted waits for.
	for live.r.Feed().Position() < last {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	if n := len(live.watcher.C()); n != 301 || live.watcher.Err() != nil {
		t.Fatalf("batch-by-batch runner's watcher: %d changes, %v; want 301 (the dead letter is none)", n, live.watcher.Err())
	}
	if l, b := live.r.DeadLettered(), bulk.r.DeadLettered(); l != 1 || b != 1 {
		t.Fatalf("dead letters counted: %d batch by batch, %d in bulk; want 1 each", l, b)
	}
	// A rebuild meets the event again, and counts it again.
	if err := live.r.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n := live.r.DeadLettered(); n != 2 {
		t.Fatalf("dead letters counted after a rebuild: %d, want 2", n)
	}
	if !errors.Is(bulk.watcher.Err(), projections.ErrFeedRestarted) || len(bulk.watcher.C()) != 0 {
		t.Fatalf("bulk runner's watcher: %d changes, %v; want none and ErrFeedRestarted", len(bulk.watcher.C()), bulk.watcher.Err())
	}
	for c := range 7 {
		f := projections.ListFilter{CustomerID: fmt.Sprintf("c-%d", c)}
		want, _, err := live.r.ReadModel().ListOrders(ctx, f, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := bulk.r.ReadModel().ListOrders(ctx, f, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(got) < 42 {
			t.Fatalf("customer c-%d: %d orders in bulk, %d live", c, len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("customer c-%d, order %d: bulk %+v, live %+v", c, i, got[i], want[i])
			}
		}
		ws, _, err := live.r.ReadModel().GetCustomerSummary(ctx, f.CustomerID)
		if err != nil {
			t.Fatal(err)
		}
		gs, _, err := bulk.r.ReadModel().GetCustomerSummary(ctx, f.CustomerID)
		if err != nil || !reflect.DeepEqual(gs, ws) {
			t.Fatalf("customer c-%d summary: bulk %+v, %v; live %+v", c, gs, err, ws)
		}
	}
	if _, p, err := bulk.r.ReadModel().GetOrder(ctx, "o-after"); err != nil || p < last {
		t.Fatalf("GetOrder after the catch-up: at %d, %v", p, err)
	}
}

// heldLog holds every follow of the log until release is closed.
type heldLog struct {
	projections.Log
	release chan struct{}
}

func (l heldLog) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		select {
		case <-l.release:
		case <-ctx.Done():
			return
		}
		for b, err := range l.Log.FollowBatches(ctx, from, opts...) {
			if !yield(b, err) {
				return
			}
		}
	}
}

// A rebuild that replays past a runner still catching up swaps in a read
// model ahead of it: the runner moves to the new checkpoint at once, and
// the feed, which never saw the changes in between, ends its watchers
// with ErrFeedRestarted rather than go on past them in silence.
func TestRebuildAheadOfTheRunnerRestartsTheFeed(t *testing.T) {
	_, store := fileStore(t)
	ctx := t.Context()
	var head uint64
	for i := range 50 {
		head = create(t, store, fmt.Sprintf("o-%02d", i), "c")
	}
	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	held := heldLog{Log: store, release: make(chan struct{})}
	r, err := projections.NewRunner(held, d, projections.WithBulkCatchUp(0))
	if err != nil {
		t.Fatal(err)
	}
	watcher, _, _, _ := r.Feed().Subscribe("", nil, 100, 0)
	t.Cleanup(watcher.Close)
	runUntilCleanup(t, r)
	if err := r.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if p := r.Position(); p != head {
		t.Fatalf("runner at %d after the swap, want %d", p, head)
	}
	select {
	case <-r.Ready():
	default:
		t.Fatal("not ready at the log's head")
	}
	if !errors.Is(watcher.Err(), projections.ErrFeedRestarted) || len(watcher.C()) != 0 {
		t.Fatalf("watcher: %d changes, %v; want none and ErrFeedRestarted", len(watcher.C()), watcher.Err())
	}
	// Released, the runner follows from there, and the feed publishes
	// what comes next to the watchers subscribed since.
	after, _, _, _ := r.Feed().Subscribe("", nil, 100, head)
	t.Cleanup(after.Close)
	close(held.release)
	last := create(t, store, "o-next", "c")
	select {
	case c := <-after.C():
		if c.Position != last {
			t.Fatalf("after the swap the feed published %d, want %d", c.Position, last)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

// failingLog fails its first fails reads of the log from position 1 (a
// replay's), as a log out of reach for a moment would.
type failingLog struct {
	projections.Log
	mu    sync.Mutex
	fails int
}

var errLogOutOfReach = errors.New("log out of reach")

func (l *failingLog) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	l.mu.Lock()
	fail := from == 1 && l.fails > 0
	if fail {
		l.fails--
	}
	l.mu.Unlock()
	if fail {
		return func(yield func(eventstore.Batch, error) bool) { yield(eventstore.Batch{}, errLogOutOfReach) }
	}
	return l.Log.ReadBatches(ctx, from, opts...)
}

// A bulk catch-up whose replay fails is tried again, and one that fails
// every time leaves the runner to catch up batch by batch: either way the
// runner gets to the log's head, and it follows the log from where its
// read model is.
func TestBulkCatchUpRetriesThenFallsBack(t *testing.T) {
	t.Cleanup(projections.SetBulkBackoff(time.Millisecond))
	_, store := fileStore(t)
	ctx := t.Context()
	var head uint64
	for i := range 60 {
		head = create(t, store, fmt.Sprintf("o-%02d", i), "c")
	}
	for _, tc := range []struct {
		name     string
		fails    int
		replaced bool
	}{
		{name: "fails once", fails: 1, replaced: true},
		{name: "fails every time", fails: 100, replaced: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := projections.Open(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = d.Close() })
			first := d.Current().Path()
			log := &followLog{Log: &failingLog{Log: store, fails: tc.fails}}
			r, err := projections.NewRunner(log, d, projections.WithBulkCatchUp(10))
			if err != nil {
				t.Fatal(err)
			}
			runUntilCleanup(t, r)
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
			if replaced := r.ReadModel().Path() != first; replaced != tc.replaced {
				t.Fatalf("read model replaced by a replay: %v, want %v", replaced, tc.replaced)
			}
			wantFrom := uint64(1)
			if tc.replaced {
				wantFrom = r.Position() + 1
			}
			// A swap readies the runner before it follows the log: an
			// event it applies says that it does.
			if err := r.WaitFor(ctx, create(t, store, "next-"+fmt.Sprint(tc.fails), "c")); err != nil {
				t.Fatal(err)
			}
			if from := log.firstFrom(); from != wantFrom {
				t.Fatalf("followed from %d, want %d", from, wantFrom)
			}
			if _, _, err := r.ReadModel().GetOrder(ctx, "o-59"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// laggingPeerLog's follows first say that nothing is pending, as one whose
// consumer landed on a replica that lags the stream leader does, and then
// deliver the log as it is.
type laggingPeerLog struct{ projections.Log }

func (l laggingPeerLog) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		if !yield(eventstore.Batch{}, nil) {
			return
		}
		for b, err := range l.Log.FollowBatches(ctx, from, opts...) {
			if !yield(b, err) {
				return
			}
		}
	}
}

// A runner is ready once its read model reached the head the log had when
// it started, not when a follow first says nothing is pending: a lagging
// replica says so short of the head, and a node would take queries with
// its read model behind.
func TestRunnerIsNotReadyShortOfTheHeadALaggingFollowReports(t *testing.T) {
	_, store := fileStore(t)
	var head uint64
	for i := range 10 {
		head = create(t, store, fmt.Sprintf("lag-%d", i), "c")
	}
	d, err := projections.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(laggingPeerLog{store}, d, projections.WithBulkCatchUp(0))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	select {
	case <-r.Ready():
	case <-t.Context().Done():
		t.Fatal("never ready")
	}
	if p := r.Position(); p < head {
		t.Fatalf("ready at position %d, short of the head %d the log had at start", p, head)
	}
}

// A wait for a position the runner has not reached ends with
// ErrRunnerStopped once Run returns, as at a node's shutdown, which stops
// the runner before the queries in flight have drained: each waited out
// its whole wait (up to 10 s) and held the shutdown that long. Run again,
// the runner is waited for again.
func TestWaitEndsWhenTheRunnerStops(t *testing.T) {
	_, store := fileStore(t)
	d, err := projections.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(store, d)
	if err != nil {
		t.Fatal(err)
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
		}
	}
	stop := run()
	first := create(t, store, "w-1", "c")
	if err := r.WaitForCommitted(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	waits := make(chan error, 2)
	for _, wait := range []func(context.Context, uint64) error{r.WaitFor, r.WaitForCommitted} {
		// Bounded: a wait that the stop does not end fails the test
		// rather than hanging it.
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			waits <- wait(ctx, first+100)
		}()
	}
	stop()
	for range 2 {
		if err := <-waits; !errors.Is(err, projections.ErrRunnerStopped) {
			t.Fatalf("wait past the position of a stopped runner: %v, want ErrRunnerStopped", err)
		}
	}
	stop = run()
	defer stop()
	second := create(t, store, "w-2", "c")
	if err := r.WaitForCommitted(t.Context(), second); err != nil {
		t.Fatalf("wait on the runner run again: %v", err)
	}
}
