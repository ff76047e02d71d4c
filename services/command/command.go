// Package command implements OrderCommandService: it translates requests into
// domain commands, runs load → decide → append against the event store, and
// answers with the order's new state, its stream revision (the number of
// events in its history) and the log position of its last event.
//
// Concurrency is optimistic: the append carries the revision the decision was
// made on. When another writer got there first the store answers a conflict;
// without a caller-supplied expected_revision the command waits a short,
// random, growing time and is reloaded and decided again, a bounded number of
// times, so concurrent commands on one order lose no update and, up to a
// handful of concurrent writers per order, do not fail either. With one, the
// caller asked to fail instead: ABORTED.
//
// Idempotency: each request_id is stored in its events' metadata and in the
// Nats-Msg-Id the server deduplicates on. A repeated request_id is answered
// with the original result, recognised from the order's own history, so it
// holds beyond the server's duplicate window too. A CreateOrder without an
// order id gets one derived from its request_id, so a retry lands on the
// same order and is recognised from that order's history as well.
//
// The service keeps the histories of the orders it used last (WithHistories)
// and decides the next command on one of them without reading the log. A
// cached history is at worst stale, like a lagging replica's, and is
// treated the same way: the append's expected revision refuses a decision
// made on it, and an answer drawn from the state alone is read again from
// the stream leader first.
//
// A request_id names one request: its events also record the request's
// fingerprint (method and fields, see fingerprint), and the same request_id
// with another fingerprint is refused with ALREADY_EXISTS, reason
// REQUEST_ID_REUSED, rather than answered with another request's result.
// Events written before fingerprints were recorded have none; their
// request_id is trusted as before.
package command

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/backoff"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Store is what the command service needs of the event store.
type Store interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
	// Load may answer from a lagging replica; LoadLatest answers with every
	// acknowledged event (see eventstore.Store.LoadLatest).
	Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	// LoadLatestAfter is LoadLatest of what follows a position: the
	// erasures recorded since the service last read them.
	LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error)
}

// Option configures a Service. An option given a value it does not accept
// makes New fail with an error wrapping ErrInvalidOption; each option says
// which values those are.
type Option func(*Service) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("command: invalid option")

// WithLogger sets the logger for internal errors (default slog.Default()).
// Invalid: nil.
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		s.log = l
		return nil
	}
}

// WithKeyring seals the personal fields of every event appended (shipping
// address, tracking number) with the customer's data key and opens them when
// history is read back (see internal/pii). Without it events are stored in
// plain text, as before sealing existed. Invalid: nil.
func WithKeyring(k Keyring) Option {
	return func(s *Service) error {
		if k == nil {
			return fmt.Errorf("%w: WithKeyring(nil)", ErrInvalidOption)
		}
		s.keys = k
		return nil
	}
}

// WithClock sets the clock that stamps occurred-at (default time.Now).
// Invalid: nil.
func WithClock(now func() time.Time) Option {
	return func(s *Service) error {
		if now == nil {
			return fmt.Errorf("%w: WithClock(nil)", ErrInvalidOption)
		}
		s.now = now
		return nil
	}
}

// WithHistories sets how many orders' histories the service keeps between
// commands (default DefaultHistories; 0: none), so that the next command
// on a recently used order is decided without reading the log. Each is at
// most 64 events. Invalid: n < 0.
func WithHistories(n int) Option {
	return func(s *Service) error {
		if n < 0 {
			return fmt.Errorf("%w: WithHistories(%d): must not be negative", ErrInvalidOption, n)
		}
		s.recent = newHistories(n)
		return nil
	}
}

// WithMaxAttempts bounds load→decide→append attempts on conflict (default
// DefaultMaxAttempts). When they are used up the command answers ABORTED.
// Invalid: n < 1.
func WithMaxAttempts(n int) Option {
	return func(s *Service) error {
		if n < 1 {
			return fmt.Errorf("%w: WithMaxAttempts(%d): must be at least 1", ErrInvalidOption, n)
		}
		s.maxAttempts = n
		return nil
	}
}

// DefaultMaxAttempts is the default bound of load→decide→append attempts of
// one command on conflict. With the backoff between them, eight writers
// hammering one order do not exhaust it.
const DefaultMaxAttempts = 32

