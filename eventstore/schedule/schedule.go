// Package schedule keeps a process manager's timers in a JetStream stream
// of their own, beside the event store: message schedules that the server
// stores, replicates and fires (nats-server 2.12+), the firings, read
// through a durable subscription, and small records kept one per subject
// (alerts, say). No process holds a timer, so a crash or a failover loses
// none and fires none twice.
//
// The stream holds the subjects under one root (root + ".>"); every subject
// given to a Stream must be under it. A schedule on a subject replaces the
// one before it, and the server removes it when it fires: it publishes the
// schedule's data on the schedule's target subject, where the firing is
// kept for the fired TTL (default a day), or until it is deleted
// (WithFiredKept).
//
// Errors: methods given a subject outside the root return ErrSubject; a
// subscription whose consumer is deleted or changed under it while it runs
// ends with eventstore.ErrSubscriptionLost; other errors wrap the NATS
// error, prefixed by the operation, and those of an outage (no usable
// answer, a server that cannot take the request now: eventstore.Unavailable)
// also wrap eventstore.ErrUnavailable, so that callers tell an outage as
// the event store's callers do. Every write here is safe to make again
// (a schedule deduplicated by its id, a record that replaces its subject's,
// a purge, a delete), so an unanswered one is an outage too.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
)

// ErrSubject reports a subject or filter outside the stream's root.
var ErrSubject = errors.New("schedule: subject outside the stream")

// ErrTooLate reports a Schedule whose time the server cannot hold: it keeps
// a timer's time as nanoseconds since 1970 in an int64, so a time past
// 2262 wraps into the past and would fire at once.
var ErrTooLate = errors.New("schedule: time past what the server can hold")

// latest is the last time the server's timers can hold, a whole second.
var latest = time.Unix(0, math.MaxInt64).Truncate(time.Second)

// DefaultFiredTTL is how long a firing is kept (WithFiredTTL).
const DefaultFiredTTL = 24 * time.Hour

// Stream is a stream of timers. It is safe for concurrent use.
type Stream struct {
	js     jetstream.JetStream
	name   string
	root   string
	cfg    config
	mu     sync.Mutex       // guards stream
	stream jetstream.Stream // nil until set up
}

type config struct {
	description string
	replicas    int
	storage     jetstream.StorageType
	firedTTL    time.Duration // 0: firings are kept until deleted
}

// Option configures New. An option given a value it does not accept makes
// New fail with an error wrapping ErrInvalidOption; each option says which
// values those are.
type Option func(*config) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("schedule: invalid option")

// WithDescription describes the stream to operators.
func WithDescription(d string) Option {
	return func(c *config) error { c.description = d; return nil }
}

// WithReplicas sets the stream's replicas (default 1). Invalid: outside
// 1..5. More than one needs a JetStream cluster.
func WithReplicas(n int) Option {
	return func(c *config) error { return streamcfg.SetReplicas(&c.replicas, n, ErrInvalidOption) }
}

// WithMemoryStorage keeps a new stream in memory rather than in files, for
// tests.
func WithMemoryStorage() Option {
	return func(c *config) error { c.storage = jetstream.MemoryStorage; return nil }
}

// WithFiredTTL sets how long a firing is kept after it fired (default a
// day): long after it was handled, short enough not to pile up.
func WithFiredTTL(d time.Duration) Option {
	return func(c *config) error {
		if d < time.Second {
			return fmt.Errorf("%w: WithFiredTTL(%v): below 1s", ErrInvalidOption, d)
		}
		c.firedTTL = d
		return nil
	}
}

// WithFiredKept keeps every firing until it is deleted (Delete), however
// long that takes, instead of for the fired TTL: for a consumer that
// deletes each firing once handled, so that one it cannot handle for a
// long while (its downstream down for days) is not lost to the TTL. Of
// it and WithFiredTTL, the later given wins.
func WithFiredKept() Option {
	return func(c *config) error { c.firedTTL = 0; return nil }
}

