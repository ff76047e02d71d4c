package eventstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
)

// ErrInvalidOption reports a ReadOption with a value out of range, or one
// the read it was given to does not take, an Option of New given a value
// it does not accept, and a SubscribeOption or subscription name that
// Subscribe refuses.
var ErrInvalidOption = errors.New("eventstore: invalid option")

// Defaults and bounds of the read options.
const (
	DefaultBatchSize = 500                   // BatchSize
	MaxBatchSize     = 10000                 // BatchSize
	DefaultBatchWait = 20 * time.Millisecond // BatchWait, for FollowBatches
)

// Entry is one message of the log as ReadBatches and FollowBatches deliver
// it. Err is nil for an event. Otherwise the message is not an event this
// store can read (Err wraps ErrMalformedEvent) and Recorded holds only what
// could be read of it, enough to dead-letter or report it: Position, Time,
// OrderID (the subject without the prefix), Type and Meta.Hash and
// Meta.PrevHash as stored. Readers of the whole log skip or report such a
// message rather than stop at it.
type Entry struct {
	Recorded
	Err error
}

// Batch is one step of ReadBatches or FollowBatches: consecutive messages of
// the log, oldest first.
type Batch struct {
	// Entries is reused by the next step of the iteration: copy what
	// must outlive it.
	Entries []Entry
	// Pending is how many messages the read selects after the last entry,
	// as the server counted when it delivered it: the reader's lag. 0 means
	// it has reached the head.
	Pending uint64
}

// ReadOption configures ReadBatches and FollowBatches. An invalid option
// makes the read yield one error wrapping ErrInvalidOption.
type ReadOption func(*readOptions) error

type readOptions struct {
	orders    []string // order ids, distinct
	startTime time.Time
	upTo      uint64
	bounded   bool // upTo was given
	batchSize int
	batchWait time.Duration
	// busyAfter and busyWait: BusyWait.
	busyAfter int
	busyWait  time.Duration
	// endOnReset: EndOnReset.
	endOnReset bool
}

// UpTo ends ReadBatches at log position to, inclusive, instead of at the
// head as of the call: a reader that took the head itself stops there
// however fast events are appended. FollowBatches refuses it.
func UpTo(position uint64) ReadOption {
	return func(o *readOptions) error {
		o.upTo, o.bounded = position, true
		return nil
	}
}

// ForOrders selects the events of the given orders only (at least one; a
// repeated id selects nothing more). An invalid id makes the read yield an
// error wrapping ErrInvalidOrderID.
func ForOrders(orderIDs ...string) ReadOption {
	return func(o *readOptions) error {
		if len(orderIDs) == 0 {
			return fmt.Errorf("%w: ForOrders without an order id", ErrInvalidOption)
		}
		for _, id := range orderIDs {
			if err := validateOrderID(id); err != nil {
				return err
			}
			if !slices.Contains(o.orders, id) {
				o.orders = append(o.orders, id)
			}
		}
		return nil
	}
}

// StartTime starts the read at the first event the log stored at or after
// t (the server's clock, Recorded.Time), rather than at a position: the
// position given to the read must then be 0. A follow from a time the log
// has not reached yet skips the events appended meanwhile but stored
// before it.
func StartTime(t time.Time) ReadOption {
	return func(o *readOptions) error {
		if t.IsZero() {
			return fmt.Errorf("%w: zero StartTime", ErrInvalidOption)
		}
		// The server compares times as nanoseconds since 1970 in 64
		// bits: a time after 2262 wrapped around to before 1970, and a
		// read from it started at the log's first event. Held to that
		// range, such a time reads as itself (after every event, or
		// before every one).
		switch {
		case t.Before(minStartTime):
			t = minStartTime
		case t.After(maxStartTime):
			t = maxStartTime
		}
		o.startTime = t
		return nil
	}
}

// minStartTime and maxStartTime are the range of times the server's
// nanoseconds hold.
var (
	minStartTime = time.Unix(0, math.MinInt64).UTC()
	maxStartTime = time.Unix(0, math.MaxInt64).UTC()
)