// conflictBackoff spaces conflict retries: the wait before retry n (from
// 1) is drawn uniformly from (0, min(50 ms, 0.5 ms·2ⁿ⁻¹)], so all waits of
// one command together are at most ~1.3 s, ~0.6 s on average.
var conflictBackoff = backoff.Policy{Base: 500 * time.Microsecond, Cap: 50 * time.Millisecond, Jitter: backoff.Full}

// Service implements ordersv1.OrderCommandServiceServer.
type Service struct {
	ordersv1.UnimplementedOrderCommandServiceServer
	store       Store
	log         *slog.Logger
	now         func() time.Time
	maxAttempts int
	retries     atomic.Uint64
	// hash links an event into its order's hash chain: chain.Compute, kept
	// as a field so a benchmark can measure the append path without it.
	hash func(prev string, f chain.Fields) (string, error)
	keys Keyring
	// recent holds the histories of the orders used last (histories).
	recent *histories
	// erased is the customers' subject as ForgetCustomer last read it.
	erased erasures
}

// New returns a command service on store. It fails with an error wrapping
// ErrInvalidOption when an option is invalid.
func New(store Store, opts ...Option) (*Service, error) {
	s := &Service{store: store, log: slog.Default(), now: time.Now, maxAttempts: DefaultMaxAttempts, hash: chain.Compute,
		recent: newHistories(DefaultHistories)}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Metadata keys a caller may set; the gateway forwards the HTTP headers of
// the same names.
const (
	MDActor         = "x-actor"
	MDCorrelationID = "x-correlation-id"
	MDCausationID   = "x-causation-id"
)

// result is what every RPC answers.
type result struct {
	state    order.State
	revision uint64
	position uint64
	// fingerprint is the request fingerprint of the events that produced
	// a result read back from history, and firstType the type of the
	// first of them.
	fingerprint, firstType string
}

// ConflictRetries returns how many times, since New, a command without an
// expected revision lost a race to another writer and was decided again.
func (s *Service) ConflictRetries() uint64 { return s.retries.Load() }

// validRequestID applies the rule of every identifier in the system (the
// order package's: printable ASCII without spaces, 1-64 bytes), so a request
// id that prints the same as another is the same id: no controls, C1 or
// format characters (zero-width, BOM, bidi marks) or look-alikes.
func validRequestID(id string) error {
	return rpcerr.ID("request_id", id)
}

// The request ids the process managers derive from the log positions of
// the events they act on, each prefix with the one method that uses it.
// Any other method refuses them: a client's command that took, say,
// "pay:<position>" on an order before its placement reached that position
// would be taken for the payments manager's recording, which would then
// fail as a reused request id and leave a charge unrecorded. On its own
// method such an id records an outcome of the order as any other would:
// the manager's recording is then refused (as a reused id, or because the
// order is paid or declined already), and the manager, reading the order
// recorded otherwise, voids the charge it took (payments'
// chargeNotRecorded).
var reservedPrefixes = []struct {
	prefix string
	method func(request) bool
}{
	{PaymentRequestPrefix, func(r request) bool { _, ok := r.(*ordersv1.RecordPaymentRequest); return ok }},
	{RefundRequestPrefix, func(r request) bool { _, ok := r.(*ordersv1.RecordRefundRequest); return ok }},
	{DeadlineRequestPrefix, func(r request) bool { _, ok := r.(*ordersv1.CancelOrderRequest); return ok }},
	// The ids erasures are recorded under when the client's was taken
	// (ownRequestID): no client request may hold one.
	{ownPrefix, func(request) bool { return false }},
}

// The prefixes of the process managers' request ids, which the managers
// build theirs from: the payments manager's RecordPayment and RecordRefund
// ("pay:<position>", "refund:<position>") and the deadlines' CancelOrder
// ("deadline:<kind>:<position>"). Every other method refuses them.
const (
	PaymentRequestPrefix  = "pay:"
	RefundRequestPrefix   = "refund:"
	DeadlineRequestPrefix = "deadline:"
)

// managedPosition returns the log position a process manager's request id
// ends with ("pay:<position>", "refund:<position>",
// "deadline:<kind>:<position>"): the position of the event of the order it
// acts on. ok is false for any other id; an id under one of those prefixes
// that does not end with a position names position 0, which no event has.
func managedPosition(id string) (position uint64, ok bool) {
	for _, r := range reservedPrefixes {
		if r.prefix == ownPrefix {
			continue // an erasure's, no manager's
		}
		if rest, found := strings.CutPrefix(id, r.prefix); found {
			n, _ := strconv.ParseUint(rest[strings.LastIndexByte(rest, ':')+1:], 10, 64)
			return n, true
		}
	}
	return 0, false
}

// reservedRequestID returns INVALID_ARGUMENT for a request id under a
// process manager's prefix on any method but that manager's.
func reservedRequestID(req request, id string) error {
	for _, r := range reservedPrefixes {
		if strings.HasPrefix(id, r.prefix) && !r.method(req) {
			return rpcerr.Invalid("request_id", fmt.Sprintf("prefix %q is reserved for the system's own requests", r.prefix))
		}
	}
	return nil
}

// waitToRetry waits before conflict retry n (from 1). It returns
// ErrContention without waiting when the wait would outlast ctx's deadline,
// and ctx's error if ctx ends during the wait.
func waitToRetry(ctx context.Context, n int) error {
	d := conflictBackoff.Delay(n)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return rpcerr.ErrContention
	}
	return backoff.Sleep(ctx, d)
}

