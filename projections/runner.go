// Package projections folds the ORDERS log into read models that answer
// queries.
//
// A Runner follows the log from its read model's checkpoint + 1 in batches
// (eventstore's FollowBatches: no durable state on the server, the
// checkpoint lives in the read model itself), bounded by count and by time,
// decodes each event and applies each batch into a SQLite transaction that
// also moves the checkpoint. A batch is visible to point reads of its
// orders (GetOrder, WaitFor) as soon as it is folded; the transaction
// takes the batches of up to commitDelay and then commits, and lists,
// summaries and the feed reflect what is committed (WaitForCommitted). A
// crash therefore loses at most the uncommitted batches, which are re-read
// from the log on restart: no event is applied twice and none is skipped.
// An event that cannot be decoded or applied is recorded in the
// dead_letters table (position, type, reason), counted, and skipped.
//
// After each commit the runner publishes the committed batches' changes
// (each event with its order's state after it) to its Feed, which fans
// them out to watchers without waiting for any of them.
//
// Rebuild replays the whole log into a new database file beside the live
// one while queries keep using the live one, then swaps it in atomically.
//
// Wiring, as ordersd does it:
//
//	rm, err := projections.Open(ctx, filepath.Join(dataDir, "readmodel"))
//	runner, err := projections.NewRunner(store, rm)
//	go runner.Run(ctx)
//	<-runner.Ready() // caught up with the log head as of start-up
package projections

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	nooptrace "go.opentelemetry.io/otel/trace/noop"

	"github.com/orderstream/orderstream/eventstore/otelstore"
)

// ErrRebuildRunning reports a rebuild started while another runs.
var ErrRebuildRunning = errors.New("projections: a rebuild is already running")

// ErrNotTheLog is what Run stops with when, following the log, it finds
// the log no longer holds the event the read model applied last: the log
// lost its last events (a NATS server that came back after a power loss
// under NATS_SYNC=interval) or is another one. Run rebuilds the read model
// from the log when it starts on such a log, with no query reading the
// model it replaces; a runner that finds it while running stops for its
// process to be restarted.
var ErrNotTheLog = errors.New("projections: the log does not hold the event the read model applied last")

// ErrRunnerStopped is what a wait for a position (WaitFor,
// WaitForCommitted) returns when the runner stopped short of it: its Run
// returned (its node shutting down, or a read model it could not write),
// and the position will not come while it is stopped. A rebuild returns it
// when the runner was stopping before its model could be swapped in.
var ErrRunnerStopped = errors.New("projections: the runner stopped short of the position")

// Log is what the runner needs of the event store: its head, for the lag
// and for where start-up ends, and the log in batches, followed live and
// read up to a position for rebuilds. SubjectPrefix names the destination
// in the runner's spans.
type Log interface {
	SubjectPrefix() string
	Head(ctx context.Context) (uint64, error)
	FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
	ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
}

// Option configures a Runner. An option given a value it does not accept
// makes NewRunner fail with an error wrapping ErrInvalidOption; each option
// says which values those are.
type Option func(*Runner) error

// ErrInvalidOption reports an option of NewRunner given a value it does not
// accept.
var ErrInvalidOption = errors.New("projections: invalid option")

// busyAfter and busyWait: a batch of busyAfter events or more makes the
// next one wait up to busyWait for more (WithBatch). CreateOrder at its
// peak with all roles in one process: 4,979/s without, 5,353/s with (three
// runs each, BENCHMARKS.md).
const (
	busyAfter = 4
	busyWait  = 2 * time.Millisecond
)

// WithBatch bounds a batch by count and by how long the first event of a
// batch may wait for others (defaults 500 and 0). With no wait a batch is
// what arrived while the previous one was applied: one event when the log
// is quiet, so it is visible at once, and more the busier the log is, so
// commits stay few under load without anyone waiting on a timer. Once a
// batch held busyAfter events or more, the next one also waits up to
// busyWait for events that keep coming (eventstore.BusyWait): under a
// steady stream of appends that makes fewer, larger commits, at a cost of
// at most busyWait of visibility while the log is that busy. Invalid: n < 1 or
// more than eventstore.MaxBatchSize, or a negative wait.
func WithBatch(n int, wait time.Duration) Option {
	return func(r *Runner) error {
		if n < 1 || n > eventstore.MaxBatchSize || wait < 0 {
			return fmt.Errorf("%w: WithBatch(%d, %v): n must be 1..%d, wait not negative", ErrInvalidOption, n, wait, eventstore.MaxBatchSize)
		}
		r.batchSize, r.batchWait = n, wait
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()). Invalid: nil.
func WithLogger(l *slog.Logger) Option {
	return func(r *Runner) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		r.logger = l
		return nil
	}
}