// New returns the stream name over the subjects under root. It does not
// touch the server: the stream is created (or updated to opts) on first
// use, or by Ensure. It returns the error of an invalid option, name or
// root.
func New(js jetstream.JetStream, name, root string, opts ...Option) (*Stream, error) {
	c := config{replicas: 1, storage: jetstream.FileStorage, firedTTL: DefaultFiredTTL}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if name == "" || strings.ContainsAny(name, ".*> \t\r\n/\\") {
		return nil, fmt.Errorf("schedule: invalid stream name %q", name)
	}
	if root == "" || strings.ContainsAny(root, "*> \t\r\n") || strings.HasPrefix(root, ".") || strings.HasSuffix(root, ".") {
		return nil, fmt.Errorf("schedule: invalid root %q", root)
	}
	return &Stream{js: js, name: name, root: root, cfg: c}, nil
}

// Ensure creates or updates the stream, once: later calls return at once,
// until an operation finds the stream missing (deleted by an operator, or
// lost by the server), after which the next call, or the next operation,
// creates it again. A cluster electing its JetStream leader may leave it
// unanswered for a while; the caller tries again.
func (s *Stream) Ensure(ctx context.Context) error {
	_, err := s.ensure(ctx)
	return err
}

func (s *Stream) ensure(ctx context.Context) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		return s.stream, nil
	}
	st, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        s.name,
		Description: s.cfg.description,
		Subjects:    []string{s.root + ".>"},
		Storage:     s.cfg.storage,
		Replicas:    s.cfg.replicas,
		// Schedules fire through the server; firings expire (per-message
		// TTL) after the fired TTL, or never (WithFiredKept); kept records
		// replace their subject's previous one (roll-up).
		AllowMsgSchedules: true,
		AllowMsgTTL:       true,
		AllowRollup:       true,
		AllowDirect:       true,
		Duplicates:        2 * time.Minute,
	})
	if err != nil {
		return nil, outage(fmt.Errorf("schedule: stream %s: %w", s.name, err))
	}
	s.stream = st
	return st, nil
}

// missing forgets the stream set up when err says that it is missing (or
// that nothing answers for its subjects), so that the next ensure creates
// it again: otherwise a stream deleted under a running process stayed
// missing until the process restarted, and no timer was set or fired.
// It returns err, as outage does, wrapping eventstore.ErrUnavailable when
// the stream was missing: the next call sets it up again, so a caller
// answers "retry" (UNAVAILABLE), not a fault of the server's.
func (s *Stream) missing(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		s.mu.Lock()
		s.stream = nil
		s.mu.Unlock()
		if !errors.Is(err, eventstore.ErrUnavailable) {
			return fmt.Errorf("%w: the stream is missing, and is set up again: %w", eventstore.ErrUnavailable, err)
		}
		return err
	}
	return outage(err)
}

// outage returns err wrapping eventstore.ErrUnavailable as well when it is
// an outage (see the package comment).
func outage(err error) error {
	if eventstore.Unavailable(err) && !errors.Is(err, eventstore.ErrUnavailable) {
		return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	return err
}

// under checks that every subject or filter is under the root.
func (s *Stream) under(subjects ...string) error {
	for _, subj := range subjects {
		if !strings.HasPrefix(subj, s.root+".") || len(subj) == len(s.root)+1 {
			return fmt.Errorf("%w %s: %q", ErrSubject, s.name, subj)
		}
	}
	return nil
}

// Schedule sets the timer on subject: at at (rounded up to a whole
// second), the server publishes data on target. A schedule on the same subject is replaced. id deduplicates: a
// second Schedule with the same id within two minutes changes nothing, so
// a redelivered cause schedules once. A time after 2262 is ErrTooLate.
func (s *Stream) Schedule(ctx context.Context, subject, target string, at time.Time, data []byte, id string) error {
	if err := s.under(subject, target); err != nil {
		return err
	}
	if at.After(latest) {
		return fmt.Errorf("%w: %s at %s", ErrTooLate, subject, at.UTC().Format(time.RFC3339))
	}
	if _, err := s.ensure(ctx); err != nil {
		return err
	}
	// The schedule names a whole second (nats.go writes RFC 3339 without
	// its fraction): the next one, so that the timer never fires early.
	if at.Nanosecond() != 0 {
		at = at.Truncate(time.Second).Add(time.Second)
	}
	ttl := jetstream.WithScheduleTTLNever()
	if s.cfg.firedTTL > 0 {
		ttl = jetstream.WithScheduleTTL(s.cfg.firedTTL)
	}
	_, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data},
		jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(target), ttl, jetstream.WithMsgID(id))
	if err != nil {
		return s.missing(fmt.Errorf("schedule: schedule %s: %w", subject, err))
	}
	return nil
}