// request is what every command request has.
type request interface {
	proto.Message
	GetRequestId() string
}

// target is the order a command is for.
type target struct {
	orderID string
	// generated says orderID was just derived from the request id (a
	// CreateOrder without order_id), so the order has no history unless
	// this is a retry.
	generated bool
	// expected is the client's expected revision, nil when it set none.
	expected *uint64
}

// execute runs one command to completion and maps its error for the client.
func (s *Service) execute(ctx context.Context, req request, t target, cmd order.Command) (result, error) {
	r, err := s.run(ctx, req, t, cmd)
	if err != nil {
		return result{}, rpcerr.ToStatus(ctx, s.log, err)
	}
	return r, nil
}

// run is execute without the mapping of its error.
func (s *Service) run(ctx context.Context, req request, t target, cmd order.Command) (result, error) {
	c, err := s.newCall(ctx, req, t, cmd)
	if err != nil {
		return result{}, err
	}
	for attempt := 0; attempt < s.maxAttempts; attempt++ {
		r, n, err := c.turn(ctx, attempt)
		switch n {
		case answered:
			return r, err
		case againFree:
			attempt--
		}
	}
	return result{}, rpcerr.ErrContention
}

// call is one command on its way through its load→decide→append turns.
type call struct {
	s         *Service
	req       request
	t         target
	cmd       order.Command
	requestID string
	meta      eventstore.Metadata
	// digest identifies the request (requestDigest); fp is its plain
	// fingerprint, which events written before keyed fingerprints carry.
	digest []byte
	fp     string
	// followed is set once a retried CreateOrder has switched to the order
	// its request id points at; that order must then be one this request
	// created, not another order that merely used the same request id.
	followed bool
	// latest is set once the order must be read with every acknowledged
	// event: the fast load may come from a replica that lags, which an
	// append catches, but nothing catches an answer given without one.
	latest    bool
	conflicts int
	// lookedAgain is set once a conflict of a command with an expected
	// revision had the order read again, to answer from it.
	lookedAgain bool
	// managed is the log position a process manager's request id names
	// (managedPosition), when isManaged.
	managed   uint64
	isManaged bool
	// settling is set once a turn went to reading the original of a
	// request the store already held: that turn spends no attempt, so a
	// retry gets its original's answer even when its own append was the
	// last attempt.
	settling bool
}

// next says what follows a turn.
type next int

const (
	answered  next = iota // the turn's result or error answers the command
	again                 // another turn, spending an attempt
	againFree             // another turn, without spending an attempt
)

// newCall checks the request's ids and prepares the metadata of its events.
func (s *Service) newCall(ctx context.Context, req request, t target, cmd order.Command) (call, error) {
	requestID := req.GetRequestId()
	if err := validRequestID(requestID); err != nil {
		return call{}, err
	}
	if err := reservedRequestID(req, requestID); err != nil {
		return call{}, err
	}
	if err := rpcerr.OrderID("order_id", t.orderID); err != nil {
		return call{}, err
	}
	if t.orderID == order.CustomersSubjectID {
		// The customers' subject holds erasures, not an order: a command
		// on it would fold that history as one, and could even be taken
		// for a retry of an erasure that used its request id.
		return call{}, rpcerr.Invalid("order_id", "is reserved")
	}
	digest, err := requestDigest(req)
	if err != nil {
		return call{}, err
	}
	c := call{s: s, req: req, t: t, cmd: cmd, requestID: requestID, meta: s.metadata(ctx, requestID),
		digest: digest, fp: plainFingerprint(digest)}
	c.managed, c.isManaged = managedPosition(requestID)
	return c, nil
}