// BatchSize bounds the entries of one batch, 1 to MaxBatchSize (default
// DefaultBatchSize). The reader asks the server for twice as many messages
// at a time (at most 2,000), so that a batch is ready while the one before
// is processed. ReadBatches yields what has arrived, so with n above 1,000
// its batches are often smaller than n.
func BatchSize(n int) ReadOption {
	return func(o *readOptions) error {
		if n < 1 || n > MaxBatchSize {
			return fmt.Errorf("%w: batch size %d out of range 1..%d", ErrInvalidOption, n, MaxBatchSize)
		}
		o.batchSize = n
		return nil
	}
}

// BatchWait sets how long FollowBatches lets the first event of a batch
// wait for others (default DefaultBatchWait; 0 yields what has arrived at
// once). Negative values are invalid. ReadBatches never waits: it yields
// what has arrived.
func BatchWait(d time.Duration) ReadOption {
	return func(o *readOptions) error {
		if d < 0 {
			return fmt.Errorf("%w: negative batch wait %v", ErrInvalidOption, d)
		}
		o.batchWait = d
		return nil
	}
}

// BusyWait makes FollowBatches wait up to d for more events, as long as
// they keep coming, after it yielded a batch of at least n: while the log
// is busy, a batch then gathers what a few more appends bring instead of
// what arrived during the previous batch's processing, and fewer, larger
// batches cost the reader less per event; an idle log's events are still
// yielded as soon as they arrive. It applies where BatchWait is 0.
// Invalid: n < 1, d < 0.
func BusyWait(n int, d time.Duration) ReadOption {
	return func(o *readOptions) error {
		if n < 1 || d < 0 {
			return fmt.Errorf("%w: BusyWait(%d, %v): n must be at least 1, d not negative", ErrInvalidOption, n, d)
		}
		o.busyAfter, o.busyWait = n, d
		return nil
	}
}

// EndOnReset ends FollowBatches with an error wrapping ErrUnavailable
// when its consumer would make itself again where it left off (the
// connection reconnected, a heartbeat was missed, the consumer was
// deleted) rather than going on: a NATS server that restarted without its
// last events (a power loss) then takes new appends at the positions the
// follower had passed, which a consumer resumed after them never delivers.
// A follower that must not skip them checks the log before following
// again (the projection's runner does). Other reads ignore it.
func EndOnReset() ReadOption {
	return func(o *readOptions) error {
		o.endOnReset = true
		return nil
	}
}

// errReset ends a follow with EndOnReset whose consumer was reset.
var errReset = errors.New("the follow's consumer was reset (a reconnect, a missed heartbeat); ended so that the log is checked before following again")

func newReadOptions(from uint64, follow bool, opts []ReadOption) (readOptions, error) {
	o := readOptions{batchSize: DefaultBatchSize, batchWait: DefaultBatchWait}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return o, err
		}
	}
	switch {
	case follow && o.bounded:
		return o, fmt.Errorf("%w: UpTo with FollowBatches", ErrInvalidOption)
	case !o.startTime.IsZero() && from > 1:
		return o, fmt.Errorf("%w: StartTime with start position %d", ErrInvalidOption, from)
	}
	if !follow {
		o.batchWait = 0
	}
	return o, nil
}

// consumerConfig is the one place that turns a read into the ordered
// consumer serving it: the subjects it selects and where it starts.
func (s *Store) consumerConfig(from uint64, o *readOptions) jetstream.OrderedConsumerConfig {
	// nats.go's inactive threshold for ordered consumers (5 minutes), not
	// Follow's shorter one: a batch reader that takes long over a batch (a
	// rebuild's commit, an export to a slow client) keeps its consumer.
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case !o.startTime.IsZero():
		at := o.startTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &at
	case from > 1:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cfg.FilterSubjects = s.filterSubjects(o)
	return cfg
}

// filterSubjects are the subjects a read of o selects: its orders', or
// every order's. Always a filter, even on a stream of order subjects only:
// subjects may be added to the stream after New looked at it.
func (s *Store) filterSubjects(o *readOptions) []string {
	if len(o.orders) == 0 {
		return []string{s.wildcard}
	}
	subjects := make([]string, len(o.orders))
	for i, id := range o.orders {
		subjects[i] = s.Subject(id)
	}
	return subjects
}

