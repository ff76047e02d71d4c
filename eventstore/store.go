// Package eventstore is the event store of the order system, on NATS
// JetStream: one stream (default "ORDERS") holds every event of every order,
// on one subject per order (prefix + "." + order id). Two numbers locate an
// event: its log position, the stream sequence, global to all orders; and
// its version, its number in its own order's history from 1 (in the
// metadata header, HeaderMeta). An order's stream revision is the version of its
// last event, the number of its events.
//
// Appends use optimistic concurrency on the order's revision, which the
// store turns into the subject sequence the server checks
// (Nats-Expected-Last-Subject-Sequence),
// are idempotent per request id (Nats-Msg-Id plus a look-up in the order's
// own history), and several events of one command are appended atomically
// with an atomic batch. Orders are loaded with batched direct gets, which need
// no consumer. The global log is read event by event with direct gets (Read)
// or followed live with an ordered consumer (Follow); readers of the whole
// log (projections, audit exports) read it in batches with an ordered
// consumer, up to a position (ReadBatches) or live (FollowBatches), filtered
// by order or started by time with ReadOptions. The store is the one place
// that builds subjects and consumer filters.
//
// Consistency of reads: on a replicated stream any current replica answers a
// direct get, and a follower that lags (or has just restarted) answers with
// a prefix of the log. Load is therefore fast but may be stale, which is
// harmless where an append with the loaded revision follows: the expected
// revision refuses it. LoadLatest is Load confirmed with the stream leader
// (the non-direct message get, which only the leader answers) and completed
// from it; it is for answers drawn from a history with no append to back
// them: rejecting a command, auditing. Get falls back to the leader before
// it reports a position missing. nats-server reserves an error code for a
// minimum-last-sequence guard on direct gets (10180) but does not implement
// it (checked in 2.15.3), so the guard cannot be left to the server.
//
// The log is immutable: the stream denies message deletes and purges and
// has no limits that drop events (see New and Immutable).
//
// The store is payload agnostic: events are a type name, opaque bytes and
// Metadata carried in headers. Errors are classified by the sentinels
// ErrConflict, ErrInvalidOrderID, ErrEmptyAppend, ErrTooLarge,
// ErrUnavailable, ErrInvalidEvent and ErrMalformedEvent; nothing is logged.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
)

// Defaults of the options.
const (
	DefaultStreamName      = "ORDERS"              // WithStreamName
	DefaultSubjectPrefix   = "orders"              // WithSubjectPrefix
	DefaultReplicas        = 1                     // WithReplicas
	DefaultDuplicateWindow = 30 * time.Second      // WithDuplicateWindow
	DefaultStorage         = jetstream.FileStorage // WithStorage
	DefaultLeaderStepDown  = 30 * time.Second      // WithLeaderStepDown
)

const (
	// A page of a direct get batch. Most orders fit in one; the byte bound
	// keeps a page far below the client's default pending limit (64 MiB).
	defaultPageSize  = 1000
	defaultPageBytes = 4 << 20
)

// Store appends and reads order events in one JetStream stream. It is safe
// for concurrent use; it holds no connection of its own and no goroutines
// between calls.
type Store struct {
	js         jetstream.JetStream
	nc         *nats.Conn
	stream     jetstream.Stream
	cfg        config
	wildcard   string // prefix + ".*": every order subject
	replicated bool   // reads may be answered by a lagging replica
	directSub  string // direct get API subject of the stream
	msgGetSub  string // message get API subject of the stream, served by its leader
	pageSize   int
	pageBytes  int
	// mutable says why the stream still lets events be deleted, nil when
	// it does not.
	mutable  error
	versions versionCache
}

type config struct {
	streamName  string
	prefix      string
	replicas    int
	duplicates  time.Duration
	storage     jetstream.StorageType
	keepMutable bool
	// keepSettings leaves an existing stream's replicas and duplicate
	// window as they are (WithSettingsKept).
	keepSettings bool
	format       HeaderFormat
	// stepDown: WithLeaderStepDown.
	stepDown time.Duration
}

// Option configures New. An option given a value it does not accept makes
// New fail with an error wrapping ErrInvalidOption; each option says which
// values those are.
type Option func(*config) error

// WithStreamName sets the stream name (default "ORDERS"). Invalid: empty,
// or containing '.', '*', '>', '/', '\', whitespace or unprintable runes.
func WithStreamName(name string) Option {
	return func(c *config) error {
		if name == "" || strings.ContainsAny(name, ".*>/\\") || strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			return fmt.Errorf("%w: WithStreamName(%q): empty, or has a dot, wildcard, slash, space or control character", ErrInvalidOption, name)
		}
		c.streamName = name
		return nil
	}
}