// readLatest reports whether the order is to be read again with every
// acknowledged event, once: false when it already was.
func (c *call) readLatest() bool {
	if c.latest {
		return false
	}
	c.latest = true
	return true
}

// turn loads the order, decides the command on it and appends the events.
func (c *call) turn(ctx context.Context, attempt int) (result, next, error) {
	recs, err := c.load(ctx, attempt)
	if err != nil {
		return result{}, answered, err
	}
	if c.isManaged && !slices.ContainsFunc(recs, func(r eventstore.Recorded) bool { return r.Position == c.managed }) {
		// A process manager's request id names an event of the order it
		// acts on; one naming another order's event would take that
		// order's recording's id first. The history may be stale: read
		// it as the leader has it before refusing.
		if c.readLatest() {
			return result{}, againFree, nil
		}
		return result{}, answered, rpcerr.Invalid("request_id", "a request id under a reserved prefix must name a log position of an event of this order")
	}
	st, position, original, err := c.s.fold(ctx, recs, c.requestID)
	if err != nil {
		return result{}, answered, err
	}
	// The fingerprint may need the customer's data key, which the
	// keyring creates when there is none: it is made for a retry, to
	// compare with its original's (under the order's customer's key),
	// and for events to record, not for a request refused before that.
	// (A CreateOrder with a derived id is appended before it is known to
	// be a retry: one reusing a request id for another customer has made
	// that customer's key by then, as a new order of theirs would.)
	if original != nil && c.readLatest() {
		// A retry is answered with its original only as the log's
		// leader has it: a history cached here, or read from a replica,
		// may hold an event the log has lost since (a NATS server back
		// without its last events), and the retry would be told it was
		// recorded.
		return result{}, againFree, nil
	}
	if original != nil {
		if err := c.retryFingerprint(ctx, st, original); err != nil {
			return result{}, answered, err
		}
	}
	events, err := c.decide(recs, st, original)
	if err == nil && original != nil {
		return *original, answered, nil
	}
	if ((err != nil && !errors.Is(err, order.ErrInvalid)) || (err == nil && len(events) == 0)) && c.readLatest() {
		// An answer drawn from the state alone (a rejection, or
		// nothing to do) must not rest on a stale read: read again
		// with every acknowledged event, without spending an
		// attempt. An invalid command is invalid in any state.
		return result{}, againFree, nil
	}
	if err != nil {
		return result{}, answered, err
	}
	if len(events) == 0 {
		return result{state: st, revision: uint64(st.Version), position: position}, answered, nil
	}
	if err := c.fingerprint(ctx, st); err != nil {
		return result{}, answered, err
	}
	return c.append(ctx, attempt, recs, st, events)
}

// retryFingerprint is fingerprint for a retry of original. An original
// fingerprinted under the customer's data key, which the customer's
// erasure has destroyed since, can no longer be checked: the request id is
// trusted, as for events recorded before fingerprints, rather than the
// retry refused as another request, whether the forgotten customer has no
// key now or a new one (a new order of theirs, or the retry itself, made
// it). Its method, which is no personal data, is still checked (see
// trust).
func (c *call) retryFingerprint(ctx context.Context, st order.State, original *result) error {
	keyed := c.s.keys != nil && strings.HasPrefix(original.fingerprint, keyedPrefix) && personal(c.req)
	customer := customerOf(c.req, st)
	if keyed {
		has, err := c.s.keys.Has(ctx, customer)
		if err != nil {
			return fmt.Errorf("%w: customer %s: %w", convert.ErrKeyUnavailable, customer, err)
		}
		if !has {
			return c.trust(original)
		}
	}
	if err := c.fingerprint(ctx, st); err != nil || !keyed || c.meta.RequestFingerprint == original.fingerprint {
		return err
	}
	// Under another key than its original's, if the customer was
	// forgotten after it and has a new key since.
	forgotten, err := c.s.erased.forgottenAfter(ctx, c.s.store, customer, original.position)
	if err != nil {
		return err
	}
	if forgotten {
		return c.trust(original)
	}
	return nil // another request: decide refuses it
}