// WithTelemetry traces batch applies (linked to the commands that wrote the
// events) and records lag and dead-letter metrics. Invalid: a nil provider.
func WithTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) Option {
	return func(r *Runner) error {
		if tp == nil || mp == nil {
			return fmt.Errorf("%w: WithTelemetry: nil provider", ErrInvalidOption)
		}
		r.tp, r.mp = tp, mp
		return nil
	}
}

// WithFeed publishes every committed batch's changes to feed, for
// watchers. Without it the runner keeps a feed of its own (see Feed).
// Invalid: nil.
func WithFeed(feed *Feed) Option {
	return func(r *Runner) error {
		if feed == nil {
			return fmt.Errorf("%w: WithFeed(nil)", ErrInvalidOption)
		}
		r.feed = feed
		return nil
	}
}

// DefaultBulkCatchUp is WithBulkCatchUp's default: below about this many
// events, catching up batch by batch takes about a second anyway.
const DefaultBulkCatchUp = 20000

// WithBulkCatchUp sets how long the log must be (its head position) for a
// runner that starts on an empty read model (a new query node, or one
// whose file was lost) to catch up as a rebuild replays (see Rebuild: into
// a new file, without fsync, its indexes built once at the end, then
// swapped in) rather than batch by batch with every index in place
// (default DefaultBulkCatchUp; 0: never; every value is valid). Until the
// swap the runner is not ready and its read model answers as of position
// 0; Rebuilding reports true, so Rebuild fails with ErrRebuildRunning. The
// feed then restarts at the replay's position (ErrFeedRestarted).
func WithBulkCatchUp(minEvents uint64) Option {
	return func(r *Runner) error {
		r.bulkCatchUp = minEvents
		return nil
	}
}

// Runner keeps a read model up to date with the log.
type Runner struct {
	events      Log
	dir         *Dir
	batchSize   int
	batchWait   time.Duration
	bulkCatchUp uint64
	logger      *slog.Logger
	tp          trace.TracerProvider
	mp          metric.MeterProvider
	tracer      trace.Tracer

	rm   atomic.Pointer[ReadModel]
	feed *Feed

	// applyMu serialises batch applies, commits and the rebuild's swap.
	// Under it: the changes applied but not committed, for the feed once
	// they are, and the commit timer (armed while a transaction is open).
	applyMu     sync.Mutex
	uncommitted []Change
	forgot      []forgotten // the customers the uncommitted changes forgot
	commitTimer *time.Timer
	// ckFailing: the last commit found the read model's checkpoints
	// failing (see checkpoints); with applyMu held.
	ckFailing   bool
	commitArmed bool

	mu        sync.Mutex
	pos       uint64 // applied: visible to point reads
	committed uint64 // in the read model's file
	changed   chan struct{}
	// halted is closed when Run returns, and replaced when it runs again:
	// waits end then (ErrRunnerStopped). Open before the first Run, whose
	// start-up a read may wait for.
	halted chan struct{}
	// stopping: Run's context ended, or Run returned, and it has not run
	// again; swapCancel cancels the rebuild swap in progress. A swap holds
	// the applies while it catches up with the log, and the runner's stop
	// waits for them: a shutdown, which stops the runner before it ends
	// the rebuild's stream, would wait on the swap's reads.
	stopping   bool
	swapCancel context.CancelFunc
	// runs counts the Runs begun: a stop of an earlier one, its context's
	// end noticed late, must not stop the swaps of the next.
	runs uint64
	// stopFollow ends the current follow after a commit off the follow
	// failed (failed holds its error).
	stopFollow context.CancelFunc
	failed     error
	head0      uint64
	ready      chan struct{}
	isReady    bool
	dead       atomic.Uint64
	lastTime   atomic.Int64 // occurred-at of the last applied event, unix nanos

	rebuilding atomic.Bool
	// followFails counts the follows in a row that ended in an error
	// before one delivered a batch (Following).
	followFails atomic.Int32

	keys Keyring // nil: personal data reads as erased

	// afterGrace runs what discards a read model a swap replaced once
	// the queries that started on it had their grace (swapGrace); tests
	// run it when they choose.
	afterGrace func(discard func())
}