// WithSubjectPrefix sets the subject prefix (default "orders"); an order's
// subject is prefix + "." + order id. The prefix may have several tokens but
// no wildcards. Invalid: empty, an empty token, '*', '>', whitespace or
// unprintable runes.
func WithSubjectPrefix(prefix string) Option {
	return func(c *config) error {
		bad := prefix == "" || strings.ContainsAny(prefix, "*>") ||
			strings.IndexFunc(prefix, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 ||
			slices.Contains(strings.Split(prefix, "."), "")
		if bad {
			return fmt.Errorf("%w: WithSubjectPrefix(%q): empty, an empty token, a wildcard, space or control character", ErrInvalidOption, prefix)
		}
		c.prefix = prefix
		return nil
	}
}

// WithReplicas sets the number of stream replicas (default 1), for a
// stream New creates and, unless WithSettingsKept, an existing one.
// Invalid: outside 1..5. More than one needs a JetStream cluster.
func WithReplicas(n int) Option {
	return func(c *config) error { return streamcfg.SetReplicas(&c.replicas, n, ErrInvalidOption) }
}

// WithDuplicateWindow sets how long the server remembers message ids for
// deduplication (default 30s), for a stream New creates and, unless
// WithSettingsKept, an existing one. Retries older than that are still recognised
// from the order's history when they carry a stale expected revision; what
// the window costs is about 130 bytes of the server's heap per append
// while it lasts, and a read-back of its appends when the server starts.
// Invalid: d <= 0.
func WithDuplicateWindow(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithDuplicateWindow(%v): must be positive", ErrInvalidOption, d)
		}
		c.duplicates = d
		return nil
	}
}

// WithLeaderStepDown sets how long after this process saw an order at a
// position LoadLatest takes a stream leader's answer that has the order
// below it for a former leader's, not stepped down yet, and refuses it as
// ErrUnavailable (default DefaultLeaderStepDown; nats-server steps a
// leader that lost its quorum down within 10 s). Past it, the log itself
// went back (a NATS server restarted without its last events, after a
// power loss): the answer stands, and what the store remembered of the
// order is dropped. Invalid: d <= 0.
func WithLeaderStepDown(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithLeaderStepDown(%v): must be positive", ErrInvalidOption, d)
		}
		c.stepDown = d
		return nil
	}
}

// WithSettingsKept leaves an existing stream's replicas and duplicate
// window as they are, whatever WithReplicas and WithDuplicateWindow say;
// they still set up a stream New creates. For a process that does not own
// the stream's settings: one started without them would otherwise bring
// the stream back to the defaults, and one that creates the stream must
// still create it replicated.
func WithSettingsKept() Option {
	return func(c *config) error {
		c.keepSettings = true
		return nil
	}
}

// WithHeaderFormat sets how Append writes an event's type and metadata
// (default CompactHeaders). Reads accept both formats whatever this is.
// Invalid: a value other than CompactHeaders and SeparateHeaders.
func WithHeaderFormat(f HeaderFormat) Option {
	return func(c *config) error {
		if f != CompactHeaders && f != SeparateHeaders {
			return fmt.Errorf("%w: WithHeaderFormat(%d)", ErrInvalidOption, int(f))
		}
		c.format = f
		return nil
	}
}

// WithStorage sets the storage of a new stream (default file storage). The
// storage of an existing stream cannot be changed. Invalid: anything but
// jetstream.FileStorage and jetstream.MemoryStorage.
func WithStorage(st jetstream.StorageType) Option {
	return func(c *config) error { return streamcfg.SetStorage(&c.storage, st, ErrInvalidOption) }
}

// WithMutableStream keeps the delete and purge permissions and the limits of
// an existing stream as they are, and creates a new stream that allows
// deletes and purges. It exists for tests that play an operator tampering
// with the log; Immutable reports such a stream.
func WithMutableStream() Option {
	return func(c *config) error {
		c.keepMutable = true
		return nil
	}
}