// Put keeps data as the one record on subject, replacing what it held.
func (s *Stream) Put(ctx context.Context, subject string, data []byte) error {
	if err := s.under(subject); err != nil {
		return err
	}
	if _, err := s.ensure(ctx); err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgRollup: []string{jetstream.MsgRollupSubject}}}
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return s.missing(fmt.Errorf("schedule: put %s: %w", subject, err))
	}
	return nil
}

// Purge removes what the subjects hold: pending timers, firings, records.
func (s *Stream) Purge(ctx context.Context, subjects ...string) error {
	if err := s.under(subjects...); err != nil {
		return err
	}
	st, err := s.ensure(ctx)
	if err != nil {
		return err
	}
	for _, subj := range subjects {
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return s.missing(fmt.Errorf("schedule: purge %s: %w", subj, err))
		}
	}
	return nil
}

// Delete removes the message at seq (a firing that was handled, say),
// so that what is left on its subjects is what still waits. A message
// already gone (deleted, or expired with its TTL) is not an error; one the
// server would not delete (its stream without a leader for a moment) is.
func (s *Stream) Delete(ctx context.Context, seq uint64) error {
	st, err := s.ensure(ctx)
	if err != nil {
		return err
	}
	err = st.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		// The server deleted nothing: the message is gone already, or
		// the server refused (no leader for a moment, say), which nats.go
		// reports alike. Gone is what was asked.
		if _, gerr := st.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
	}
	if err != nil {
		return s.missing(fmt.Errorf("schedule: delete message %d: %w", seq, err))
	}
	return nil
}

// PurgeAcked removes the messages on the subjects matching filter that the
// durable subscription name has acknowledged: those up to its
// acknowledgement floor. A subscription not made yet has acknowledged
// nothing. For a consumer that deletes each message once handled (Delete),
// it removes what a build that did not delete them left behind. The floor
// says what was settled only because Subscribe's consumers deliver every
// message from the stream's start and never give one up (no delivery
// limit): a message below it was acknowledged (or terminated), never
// skipped.
func (s *Stream) PurgeAcked(ctx context.Context, name, filter string) error {
	if err := s.under(filter); err != nil {
		return err
	}
	st, err := s.ensure(ctx)
	if err != nil {
		return err
	}
	c, err := st.Consumer(ctx, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return s.missing(fmt.Errorf("schedule: purge what %s acknowledged: %w", name, err))
	}
	floor := c.CachedInfo().AckFloor.Stream
	if floor == 0 {
		return nil
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(filter), jetstream.WithPurgeSequence(floor+1)); err != nil {
		return s.missing(fmt.Errorf("schedule: purge what %s acknowledged: %w", name, err))
	}
	return nil
}

// CountSubjects returns how many subjects matching filter hold a message.
func (s *Stream) CountSubjects(ctx context.Context, filter string) (int, error) {
	if err := s.under(filter); err != nil {
		return 0, err
	}
	st, err := s.ensure(ctx)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, s.missing(fmt.Errorf("schedule: count %s: %w", filter, err))
	}
	return len(info.State.Subjects), nil
}