// trust takes a retry whose fingerprint cannot be checked for its
// original, if it is of the original's method: a ShipOrder under an
// address change's id was otherwise answered as shipped, with nothing
// recorded.
func (c *call) trust(original *result) error {
	if original.firstType != firstEventType(c.req) {
		return rpcerr.RequestIDReused()
	}
	c.meta.RequestFingerprint = original.fingerprint
	return nil
}

// fingerprint records the request's fingerprint (Service.fingerprint) in
// the call's metadata, for the order in state st.
func (c *call) fingerprint(ctx context.Context, st order.State) error {
	fp, err := c.s.fingerprint(ctx, c.req, c.digest, customerOf(c.req, st))
	c.meta.RequestFingerprint = fp
	return err
}

// load reads the order's history: with every acknowledged event once
// latest is set, else from the service's recent histories when it holds
// the order, else from the log (which may answer from a lagging replica).
func (c *call) load(ctx context.Context, attempt int) ([]eventstore.Recorded, error) {
	// An id derived from a new request id has no history: skip the load
	// and let the append's expected revision 0 prove it. The store answers
	// a retry of the request as a duplicate, and the next turn loads and
	// answers from the order's history (that turn, free, is attempt 0
	// again: settling tells it apart).
	if c.t.generated && attempt == 0 && !c.settling {
		return nil, nil
	}
	if !c.latest && !c.followed {
		// A history cached here is at worst stale, like a lagging
		// replica's: the append's expected revision catches that.
		if recs, ok := c.s.recent.get(c.t.orderID); ok {
			return recs, nil
		}
	}
	load := c.s.store.Load
	if c.latest {
		load = c.s.store.LoadLatest
	}
	recs, err := load(ctx, c.t.orderID)
	if err != nil {
		return nil, err
	}
	if c.latest {
		// The leader's answer replaces what is cached, even a longer
		// history: the log may have gone back under it.
		c.s.recent.drop(c.t.orderID)
	}
	return c.s.recent.loaded(c.t.orderID, recs), nil
}

// decide checks the request against the order's history and decides the
// command on its state st. It returns no events and no error when original
// (the state this request left earlier) is the answer.
func (c *call) decide(recs []eventstore.Recorded, st order.State, original *result) ([]order.Event, error) {
	revision := uint64(st.Version)
	switch {
	case c.followed && (len(recs) == 0 || recs[0].Meta.RequestID != c.requestID):
		return nil, rpcerr.RequestIDReused()
	case original != nil && original.fingerprint != "" && original.fingerprint != c.meta.RequestFingerprint && original.fingerprint != c.fp:
		// Another request under the same id. Events written before
		// fingerprints were recorded carry none: their request id is
		// trusted, as it always was.
		return nil, rpcerr.RequestIDReused()
	case original != nil:
		return nil, nil
	case c.t.expected != nil && *c.t.expected != revision:
		// A malformed command, or one for an order that does not
		// exist, is refused as such at any revision (order.Decide's
		// first checks): told to reload, the client would only learn
		// it a round trip later. Malformed is judged on the empty
		// state, where Decide stops after the command's own fields:
		// a check against the order's contents (a payment's amount
		// against its total) would judge the client's command by a
		// state it has not seen, which is what ABORTED tells.
		// An order that does not exist is that empty state, so the same
		// answer tells whether it is missing.
		if _, err := order.Decide(order.State{}, c.cmd); errors.Is(err, order.ErrInvalid) || errors.Is(err, order.ErrNotFound) && !st.Exists() {
			return nil, err
		}
		var at uint64
		if len(recs) > 0 {
			at = recs[len(recs)-1].Position
		}
		return nil, &rpcerr.StaleRevisionError{Expected: *c.t.expected, Revision: revision, Position: at}
	}
	return order.Decide(st, c.cmd)
}