// New returns a Store on the stream described by opts, creating the stream if
// it does not exist, or updating it when its subjects, direct get or atomic
// publish settings differ from what the store needs, or its duplicate
// window or replicas from what WithDuplicateWindow and WithReplicas say
// (unless WithSettingsKept). Settings it does not manage (placement,
// metadata) are left as they are.
//
// The log is immutable: a new stream denies message deletes and purges and
// has no limits that remove events (no max age, messages or bytes, no
// roll-ups), and New brings an existing stream to that. When the server
// refuses (a stream with message schedules or per-message TTLs can never
// deny purges), New still succeeds and Immutable says what is wrong.
//
// It fails with an error wrapping ErrInvalidOption when an option is
// invalid, when the existing stream has another storage type, when the
// server refuses the update of the settings the store needs (replicas
// cannot change on a non-clustered server), or with ErrUnavailable when
// JetStream cannot be reached.
func New(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	if js == nil {
		return nil, errors.New("eventstore: nil JetStream")
	}
	cfg := config{
		streamName: DefaultStreamName,
		prefix:     DefaultSubjectPrefix,
		replicas:   DefaultReplicas,
		duplicates: DefaultDuplicateWindow,
		storage:    DefaultStorage,
		stepDown:   DefaultLeaderStepDown,
	}
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	s := &Store{
		js:        js,
		nc:        js.Conn(),
		cfg:       cfg,
		wildcard:  cfg.prefix + ".*",
		directSub: streamcfg.APIPrefix(js.Options()) + "DIRECT.GET." + cfg.streamName,
		msgGetSub: streamcfg.MsgGetSubject(js.Options(), cfg.streamName),
		pageSize:  defaultPageSize,
		pageBytes: defaultPageBytes,
	}
	if err := s.ensureStream(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) ensureStream(ctx context.Context) error {
	want := jetstream.StreamConfig{
		Name:               s.cfg.streamName,
		Description:        "Order events: the system of record. One subject per order.",
		Subjects:           []string{s.wildcard},
		Retention:          jetstream.LimitsPolicy,
		Storage:            s.cfg.storage,
		Replicas:           s.cfg.replicas,
		Duplicates:         s.cfg.duplicates,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		PersistMode:        jetstream.DefaultPersistMode,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxMsgsPerSubject:  -1,
		Discard:            jetstream.DiscardNew,
	}
	if !s.cfg.keepMutable {
		immutable(&want)
	}
	for range 2 {
		st, err := s.js.Stream(ctx, s.cfg.streamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = s.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // created concurrently by another process: reconcile it
			}
			if err != nil {
				return refused("create stream "+s.cfg.streamName, err)
			}
			return s.bind(st, nil)
		}
		if err != nil {
			return classify("look up stream "+s.cfg.streamName, err)
		}
		return s.reconcile(ctx, st)
	}
	return fmt.Errorf("eventstore: stream %s keeps appearing and disappearing", s.cfg.streamName)
}

// refused classifies the server's refusal to create or update the stream,
// op: what JetStream could not be asked is ErrUnavailable, to be tried
// again; a refusal is the options' (ErrInvalidOption), as New's doc says,
// whether the stream existed or not. A store without room for the stream
// (the server's or the account's limit) refuses it too: tried again at
// start-up it would only wait out NATS_CONNECT_TIMEOUT.
func refused(op string, err error) error {
	if storeRefused(err) {
		return fmt.Errorf("%w: eventstore: %s: the server has no room for it: %w", ErrInvalidOption, op, err)
	}
	c := classify(op, err)
	if errors.Is(c, ErrUnavailable) {
		return c
	}
	return fmt.Errorf("%w: %w", ErrInvalidOption, c)
}

// reconcile updates an existing stream to what the store needs, keeping the
// settings it does not manage. A stream that cannot hold the log (a work
// queue, sealed, a mirror) is ErrInvalidOption.
func (s *Store) reconcile(ctx context.Context, st jetstream.Stream) error {
	have := st.CachedInfo().Config
	if have.Storage != s.cfg.storage {
		return fmt.Errorf("%w: eventstore: stream %s uses %v storage, %v requested: the storage type of a stream cannot be changed",
			ErrInvalidOption, s.cfg.streamName, have.Storage, s.cfg.storage)
	}
	// Settings that make a stream no log: it would remove an event once
	// acknowledged (work queue), or take none (sealed, a mirror). The
	// server changes none of them.
	switch {
	case have.Retention == jetstream.WorkQueuePolicy:
		return fmt.Errorf("%w: eventstore: stream %s keeps messages as a work queue, which removes each once acknowledged: it cannot hold the log", ErrInvalidOption, s.cfg.streamName)
	case have.Sealed || have.Mirror != nil:
		return fmt.Errorf("%w: eventstore: stream %s is sealed or a mirror: it takes no appends", ErrInvalidOption, s.cfg.streamName)
	}
	want := have
	want.Subjects = slices.Clone(have.Subjects)
	// Interest retention removes each event no consumer waits for once
	// acknowledged, and without acks an append that landed reads as
	// failed: both are changed, as the server allows.
	want.Retention = jetstream.LimitsPolicy
	want.NoAck = false
	if !slices.Contains(want.Subjects, s.wildcard) && !slices.Contains(want.Subjects, s.cfg.prefix+".>") {
		want.Subjects = append(want.Subjects, s.wildcard)
	}
	if !s.cfg.keepSettings {
		want.Replicas = s.cfg.replicas
		want.Duplicates = s.cfg.duplicates
	}
	want.AllowDirect = true
	want.AllowAtomicPublish = true
	want.PersistMode = jetstream.DefaultPersistMode
	if !reflect.DeepEqual(want, have) {
		updated, err := s.js.UpdateStream(ctx, want)
		if err != nil {
			if have.Replicas != want.Replicas {
				return refused(fmt.Sprintf("update stream %s from %d to %d replicas (needs a JetStream cluster with enough servers)",
					s.cfg.streamName, have.Replicas, want.Replicas), err)
			}
			return refused("update stream "+s.cfg.streamName, err)
		}
		st, have = updated, updated.CachedInfo().Config
	}
	if s.cfg.keepMutable {
		return s.bind(st, nil)
	}
	// Immutability is a separate update, so that a server refusing it
	// (settings that cannot be undone) still leaves a working store; the
	// refusal is reported by Immutable, not hidden.
	want = have
	immutable(&want)
	if reflect.DeepEqual(want, have) {
		return s.bind(st, nil)
	}
	updated, err := s.js.UpdateStream(ctx, want)
	if err != nil {
		if errors.Is(classify("", err), ErrUnavailable) {
			return classify("update stream "+s.cfg.streamName+" to deny deletes and purges", err)
		}
		return s.bind(st, fmt.Errorf("eventstore: the server refused to make stream %s deny deletes and purges: %w", s.cfg.streamName, err))
	}
	return s.bind(updated, nil)
}