// NewRunner returns a runner applying the events of log to the read model
// in dir. It
// fails with an error wrapping ErrInvalidOption when an option is invalid.
func NewRunner(log Log, dir *Dir, opts ...Option) (*Runner, error) {
	r := &Runner{
		events: log, dir: dir, batchSize: 500, batchWait: 0, bulkCatchUp: DefaultBulkCatchUp,
		logger: slog.Default(), tp: nooptrace.NewTracerProvider(), mp: noopmetric.NewMeterProvider(),
		changed: make(chan struct{}), halted: make(chan struct{}), ready: make(chan struct{}),
		// Armed by the applies that leave a transaction open; its
		// firings are the committer's (Run).
		commitTimer: time.NewTimer(time.Hour),
		afterGrace:  func(discard func()) { time.AfterFunc(swapGrace, discard) },
	}
	r.commitTimer.Stop()
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	if r.feed == nil {
		r.feed = NewFeed(0)
	}
	r.tracer = r.tp.Tracer("github.com/orderstream/orderstream/projections")
	r.rm.Store(dir.Current())
	return r, nil
}

// ReadModel returns the live read model; it changes when a rebuild swaps.
func (r *Runner) ReadModel() *ReadModel { return r.rm.Load() }

// Feed returns the feed the runner publishes its committed changes to.
func (r *Runner) Feed() *Feed { return r.feed }

// Position returns the position applied: point reads of orders answer as
// of it, though the read model's file may be up to commitDelay behind.
func (r *Runner) Position() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

// Committed returns the checkpoint as committed to the read model's file,
// which lists, summaries and the feed answer as of.
func (r *Runner) Committed() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committed
}

// DeadLettered returns how many events this runner dead-lettered since it
// started.
func (r *Runner) DeadLettered() uint64 { return r.dead.Load() }

// Ready is closed once the read model has caught up with the log head as of
// start-up.
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// Rebuilding reports whether a rebuild runs.
func (r *Runner) Rebuilding() bool { return r.rebuilding.Load() }

// WaitFor blocks until Position reaches position or ctx ends, and returns
// ctx's error in that case (ErrRunnerStopped when Run returned short of
// it): what a point read of an order needs.
func (r *Runner) WaitFor(ctx context.Context, position uint64) error {
	return r.wait(ctx, position, &r.pos)
}

// WaitForCommitted blocks until Committed reaches position or ctx ends, and
// returns ctx's error in that case (ErrRunnerStopped when Run returned
// short of it): what a list, a summary or the feed needs.
func (r *Runner) WaitForCommitted(ctx context.Context, position uint64) error {
	return r.wait(ctx, position, &r.committed)
}

// running marks the runner running until ctx ends (stopping) and returns
// what Run calls as it returns: it closes the channel waits end on
// (halted), a new one when an earlier Run closed the last.
func (r *Runner) running(ctx context.Context) (returned func()) {
	r.mu.Lock()
	select {
	case <-r.halted:
		r.halted = make(chan struct{})
	default:
	}
	halted := r.halted
	r.stopping = false
	r.runs++
	run := r.runs
	r.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { r.stopSwaps(run) })
	return func() {
		stop()
		r.stopSwaps(run)
		close(halted)
	}
}

// stopSwaps cancels the rebuild swap in progress, and refuses new ones
// until Run runs again: unless run, the Run it stops, is not the latest
// (its context's end, noticed after it returned and another Run began).
func (r *Runner) stopSwaps(run uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if run != r.runs {
		return
	}
	r.stopping = true
	if r.swapCancel != nil {
		r.swapCancel()
	}
}

// swapping records cancel as the swap in progress's (nil: none now); false
// when the runner is stopping, and the swap must not start.
func (r *Runner) swapping(cancel context.CancelFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cancel != nil && r.stopping {
		return false
	}
	r.swapCancel = cancel
	return true
}