// append links events to the order's hash chain and appends them at the
// revision st was read at.
func (c *call) append(ctx context.Context, attempt int, recs []eventstore.Recorded, st order.State, events []order.Event) (result, next, error) {
	revision := uint64(st.Version)
	prev := chain.Zero
	// Stamped as decided, on every turn: a turn after a conflict, or after
	// a refusal read again from the leader, decides on a history that may
	// hold events appended since the call came in, and its events never
	// read as older than the one before them (another node's clock may be
	// ahead), so updated_at never goes back and GetOrderAt's cut by time
	// follows the log.
	c.meta.OccurredAt = c.s.now().UTC()
	if n := len(recs); n > 0 {
		if recs[n-1].Meta.Hash != "" {
			prev = recs[n-1].Meta.Hash
		}
		if last := recs[n-1].Meta.OccurredAt; c.meta.OccurredAt.Before(last) {
			c.meta.OccurredAt = last
		}
	}
	data, err := c.s.encode(ctx, c.t.orderID, st.CustomerID, events, c.meta, prev)
	if err != nil {
		return result{}, answered, err
	}
	res, err := c.s.store.Append(ctx, c.t.orderID, revision, data)
	if err != nil || res.Duplicate {
		c.s.recent.drop(c.t.orderID)
		n, err := c.notAppended(ctx, attempt, revision, err)
		return result{}, n, err
	}
	c.s.recent.appended(c.t.orderID, recs, data, res)
	for _, e := range events {
		st = order.Evolve(st, e, c.meta.OccurredAt)
	}
	return result{state: st, revision: res.Version, position: res.Position}, answered, nil
}

// notAppended says what follows an append that did not land: err is the
// store's error, nil when the server already held the request's events.
func (c *call) notAppended(ctx context.Context, attempt int, revision uint64, err error) (next, error) {
	var reused *eventstore.RequestReusedError
	switch {
	case errors.As(err, &reused) && c.t.generated && reused.OrderID != order.CustomersSubjectID:
		// A retried CreateOrder whose first attempt created the order
		// under another id: one an older build generated (UUIDv7)
		// before ids were derived from the request id. Only the
		// server's duplicate window remembers that, so this is met
		// for retries within it of requests that build served. The
		// next turn loads that order and answers from it if this
		// request created it, and refuses the request id otherwise.
		c.t.orderID, c.followed = reused.OrderID, true
		return c.settle(), nil
	case errors.As(err, &reused):
		// Another order's request: the id names one request, whichever
		// order it is for.
		return answered, rpcerr.RequestIDReused()
	case errors.Is(err, eventstore.ErrConflict):
		// Another writer, or a lagging replica: the next load must
		// not come from that replica's copy again.
		if c.t.expected != nil {
			// Before answering ABORTED, one free look at the order as
			// the leader has it: the conflict may be this request's own
			// earlier try, which the store could not tell from another
			// writer's (its settling read came from a lagging replica,
			// after the duplicate window). decide answers from the
			// original when it is there, and ABORTED otherwise, saying
			// where the order is now (a StaleRevisionError).
			if !c.lookedAgain {
				c.lookedAgain, c.latest = true, true
				return againFree, nil
			}
			// The store's error names NATS internals; the client
			// learns only what it can act on.
			return answered, fmt.Errorf("%w: expected %d, another change landed first", rpcerr.ErrStaleRevision, revision)
		}
		c.latest = true
		if attempt+1 < c.s.maxAttempts {
			c.s.retries.Add(1)
			c.conflicts++
			if err := waitToRetry(ctx, c.conflicts); err != nil {
				return answered, err
			}
		}
		return again, nil
	case err != nil:
		return answered, err
	}
	// The server already holds this request's events: a retry, or the
	// same request racing itself. Answer from history, as the leader has
	// it: a lagging replica may not hold them yet.
	c.latest = true
	return c.settle(), nil
}

// settle is the turn after an append that met its request's original
// (or, for a retried CreateOrder, the order it created): the first such
// turn is free, since it answers rather than contends.
func (c *call) settle() next {
	if c.settling {
		return again
	}
	c.settling = true
	return againFree
}

// fold replays an order's history; position is the log position of its
// last event. When an event of requestID is found, original holds the
// state right after that request's last event. The order's stream revision
// is st.Version, the number of events folded.
func (s *Service) fold(ctx context.Context, recs []eventstore.Recorded, requestID string) (st order.State, position uint64, original *result, err error) {
	var firstType string
	for i, rec := range recs {
		e, err := convert.Foldable(convert.OpenEvent(ctx, s.keys, rec.OrderID, rec.Type, rec.Data))
		if err != nil {
			return order.State{}, 0, nil, fmt.Errorf("order %s at position %d: %w", rec.OrderID, rec.Position, err)
		}
		st = order.Evolve(st, e, rec.Meta.OccurredAt)
		position = rec.Position
		if rec.Meta.RequestID != requestID {
			continue
		}
		if i == 0 || recs[i-1].Meta.RequestID != requestID {
			firstType = rec.Type
		}
		if i+1 == len(recs) || recs[i+1].Meta.RequestID != requestID {
			original = &result{state: st, revision: uint64(st.Version), position: rec.Position, fingerprint: rec.Meta.RequestFingerprint, firstType: firstType}
		}
	}
	return st, position, original, nil
}