// immutable sets what keeps events from being removed from the log: no
// deletes, no purges, no roll-ups, no limits that discard old events. A
// stream at a limit would refuse new events rather than drop old ones.
func immutable(c *jetstream.StreamConfig) {
	c.DenyDelete = true
	c.DenyPurge = true
	c.AllowRollup = false
	c.MaxAge = 0
	c.MaxMsgs = -1
	c.MaxMsgsPerSubject = -1
	if !c.AllowMsgSchedules { // the server refuses discard new with schedules
		c.Discard = jetstream.DiscardNew
	}
}

// mutability says why a stream configured as c lets events be removed, or
// returns nil when nothing can remove them.
func mutability(name string, c jetstream.StreamConfig) error {
	var why []string
	if !c.DenyDelete {
		why = append(why, "allows message deletes")
	}
	if !c.DenyPurge {
		why = append(why, "allows purges")
	}
	if c.AllowRollup {
		why = append(why, "allows roll-ups")
	}
	if c.AllowMsgTTL {
		why = append(why, "allows per-message TTLs")
	}
	if c.Discard == jetstream.DiscardOld && (c.MaxAge > 0 || c.MaxMsgs > 0 || c.MaxBytes > 0 || c.MaxMsgsPerSubject > 0) {
		why = append(why, "discards old events at its limits")
	} else if c.MaxAge > 0 {
		why = append(why, "has a max age")
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("eventstore: stream %s is not immutable: it %s", name, strings.Join(why, ", "))
}

// bind makes st the store's stream. refused is why the server would not
// make it immutable, if it would not.
func (s *Store) bind(st jetstream.Stream, refused error) error {
	s.stream = st
	cfg := st.CachedInfo().Config
	s.replicated = cfg.Replicas > 1
	s.mutable = mutability(s.cfg.streamName, cfg)
	if s.mutable != nil && refused != nil {
		s.mutable = fmt.Errorf("%w (%w)", s.mutable, refused)
	}
	return nil
}

// Immutable returns nil when the stream, as New left it, lets no event be
// removed: it denies message deletes and purges, allows no roll-ups or
// per-message TTLs and discards nothing at its limits. Otherwise it returns
// an error saying what could remove events, and why New could not change it
// when the server refused. The stream's configuration is read once, in New.
func (s *Store) Immutable() error { return s.mutable }

// StreamName returns the name of the stream holding the events.
func (s *Store) StreamName() string { return s.cfg.streamName }

// SubjectPrefix returns the subject prefix, as needed by DecodeMsg and
// RecordedFromMsg.
func (s *Store) SubjectPrefix() string { return s.cfg.prefix }

// Subject returns the subject of an order's events. It does not validate
// orderID.
func (s *Store) Subject(orderID string) string { return s.cfg.prefix + "." + orderID }

// Head returns the last sequence of the stream, 0 when it is empty: the
// position a reader has to reach to have seen every event appended so far. It
// returns ErrUnavailable when JetStream cannot be reached.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, classify("stream info", err)
	}
	return info.State.LastSeq, nil
}

// withTimeout bounds requests of callers who gave no deadline, the same way
// nats.go does for its own API calls.
func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
}