// wait waits until *at (read under r.mu) reaches position, or the runner
// stops short of it: a read arriving while its node shuts down, which stops
// the runner first (or after the runner failed for good), is answered at
// once rather than at the end of its wait, which would hold the shutdown.
func (r *Runner) wait(ctx context.Context, position uint64, at *uint64) error {
	for {
		r.mu.Lock()
		pos, ch, halted := *at, r.changed, r.halted
		r.mu.Unlock()
		if pos >= position {
			return nil
		}
		select {
		case <-ch:
		case <-halted:
			return ErrRunnerStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// move sets *at, the applied position (r.pos) or the committed one, to p
// and wakes the waiters. The applied position never trails the committed
// one: a commit moves both. After a failed commit the applied position
// moves back, to what the file holds, so that no wait ends on a batch that
// was lost.
func (r *Runner) move(at *uint64, p uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*at = p
	r.pos = max(r.pos, r.committed)
	close(r.changed)
	r.changed = make(chan struct{})
	if !r.isReady && r.pos >= r.head0 {
		r.isReady = true
		close(r.ready)
	}
}

// markReady records that the read model reached the log head, even if the
// head position itself will never be delivered (confirmReady).
func (r *Runner) markReady() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.isReady {
		r.isReady = true
		close(r.ready)
	}
}

// Run follows the log until ctx ends; it returns nil then, or the error that
// stopped it (a read model that cannot be written). Either way its feed's
// subscriptions end with projections.ErrFeedStopped as it returns, after
// its last commit was published.
func (r *Runner) Run(ctx context.Context) error {
	defer r.feed.stop()
	defer r.running(ctx)()
	head, err := r.events.Head(ctx)
	for err != nil {
		// NATS may be down at start; the runner waits for it rather
		// than failing the process.
		r.logger.Warn("projection: log head unavailable, retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		head, err = r.events.Head(ctx)
	}
	r.mu.Lock()
	r.head0 = head
	r.mu.Unlock()
	if err := r.registerMetrics(); err != nil {
		return err
	}
	// Read after the wait for the head: an admin rebuild, which needs only
	// the log, may have swapped its model in meanwhile. Read before it,
	// the runner went on from the old model's position (its committed
	// position back to 0 on a new node, lists waiting for positions the
	// model held) or, the old model empty, replayed the whole log again
	// over the rebuilt one.
	pos, err := r.ReadModel().Position(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("projections: read checkpoint: %w", err)
	}
	pos, ok, err := r.startAt(ctx, pos, head)
	if err != nil || !ok {
		return err
	}
	// An admin rebuild may have swapped its model in while the start-up
	// checked the log against the checkpoint read before: the position it
	// committed stands (the committed one set back, reads at positions
	// the model held waited in vain until something new was committed).
	r.applyMu.Lock()
	pos = max(pos, r.Committed())
	r.feed.start(pos, severalAt(ctx, r.ReadModel(), pos))
	r.move(&r.committed, pos)
	r.applyMu.Unlock()
	done := make(chan struct{})
	var committer sync.WaitGroup
	committer.Go(func() { r.committer(done) })
	defer func() {
		close(done)
		committer.Wait()
	}()
	for {
		fctx, stop := context.WithCancel(ctx)
		r.mu.Lock()
		r.stopFollow = stop
		r.mu.Unlock()
		err := r.follow(fctx)
		stop()
		// Whatever ended the follow, what is held is committed now and
		// the timer stopped. After a failure nothing is held, nor after a
		// stop that interrupted a batch: that rolled back everything held
		// with it, which the log replays.
		r.stopCommits()
		r.mu.Lock()
		failed := r.failed
		r.mu.Unlock()
		if failed != nil {
			return failed
		}
		if ctx.Err() != nil {
			return nil
		}
		var fatal fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		r.followFails.Add(1)
		r.logger.Warn("projection: consumer stopped, restarting", "err", err)
		if err := r.checkLog(ctx); err != nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// severalAt reports whether the feed, starting at m's checkpoint pos, must
// take that position for one that may carry several changes (Feed.start):
// the checkpoint names an erasure, which changes each of its customer's
// orders there, or names no event of pos (written before checkpoints
// named their event), which may be one. A checkpoint that cannot be read
// counts as one too: the price of a wrong yes is a watcher told to list
// again, of a wrong no a watcher that misses changes.
func severalAt(ctx context.Context, m *ReadModel, pos uint64) bool {
	at, event, err := m.checkpoint(ctx)
	prefix := strconv.FormatUint(pos, 10) + ":"
	if err != nil || at != pos || !strings.HasPrefix(event, prefix) {
		return true
	}
	// The name is <position>:<order id>/<version>@<time>, and an order id
	// may hold '/' but the version and the time do not.
	id := event[len(prefix):]
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		id = id[:i]
	}
	return id == order.CustomersSubjectID
}

// checkLog returns ErrNotTheLog when the log does not hold the read
// model's checkpoint: it may have come back without its last events (a
// NATS server restarted under this node after a power loss), and followed
// from the checkpoint the read model would skip what the log takes at
// those positions. Only a start-up rebuilds (Run), with no query reading
// the model replaced. A log that cannot answer is asked again, half a
// second apart, until it does or ctx ends: a follow started unchecked
// would resume past the loss.
func (r *Runner) checkLog(ctx context.Context) error {
	for {
		held, err := r.logHolds(ctx)
		switch {
		case err == nil && !held:
			return fmt.Errorf("%w, at position %d (it lost events, or is another log): restart to rebuild the read model from it", ErrNotTheLog, r.Position())
		case err == nil:
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// startAt returns the position the runner follows the log from, given the
// read model's checkpoint pos and the log's head: pos, or, when the log
// does not hold the checkpoint (logHolds) or the read model is empty and
// far behind (bulkCatchUp), where the read model built from the log in
// bulk reached. ok is false when ctx ended first.
func (r *Runner) startAt(ctx context.Context, pos, head uint64) (_ uint64, ok bool, _ error) {
	held := false
	for pos <= head && !held {
		var err error
		if held, err = r.logHolds(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return 0, false, nil
		}
		r.logger.Warn("projection: log unavailable to check the read model's checkpoint against, retrying", "err", err)
		select {
		case <-ctx.Done():
			return 0, false, nil
		case <-time.After(time.Second):
		}
	}
	switch {
	case pos > head || !held:
		// The log no longer holds what the read model applied: it lost
		// acknowledged events (a power loss under NATS_SYNC=interval)
		// or is another log (NATS_URL pointed elsewhere), and may have
		// taken new events at the positions it lost since. Followed
		// from the checkpoint, the read model would keep orders the log
		// does not have and skip the log's events at those positions.
		// The log is the truth: the read model is built from it again.
		r.logger.Error("projection: the log does not hold the read model's checkpoint (it is ahead of the log, or the log holds another event there); rebuilding it from the log", "checkpoint", pos, "head", head)
		// Meanwhile the node answers from an empty read model, as of
		// position 0 as any read model catching up from the start
		// does, not with orders the log lost at positions past its
		// head.
		if err := r.emptied(ctx); err != nil {
			return 0, false, fmt.Errorf("projections: the read model at position %d does not match the log (head %d): %w", pos, head, err)
		}
		np, swapped, err := r.catchUpInBulk(ctx, head)
		switch {
		case err != nil:
			return 0, false, nil // ctx ended
		case !swapped:
			return 0, false, fmt.Errorf("projections: the read model at position %d does not match the log (head %d) and could not be rebuilt from it", pos, head)
		}
		return np, true, nil
	case pos == 0 && r.bulkCatchUp > 0 && head >= r.bulkCatchUp:
		r.logger.Info("projection: read model empty, catching up in bulk", "head", head)
		np, _, err := r.catchUpInBulk(ctx, head)
		if err != nil {
			return 0, false, nil // ctx ended
		}
		return np, true, nil
	}
	return pos, true, nil
}

// logHolds reports whether the log holds, at the read model's checkpoint,
// the event the read model applied there (checkpointEvent). A checkpoint
// at 0, or one whose name is of another position or none (written before
// checkpoints named their event, or by such a build since: a rollback),
// is taken as held. It fails when the log cannot be read.
func (r *Runner) logHolds(ctx context.Context) (bool, error) {
	pos, event, err := r.ReadModel().checkpoint(ctx)
	if err != nil || pos == 0 || !strings.HasPrefix(event, strconv.FormatUint(pos, 10)+":") {
		return true, err
	}
	for b, err := range r.events.ReadBatches(ctx, pos, eventstore.UpTo(pos), eventstore.BatchSize(1)) {
		if err != nil {
			return false, err
		}
		for _, e := range b.Entries {
			if e.Position == pos {
				return checkpointEvent(e.Recorded) == event, nil
			}
		}
	}
	return false, nil // nothing there: deleted, or past the head
}

// emptied makes a new, empty read model the live one, durably, and
// discards the one it replaces once the queries that started on it had
// their grace.
func (r *Runner) emptied(ctx context.Context) error {
	nm, err := r.dir.newModel(ctx)
	if err != nil {
		return err
	}
	if err := r.dir.makeCurrent(nm); err != nil {
		discard(nm)
		return err
	}
	r.retire(r.rm.Swap(nm))
	return nil
}

// retire discards old, which a swap replaced, once the queries that
// started on it had their grace.
func (r *Runner) retire(old *ReadModel) {
	r.afterGrace(func() { discard(old) })
}

// fatalError is a read-model failure, which retrying will not fix.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }

// bulkAttempts bounds the bulk catch-up's tries: a replay cut short by a
// passing failure (the log or the keys bucket unreachable for a moment)
// is tried again rather than left to the slower batch-by-batch catch-up.
const bulkAttempts = 3

// bulkBackoff is the wait before the bulk catch-up's second try; each
// later try waits one more of it.
var bulkBackoff = time.Second

// catchUpInBulk replays the log into a new read model as Rebuild does and
// swaps it in, returning the position it reached: for a read model that
// starts empty on a long log, a replay without the indexes is faster than
// live applies with them (858,287 events: 15.6–17.7 s against 33.5–40.4 s,
// BENCHMARKS.md). It logs its progress every few seconds and counts the
// replay's dead letters as the runner's. When every attempt fails (or an
// admin rebuild already runs, which will swap its own model in), the
// runner goes on from the model it has, batch by batch, and catchUpInBulk
// returns 0 and swapped false; it returns an error only when ctx ended.
func (r *Runner) catchUpInBulk(ctx context.Context, head uint64) (pos uint64, swapped bool, err error) {
	start := time.Now()
	var lastLog time.Time
	progress := func(p Progress) {
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			r.logger.Info("projection: catching up in bulk", "position", p.Position, "target", p.Target, "events_per_second", int(p.Rate))
		}
	}
	for attempt := 1; ; attempt++ {
		lastLog = time.Now()
		rp, err := r.rebuild(ctx, progress)
		switch {
		case err == nil:
			r.rebuilt(rp, "the bulk catch-up")
			r.logger.Info("projection: caught up in bulk", "position", rp.pos, "took", time.Since(start).Round(time.Millisecond))
			return rp.pos, true, nil
		case ctx.Err() != nil:
			return 0, false, ctx.Err()
		case errors.Is(err, ErrRebuildRunning):
			r.logger.Info("projection: a rebuild already runs; catching up batch by batch until it swaps its read model in")
			return 0, false, nil
		case attempt == bulkAttempts:
			r.logger.Warn("projection: bulk catch-up failed; catching up batch by batch", "err", err, "attempts", attempt)
			return 0, false, nil
		}
		r.logger.Warn("projection: bulk catch-up failed; trying again", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-time.After(time.Duration(attempt) * bulkBackoff):
		}
	}
}

// follow follows the log from the checkpoint, applying its batches, until
// ctx ends or the read fails.
func (r *Runner) follow(ctx context.Context) error {
	items := make([]Item, 0, r.batchSize)
	// EndOnReset: a consumer made again after a reconnect resumes past
	// the runner's position, where a server back without its last events
	// takes new appends; Run checks the log before following again.
	for b, err := range r.events.FollowBatches(ctx, r.Position()+1, eventstore.BatchSize(r.batchSize), eventstore.BatchWait(r.batchWait),
		eventstore.BusyWait(busyAfter, busyWait), eventstore.EndOnReset()) {
		if err != nil {
			return err
		}
		r.followFails.Store(0)
		if len(b.Entries) > 0 {
			items = r.itemsOf(ctx, items[:0], b.Entries)
			if err := keyTrouble(items); err != nil {
				// The keys bucket did not answer: read from the
				// checkpoint again rather than store the data as erased.
				return err
			}
			if err := r.applyBatch(ctx, items); err != nil {
				return err
			}
		}
		if b.Pending == 0 {
			if err := r.confirmReady(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Following reports whether the runner follows the log: false once a
// follow ended in an error and the one started after it failed too, before
// delivering anything (a consumer the server refuses to create, a log it
// cannot read), and true again with the next batch delivered. A follow
// that fails once and is replaced at once (a leader move) does not count:
// the node would leave its load balancer for half a second.
func (r *Runner) Following() bool { return r.followFails.Load() < 2 }

// confirmReady marks the runner ready after a batch with nothing pending
// behind it, once nothing on the log's subjects lies between its position
// and the head it started on: the head's own position may never be
// delivered (a deleted message, or one outside the log's subjects). The
// follow's word alone is not enough: on a replicated stream nats-server
// may place its consumer on a peer that lags the leader, which reports
// nothing pending short of the head, and the node would report ready
// with its read model behind. A read up to that head asks the leader
// (eventstore's ReadBatches); an error ends the follow, which restarts
// and asks again.
func (r *Runner) confirmReady(ctx context.Context) error {
	r.mu.Lock()
	pos, head, ready := r.pos, r.head0, r.isReady
	r.mu.Unlock()
	if ready {
		return nil
	}
	if pos < head {
		for b, err := range r.events.ReadBatches(ctx, pos+1, eventstore.UpTo(head), eventstore.BatchSize(1)) {
			if err != nil {
				return err
			}
			if len(b.Entries) > 0 {
				return nil // the follow has yet to deliver it
			}
		}
	}
	r.markReady()
	return nil
}

// itemsOf decodes a batch's entries into dst, opening sealed personal data
// with the runner's keyring; an entry that is not an event becomes a
// dead-letter Item, as an undecodable payload does.
func (r *Runner) itemsOf(ctx context.Context, dst []Item, entries []eventstore.Entry) []Item {
	for _, e := range entries {
		switch {
		case e.Err != nil:
			dst = append(dst, Item{Rec: e.Recorded, Err: e.Err})
		case r.keys == nil:
			dst = append(dst, Decode(e.Recorded))
		default:
			dst = append(dst, decodeInOrder(ctx, r.keys, e.Recorded))
		}
	}
	return dst
}

func (r *Runner) applyBatch(ctx context.Context, batch []Item) error {
	// A consumer "process" span in OpenTelemetry's messaging terms, linked
	// to the appends that produced its events: one batch spans many
	// traces, so it is a root of its own rather than a child of any. Its
	// links and attributes are only made for a span that keeps them: with
	// tracing off (the default) parsing each event's trace context was
	// work for nothing on every batch.
	sctx, span := r.tracer.Start(ctx, "projection.apply_batch", trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		links := 0
		for _, it := range batch {
			if l, ok := otelstore.LinkFrom(it.Rec.Meta); ok && links < 128 {
				span.AddLink(l)
				links++
			}
		}
		span.SetAttributes(otelstore.MessagingSystem, semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationTemplate(otelstore.SubjectTemplate(r.events.SubjectPrefix())),
			semconv.MessagingBatchMessageCount(len(batch)),
			attribute.Int("events.count", len(batch)),
			attribute.Int64("log.position.first", int64(batch[0].Rec.Position)),
			attribute.Int64("log.position.last", int64(batch[len(batch)-1].Rec.Position)))
	}
	defer span.End()
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	pos, dead, committed, err := r.ReadModel().apply(sctx, batch, &r.uncommitted, true)
	r.forgot = forgottenIn(r.forgot, batch)
	if err != nil {
		r.settle(pos, committed)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		span.RecordError(err)
		return fatalError{fmt.Errorf("projections: apply batch at %d: %w", batch[0].Rec.Position, err)}
	}
	if len(dead) > 0 {
		r.dead.Add(uint64(len(dead)))
		for _, d := range dead {
			r.logger.Error("projection: event dead-lettered", "position", d.Position, "order_id", d.OrderID, "type", d.Type, "reason", d.Reason)
		}
	}
	r.lastTime.Store(eventTime(batch[len(batch)-1].Rec).UnixNano())
	r.move(&r.pos, pos)
	if committed {
		r.published(pos)
	} else if !r.commitArmed {
		r.commitArmed = true
		r.commitTimer.Reset(commitDelay)
	}
	return nil
}

// committer commits what the applies hold each time the commit timer
// fires, until done is closed. It is one goroutine for the whole Run
// rather than time.AfterFunc's new one per commit: SQLite's commit runs
// deep, and a fresh goroutine grew (copied) its stack to that depth on
// every commit, 1.4–2% of ordersd's CPU at 1,000 CreateOrders/s.
func (r *Runner) committer(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-r.commitTimer.C:
			r.commitHeld()
		}
	}
}

// commitDelay is how long after the first batch a transaction holds it
// commits (a little later when an apply or the commit itself takes the
// time). The batches of that time share one transaction: at 1,000
// one-event batches a second, a commit per batch was a third of the
// projection's CPU, and the append → visible p99 went from 6.6–15.9 ms
// (median 8.4) to 4.5–7.0 ms (median 6.0) when batches became visible
// before their commit and committed together (BENCHMARKS.md, "Visible
// before committed").
const commitDelay = 5 * time.Millisecond

// commitHeld commits what the applies since the last commit left open.
func (r *Runner) commitHeld() {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.commitArmed = false
	_ = r.commit(context.Background()) // a failure ends Run (r.failed)
}

// commit commits what the applies since the last commit left open (with
// r.applyMu held) and publishes it. A failure ends Run with the error, as
// a failed apply does: the follow has read past what was lost, and
// applying on from there would skip it.
func (r *Runner) commit(ctx context.Context) error {
	pos, committed, err := r.ReadModel().commit(ctx)
	if err == nil {
		if committed {
			r.published(pos)
		}
		return nil
	}
	applied := r.Position()
	r.settle(pos, committed)
	err = fmt.Errorf("projections: commit at %d: %w", applied, err)
	r.mu.Lock()
	if r.failed == nil {
		r.failed = err
	}
	stop := r.stopFollow
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	return err
}

// published hands a commit's changes to the feed and then records the
// commit at pos (with r.applyMu held). The file holds the commit before
// either, so a watcher that subscribes and then reads the read model never
// reads it behind the feed; and the feed moves first, so a watch that
// waited for the commit (WatchOrders' min_position) subscribes at it, not
// before it, where the caller's own write would come as a change.
func (r *Runner) published(pos uint64) {
	r.feed.publish(pos, r.uncommitted, r.forgot)
	r.move(&r.committed, pos)
	// The feed keeps pointers into the slice.
	r.uncommitted, r.forgot = nil, nil
	r.checkpoints()
}

// checkpoints reports (with r.applyMu held, after a commit) when the read
// model's background checkpoints start failing and when they get through
// again: nothing else surfaces their failure (see ReadModel.CheckpointErr).
func (r *Runner) checkpoints() {
	err := r.ReadModel().CheckpointErr()
	if (err != nil) == r.ckFailing {
		return
	}
	r.ckFailing = err != nil
	if err != nil {
		r.logger.Error("projection: the read model's write-ahead log cannot be checkpointed into its file; it grows, and reads slow down, until a checkpoint gets through", "err", err)
		return
	}
	r.logger.Info("projection: the read model's write-ahead log is checkpointed again")
}

// lost records (with r.applyMu held) that what was applied since the last
// commit was rolled back: the applied position returns to the committed
// one, and the changes are never published.
func (r *Runner) lost() {
	r.uncommitted, r.forgot = nil, nil
	r.move(&r.pos, r.Committed())
}

// settle records (with r.applyMu held) how a failed apply or commit left
// what was held: committed (only the WAL's scrub after the commit
// failed), or rolled back.
func (r *Runner) settle(pos uint64, committed bool) {
	if committed {
		r.published(pos)
	} else {
		r.lost()
	}
}

// stopCommits stops the commit timer and commits what is held, when Run
// ends; a failure ends Run as any failed commit does (r.failed).
func (r *Runner) stopCommits() {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.commitTimer.Stop()
	r.commitArmed = false
	_ = r.commit(context.Background())
}

// lagSeconds is how long the first event after position, the oldest the
// projection has not applied, has been in the log, behind events behind
// the head (0: caught up). The age of the last event applied would count
// the quiet time before an append as lag: after an idle hour, an event
// appended a moment ago and not applied yet read as an hour behind. When
// that event cannot be read (a log whose Get fails, or no Get), the time
// since the last applied event occurred stands in, which is at least the
// lag.
func (r *Runner) lagSeconds(ctx context.Context, position uint64, behind int64) float64 {
	if behind <= 0 {
		return 0
	}
	if g, ok := r.events.(interface {
		Get(ctx context.Context, position uint64) (eventstore.Recorded, error)
	}); ok {
		if rec, err := g.Get(ctx, position+1); err == nil && !rec.Time.IsZero() {
			return max(time.Since(rec.Time).Seconds(), 0)
		}
	}
	if t := r.lastTime.Load(); t > 0 {
		return time.Since(time.Unix(0, t)).Seconds()
	}
	return 0
}

func (r *Runner) registerMetrics() error {
	m := r.mp.Meter("github.com/orderstream/orderstream/projections")
	lag, err := m.Int64ObservableGauge("orders.projection.lag_events", metric.WithDescription("Log head minus the position the projection has applied."))
	if err != nil {
		return err
	}
	lagSec, err := m.Float64ObservableGauge("orders.projection.lag_seconds", metric.WithDescription("Age of the oldest event the projection has not applied (since its append); 0 when caught up."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	dead, err := m.Int64ObservableCounter("orders.projection.dead_lettered", metric.WithDescription("Events the projection could not apply."))
	if err != nil {
		return err
	}
	pos, err := m.Int64ObservableGauge("orders.projection.position", metric.WithDescription("The position the projection has applied (point reads answer as of it)."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		p := r.Position()
		o.ObserveInt64(pos, int64(p))
		o.ObserveInt64(dead, int64(r.dead.Load()))
		head, err := r.events.Head(ctx)
		if err != nil {
			return nil // lag unknown while the log is unreachable
		}
		behind := int64(head) - int64(p)
		behind = max(behind, 0)
		o.ObserveInt64(lag, behind)
		o.ObserveFloat64(lagSec, r.lagSeconds(ctx, p, behind))
		return nil
	}, lag, lagSec, dead, pos)
	return err
}