// encode marshals events, sealing their personal fields with customerID's
// key when the service has a keyring, and links each into the order's hash
// chain after prev, the hash of the order's last stored event. The chain
// covers the stored bytes: ciphertext, for sealed events.
func (s *Service) encode(ctx context.Context, orderID, customerID string, events []order.Event, meta eventstore.Metadata, prev string) ([]eventstore.EventData, error) {
	out := make([]eventstore.EventData, len(events))
	for i, e := range events {
		typ, data, err := s.encodeEvent(ctx, orderID, customerID, e)
		if err != nil {
			return nil, err
		}
		m := meta
		m.PrevHash = prev
		m.Hash, err = s.hash(prev, chain.Fields{OrderID: orderID, Type: typ, OccurredAt: m.OccurredAt, Actor: m.Actor, RequestID: m.RequestID, Payload: data})
		if err != nil {
			return nil, err
		}
		prev = m.Hash
		out[i] = eventstore.EventData{Type: typ, Data: data, Meta: m}
	}
	return out, nil
}

// metadata collects who and why from the call's gRPC metadata. Values are
// bounded so a client cannot bloat stored history through headers.
func (s *Service) metadata(ctx context.Context, requestID string) eventstore.Metadata {
	m := eventstore.Metadata{
		RequestID:     requestID,
		CorrelationID: requestID,
		Actor:         Actor(ctx),
	}
	if v := first(ctx, MDCorrelationID); v != "" {
		m.CorrelationID = v
	}
	m.CausationID = first(ctx, MDCausationID)
	return m
}

// Actor is who a call with ctx acts for, as the events it causes record
// it: its x-actor metadata (the token's subject, with authentication),
// trimmed, or "anonymous" when there is none or it is not fit to record.
func Actor(ctx context.Context) string {
	if v := first(ctx, MDActor); v != "" {
		return v
	}
	return "anonymous"
}

// first is the first value of the call's metadata key, looked up without
// copying the whole incoming metadata (FromIncomingContext would, on every
// command).
func first(ctx context.Context, key string) string {
	v := metadata.ValueFromIncomingContext(ctx, key)
	if len(v) == 0 {
		return ""
	}
	// Surrounding whitespace is trimmed (the event store keeps header
	// values exact); anything still unfit for a header is ignored rather
	// than failing the command.
	if !auth.Recordable(v[0]) {
		return ""
	}
	return strings.TrimSpace(v[0])
}

// requestDigest identifies a request by its method and fields, not by how
// it travelled: the request message's full name, a NUL, and its
// deterministic encoding without request_id, without unknown fields and
// without the fields the API ignores on input (ignoredOnInput). A
// retry of a request has the same digest; another request under the same
// request_id has another. See fingerprint for what is stored of it.
func requestDigest(req proto.Message) ([]byte, error) {
	m := req.ProtoReflect()
	name := m.Descriptor().FullName()
	rid := m.Descriptor().Fields().ByName("request_id")
	if !digestable(m) {
		// Rare (a newer client's fields, or a client that sends back an
		// answer's lines or address): digest a copy without them.
		m = proto.Clone(req).ProtoReflect()
		discardUnknown(m)
		clearIgnored(m)
	}
	// One size pass: it sizes the buffer, and the marshal reuses it
	// (UseCachedSize) instead of measuring the message again.
	msg := m.Interface()
	digest := append(make([]byte, 0, len(name)+1+proto.Size(msg)), name...)
	digest = append(digest, 0)
	digest, err := proto.MarshalOptions{Deterministic: true, UseCachedSize: true}.MarshalAppend(digest, msg)
	if err != nil {
		return nil, fmt.Errorf("fingerprint of %s: %w", name, err)
	}
	if rid != nil {
		// Cut request_id's record out of the encoding instead of clearing
		// it in a copy of the request: a message's encoding is the
		// concatenation of its fields' records, so what is left is the
		// encoding of the request without it, byte for byte.
		digest = dropField(digest, len(name)+1, rid.Number())
	}
	return digest, nil
}

// dropField removes the records of top-level field n from the encoded
// message in b[from:], in place.
func dropField(b []byte, from int, n protowire.Number) []byte {
	out := b[:from]
	for rest := b[from:]; len(rest) > 0; {
		num, _, l := protowire.ConsumeField(rest)
		if l < 0 {
			// Not reached for an encoding just made; keep it whole.
			return b
		}
		if num != n {
			out = append(out, rest[:l]...)
		}
		rest = rest[l:]
	}
	return out
}