// ReadBatches reads the log from position from (0 and 1 both mean the
// beginning) in batches, in order, up to the head as of the call (or the
// UpTo position), and then ends; events appended meanwhile are not
// included. Messages that are not events are delivered as entries with Err
// set. It reads with an ordered consumer, the fastest way through a long
// range, which leaves nothing on the server; it ends early when nothing
// more is stored (deleted positions are skipped).
//
// Options: UpTo, ForOrders, StartTime, BatchSize. On error it yields one
// (Batch{}, err) and ends: ErrInvalidOption or ErrInvalidOrderID for an
// option; ErrUnavailable when JetStream cannot be reached, the consumer
// cannot be created or the connection closes; the wrapped ctx error when
// ctx ends before the read does (a deadline counts as ErrUnavailable), so
// that a read cut short never passes for a complete one. Stopping the
// loop early is fine.
func (s *Store) ReadBatches(ctx context.Context, from uint64, opts ...ReadOption) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		o, err := newReadOptions(from, false, opts)
		if err != nil {
			yield(Batch{}, err)
			return
		}
		if !o.bounded {
			if o.upTo, err = s.Head(ctx); err != nil {
				yield(Batch{}, err)
				return
			}
		}
		if o.upTo == 0 || (o.startTime.IsZero() && from > o.upTo) {
			return
		}
		if err := s.consume(ctx, from, &o, false, yield); err != nil {
			yield(Batch{}, classifyRead(fmt.Sprintf("read from position %d", from), err))
		}
	}
}

// FollowBatches reads the log from position from (0 and 1 both mean the
// beginning) in batches, in order, and then keeps delivering events as
// they are appended, until ctx is done. A batch holds what has arrived, up
// to BatchSize entries, its first entry waiting up to BatchWait for others.
// When there is nothing to deliver at the start, the first batch is empty
// with Pending 0, so that a follower learns at once that it is at the
// head. Messages that are not events are delivered as entries with Err set.
//
// It uses an ordered consumer, which survives reconnects, server restarts
// and stream leader moves by recreating itself where it left off (a missed
// heartbeat, after two seconds, is what makes it notice a move). When ctx
// is done the iteration ends without an error. Other errors are yielded
// once and end it: ErrInvalidOption or ErrInvalidOrderID for an option,
// ErrUnavailable when the consumer cannot be created or the connection is
// closed. A follower resumes after an error with FollowBatches from the
// position after the last entry it processed.
//
// Options: ForOrders, StartTime, BatchSize, BatchWait.
func (s *Store) FollowBatches(ctx context.Context, from uint64, opts ...ReadOption) iter.Seq2[Batch, error] {
	return func(yield func(Batch, error) bool) {
		o, err := newReadOptions(from, true, opts)
		if err != nil {
			yield(Batch{}, err)
			return
		}
		err = s.consume(ctx, from, &o, true, yield)
		if err != nil && ctx.Err() == nil {
			yield(Batch{}, classifyRead(fmt.Sprintf("follow from position %d", from), err))
		}
	}
}

// classifyRead classifies an error of a consumer read. One that fits no
// class is the server's failure to serve the read, not the caller's
// mistake, and so counts as unavailable.
func classifyRead(op string, err error) error {
	if classOf(err) == nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("eventstore: %s: %w: %w", op, ErrUnavailable, err)
	}
	return classify(op, err)
}

// consume runs one ordered consumer for a read, yielding its batches. It
// returns nil when the read is complete or the caller stopped it.
func (s *Store) consume(ctx context.Context, from uint64, o *readOptions, follow bool, yield func(Batch, error) bool) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	octx, ocancel := s.withTimeout(ctx)
	cons, err := s.js.OrderedConsumer(octx, s.cfg.streamName, s.consumerConfig(from, o))
	ocancel()
	if err != nil {
		return err
	}
	defer streamcfg.DropConsumer(ctx, s.js, s.cfg.streamName, cons) // after cc.Stop, deferred below
	// Asked before consuming, so that a selection with nothing in it
	// (the rest was deleted, or the head itself is a deleted message,
	// which is never delivered) ends a read rather than waiting forever,
	// and tells a follower it is at the head.
	if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 {
		more := false
		if !follow {
			if more, err = s.remains(ctx, from-min(from, 1), o); err != nil {
				return err
			}
		}
		if !more && (!follow || !yield(Batch{}, nil)) {
			return nil
		}
	}
	ahead := readAhead(o.batchSize)
	r := consumerRead{s: s, o: o, follow: follow, msgs: make(chan jetstream.Msg, ahead), entries: make([]Entry, 0, o.batchSize)}
	consumeOpts := []jetstream.PullConsumeOpt{jetstream.PullMaxMessages(ahead),
		// Short pulls with a fast heartbeat: after a stream leader moves,
		// a missed heartbeat (2× the interval) is what makes the consumer
		// re-create itself, so this bounds how long a reader stalls.
		jetstream.PullExpiry(5 * time.Second), jetstream.PullHeartbeat(time.Second)}
	if follow && o.endOnReset {
		var reset atomic.Bool
		nc := s.js.Conn()
		reconnects := nc.Stats().Reconnects
		// nats.go tells the handler of a missed heartbeat or a deleted
		// consumer, not of a reconnect: that is counted.
		consumeOpts = append(consumeOpts, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, nats.ErrNoResponders) {
				reset.Store(true)
			}
		}))
		r.reset = func() bool { return reset.Load() || nc.Stats().Reconnects != reconnects }
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case r.msgs <- m:
		case <-cctx.Done():
		}
	}, consumeOpts...)
	if err != nil {
		return err
	}
	defer cc.Stop()
	r.closed = cc.Closed()
	return r.run(ctx, yield)
}