// ignoredOnInput are the fields the API documents as output only, ignored
// in requests: a retry that differs from its original in them alone is the
// same request, and is answered as its original. An original an earlier
// build fingerprinted with one of them set is refused to a retry with it
// (they rarely are).
var ignoredOnInput = []protoreflect.FieldDescriptor{
	(&ordersv1.LineItem{}).ProtoReflect().Descriptor().Fields().ByName("line_total"),
	(&ordersv1.Address{}).ProtoReflect().Descriptor().Fields().ByName("erased"),
}

// ignoredIn returns the field of ignoredOnInput of m's type, or nil.
func ignoredIn(m protoreflect.Message) protoreflect.FieldDescriptor {
	d := m.Descriptor()
	for _, fd := range ignoredOnInput {
		if fd.ContainingMessage() == d {
			return fd
		}
	}
	return nil
}

// digestable reports whether m's encoding is its digest as it is: no
// message in it holds unknown fields or a field of ignoredOnInput. One
// walk of the request for both, as the digest asks this of every request.
func digestable(m protoreflect.Message) bool {
	return eachMessage(m, func(m protoreflect.Message) bool {
		if len(m.GetUnknown()) > 0 {
			return false
		}
		fd := ignoredIn(m)
		return fd == nil || !m.Has(fd)
	})
}

// clearIgnored clears the fields of ignoredOnInput in m and the messages
// in it.
func clearIgnored(m protoreflect.Message) {
	eachMessage(m, func(m protoreflect.Message) bool {
		if fd := ignoredIn(m); fd != nil {
			m.Clear(fd)
		}
		return true
	})
}

// eachMessage calls visit on m and on every message set in it, depth
// first, until visit returns false; it reports whether every call returned
// true. It walks the descriptor's fields rather than m.Range, whose
// callback would be allocated for every message visited: the digest asks
// this of every request.
func eachMessage(m protoreflect.Message, visit func(protoreflect.Message) bool) bool {
	if !visit(m) {
		return false
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() == nil || !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			all := true
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				all = eachMessage(mv.Message(), visit)
				return all
			})
			if !all {
				return false
			}
		case fd.IsList():
			for j := range v.List().Len() {
				if !eachMessage(v.List().Get(j).Message(), visit) {
					return false
				}
			}
		case !eachMessage(v.Message(), visit):
			return false
		}
	}
	return true
}

// plainFingerprint is the fingerprint of a request without personal data:
// the SHA-256 of its digest, hex-encoded.
func plainFingerprint(digest []byte) string {
	h := sha256.Sum256(digest)
	// Encoded on the stack: EncodeToString allocates twice.
	var b [2 * sha256.Size]byte
	hex.Encode(b[:], h[:])
	return string(b[:])
}

// discardUnknown drops unknown fields from m and the messages in it: fields
// this build does not know cannot change what the request does.
func discardUnknown(m protoreflect.Message) {
	eachMessage(m, func(m protoreflect.Message) bool {
		m.SetUnknown(nil)
		return true
	})
}

// orderIDSpace is the namespace of order ids derived from request ids. It
// must never change: a retry after the change would create a second order.
var orderIDSpace = uuid.MustParse("6f0c1d3e-8a52-4b7e-9c21-5d4e3f2a1b90")

// derivedOrderID returns the order id of a CreateOrder that names none: a
// UUID (version 8) from the SHA-256 of a fixed namespace and the request id.
// The same request id always names the same order, so a retry, however
// late, meets the order its first attempt created instead of creating
// another one. The id is valid as an order id and a subject token.
func derivedOrderID(requestID string) string {
	// uuid.NewHash(sha256.New(), orderIDSpace, []byte(requestID), 8),
	// computed without a hash object of its own (an allocation per
	// create): the same bytes, hashed in one call from the stack.
	var buf [16 + 128]byte
	sum := sha256.Sum256(append(append(buf[:0], orderIDSpace[:]...), requestID...))
	var id uuid.UUID
	copy(id[:], sum[:])
	id[6] = (id[6] & 0x0f) | 8<<4 // version 8
	id[8] = (id[8] & 0x3f) | 0x80 // RFC 4122 variant
	return id.String()
}