// remains reports whether a read of o, having met the log up to position
// after, has more to meet up to its end: whether the stream leader holds a
// message of the read's selection after it and at or before o.upTo. On a
// replicated stream nats-server places an ordered consumer on any peer,
// and one on a peer that lags reports nothing pending before the leader's
// head; without this question the read ended there, short of events
// acknowledged before it began. A stream of one replica answers from the
// same copy, so it is not asked.
func (s *Store) remains(ctx context.Context, after uint64, o *readOptions) (bool, error) {
	if !s.replicated || after >= o.upTo {
		return false, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for _, subj := range s.filterSubjects(o) {
		req := msgGetRequest{Seq: after + 1, NextFor: subj, NoHeaders: true}
		if after == 0 && !o.startTime.IsZero() {
			// A read from a time: what the leader holds from it. A
			// lagging replica the read's consumer landed on may have
			// nothing from it yet.
			req = msgGetRequest{StartTime: &o.startTime, NextFor: subj, NoHeaders: true}
		}
		raw, found, err := s.leaderGet(ctx, req)
		if err != nil {
			return false, err
		}
		if found && raw.Sequence <= o.upTo {
			return true, nil
		}
	}
	return false, nil
}

// maxReadAhead bounds how many messages a read has asked for beyond the
// batch it is gathering, in the client's buffer and again in its own
// channel. Twice a rebuild's batches of 5,000, in both, held up to 20,000
// messages in memory with their headers parsed; with 2,000 the peak RSS of
// ordersd's first rebuild of a 62,132-event log fell from 244–279 to
// 192–226 MB and its page faults by a quarter to a third, its rate within
// the noise (BENCHMARKS.md).
const maxReadAhead = 2000

// readAhead is how many messages a read of batches of n asks the server
// for at a time: two batches, so that one is ready while the caller works
// on the other, up to maxReadAhead.
func readAhead(n int) int { return min(2*n, maxReadAhead) }

// consumerRead gathers the messages of one consumer into batches.
type consumerRead struct {
	s       *Store
	o       *readOptions
	follow  bool
	msgs    chan jetstream.Msg
	closed  <-chan struct{}
	entries []Entry
	pending uint64
	done    bool   // a read reached its end, or its consumer says so
	seen    uint64 // the position of the last message a read met, past its end too
	last    int    // entries of the previous batch
	reached bool   // a follow by time met an entry at or after its start (see early)
	// reset reports whether the consumer of a follow with EndOnReset was
	// reset since it began; nil without EndOnReset.
	reset func() bool
}

func (r *consumerRead) run(ctx context.Context, yield func(Batch, error) bool) error {
	for {
		var m jetstream.Msg
		select {
		case m = <-r.msgs:
		case <-ctx.Done():
			return ended(ctx)
		case <-r.closed:
			return nats.ErrConnectionClosed
		}
		r.entries = r.entries[:0]
		r.add(m)
		r.fill(ctx)
		if r.reset != nil && r.reset() {
			// What came since may come from a consumer made again past
			// positions the log now holds other events at.
			return errReset
		}
		if len(r.entries) > 0 && !yield(Batch{Entries: r.entries, Pending: r.pending}, nil) {
			return nil
		}
		if r.done {
			// The consumer says nothing more is pending before the read's
			// end; its peer may lag the leader (see remains).
			more, err := r.s.remains(ctx, r.seen, r.o)
			if err != nil || !more {
				return err
			}
			r.done = false
		}
	}
}

// fill adds the messages that have arrived to the batch, up to its size.
// When following it also waits for more, up to the batch wait, as long as
// they keep coming: a burst is still being delivered.
func (r *consumerRead) fill(ctx context.Context) {
	defer func() { r.last = len(r.entries) }()
	var deadline <-chan time.Time
	wait := r.o.batchWait
	if wait == 0 && r.follow && r.o.busyAfter > 0 && r.last >= r.o.busyAfter {
		wait = r.o.busyWait
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for !r.done && len(r.entries) < r.o.batchSize {
		select {
		case m := <-r.msgs:
			r.add(m)
			continue
		default:
		}
		if deadline == nil {
			return
		}
		select {
		case m := <-r.msgs:
			r.add(m)
		case <-deadline:
			return
		case <-time.After(time.Millisecond):
			return
		case <-ctx.Done():
			return
		}
	}
}

// add decodes m into the batch, unless a read has passed its end with it.
func (r *consumerRead) add(m jetstream.Msg) {
	e, pending := r.s.entry(m)
	r.pending = pending
	if r.early(e) {
		return
	}
	if !r.follow {
		r.seen = e.Position
		if e.Position > r.o.upTo { // appended after the end of the read
			r.done = true
			return
		}
		r.done = e.Position >= r.o.upTo || pending == 0
	}
	r.entries = append(r.entries, e)
}

// early reports whether e, of a follow that starts at a time, was stored
// before that time and comes before any stored at or after it. A consumer
// started by time with nothing stored at or after it yet starts at the
// next message appended, whatever its time: an export from midnight,
// followed from the evening before, would hold that evening. Once one at
// or after the time has come, every one after it is taken, as a read that
// is not followed takes them.
func (r *consumerRead) early(e Entry) bool {
	if !r.follow || r.o.startTime.IsZero() || r.reached {
		return false
	}
	if e.Time.Before(r.o.startTime) {
		return true
	}
	r.reached = true
	return false
}

// entry decodes one message delivered by a consumer, and returns how many
// messages of the consumer's selection followed it when it was delivered.
func (s *Store) entry(m jetstream.Msg) (Entry, uint64) {
	md, err := m.Metadata()
	if err != nil { // the ordered consumer delivers only messages it parsed
		return Entry{Err: fmt.Errorf("%w: %w", ErrMalformedEvent, err)}, 0
	}
	h := m.Headers()
	rec, err := RecordedFromMsg(m.Subject(), md.Sequence.Stream, md.Timestamp, h, m.Data(), s.cfg.prefix)
	if err != nil {
		rec = partialRecorded(strings.TrimPrefix(m.Subject(), s.cfg.prefix+"."), md.Sequence.Stream, md.Timestamp, h)
	}
	return Entry{Recorded: rec, Err: err}, md.NumPending
}
