// Package deadlines keeps the order deadlines in the log and enforces them:
// a placed order not paid within the payment timeout (a declined payment
// does not stop its clock) is cancelled with reason "payment_timeout" by
// the system actor, and a paid order not shipped within the shipping SLA
// is reported overdue.
//
// The timers are JetStream message schedules in a stream of their own,
// DEADLINES (eventstore/schedule; nats-server 2.12+). Following the ORDERS
// log through a durable subscription, the manager publishes, per order and kind,
// a schedule message on deadlines.schedule.<kind>.<order> with the header
// "Nats-Schedule: @at <due time>" and the target
// deadlines.fired.<kind>.<order>; the server keeps one schedule per subject
// (a newer one replaces it) and removes it when it fires. An order that
// moves on in time (paid, shipped, cancelled) has its schedule purged. The
// timer is therefore stored, replicated and fired by the server: it
// survives crashes and failover of any ordersd, and fires once.
//
// Firings are read through a durable subscription on deadlines.fired.> and
// deleted and acknowledged only once handled, so a crash between firing and
// handling means redelivery, and the firings the stream holds are those not
// handled yet: ListDeadlines lists them as fired (the command side may be
// down; the firing is retried until it is enforced). The stream should keep
// firings until they are deleted (schedule.WithFiredKept, as ordersd sets
// it): one that expired unhandled would be a deadline never enforced.
//
// The handler folds the order from the log and acts only when the order
// still calls for it: a payment timeout cancels an order
// still placed or payment_declined, with expected_revision set to the
// revision it just read (an outcome landing meanwhile makes the cancel
// fail with ABORTED and the firing is checked again) and a request id
// derived from the deadline, so a late or duplicate firing changes
// nothing. A charge that completes after the cancel is voided by the
// payments manager's compensation path.
//
// Shipping SLA: a firing for an order still paid writes an overdue marker
// on deadlines.overdue.<order> (listed by ListDeadlines, counted by the
// gauge orders.deadlines.shipments_overdue) which is purged when the order
// ships or is cancelled. The marker never outlives the order being paid:
// the handler reads the order again after writing it and purges it itself
// if the order moved on meanwhile (the follower's purge may have come
// first), and a redelivered firing for an order no longer paid purges it
// too. It is an alert about the business's own process, not a fact of the
// order's history that anyone folds: an event would stay in every history
// and every projection would have to learn it, while the operator's
// question, "what is late now?", is answered by the list and the gauge.
//
// Replicas: the log subscription is pinned to one manager at a time (a
// priority group), so schedules are written by one writer; any
// replica may handle firings.
package deadlines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/internal/backoff"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/command"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Defaults and names.
const (
	DefaultPaymentTimeout = 30 * time.Minute
	DefaultShippingSLA    = 72 * time.Hour
	// MaxTimeout is the longest payment timeout or shipping SLA
	// (WithTimeouts): ten years, long enough to mean "never", and far
	// from 2262, past which the server's timers wrap into the past and
	// would fire at once.
	MaxTimeout = 10 * 365 * 24 * time.Hour
	StreamName = "DEADLINES"
	// SubjectRoot is the root of the DEADLINES stream's subjects.
	SubjectRoot = "deadlines"
	// StreamDescription describes the DEADLINES stream to operators.
	StreamDescription = "order deadlines: message schedules, their firings and overdue shipments"
	LogConsumer       = "deadlines"
	// FiredConsumer delivers the payment timeouts' firings and
	// ShippingFiredConsumer the shipping SLAs': one consumer each, so that
	// payment timeouts the command side cannot take yet, retried and
	// holding the consumer's acknowledgements, never keep an overdue
	// shipment (which needs no command side) from being flagged. Builds
	// before had one consumer for both, LegacyFiredConsumer, which this
	// build leaves as it is to their nodes during a rolling upgrade (a
	// firing both enforce is enforced twice, which changes nothing).
	FiredConsumer         = "deadlines-fired-payment"
	ShippingFiredConsumer = "deadlines-fired-shipping"
	LegacyFiredConsumer   = "deadlines-fired"
	PriorityGroup         = "deadlines"
	// ReasonPaymentTimeout is the cancel reason of a payment timeout.
	ReasonPaymentTimeout = "payment_timeout"
	// Actor is who the deadlines act as.
	Actor = "system"
)

// Kinds of deadline, as they appear in subjects.
const (
	kindPayment  = "payment_timeout"
	kindShipping = "shipping_sla"
)

// firings are the consumers of the firings, one per kind: Run follows each,
// List purges what each acknowledged.
var firings = [...]struct{ consumer, kind string }{
	{FiredConsumer, kindPayment},
	{ShippingFiredConsumer, kindShipping},
}

const (
	subjSchedule = SubjectRoot + ".schedule."
	subjFired    = SubjectRoot + ".fired."
	subjOverdue  = SubjectRoot + ".overdue."
)

// Store is what the manager reads of the event store.
type Store interface {
	// LoadLatest, since a firing is judged without an append to catch a
	// stale read (an order that looks unplaced on a lagging replica would
	// keep its deadline).
	LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	// Subscribe follows the log through the durable subscription that
	// schedules deadlines.
	Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error
}

// Timers is the DEADLINES stream (a *schedule.Stream on StreamName and
// SubjectRoot): schedules, their firings and the overdue markers.
type Timers interface {
	Ensure(ctx context.Context) error
	Schedule(ctx context.Context, subject, target string, at time.Time, data []byte, id string) error
	Put(ctx context.Context, subject string, data []byte) error
	Purge(ctx context.Context, subjects ...string) error
	CountSubjects(ctx context.Context, filter string) (int, error)
	Each(ctx context.Context, fn func(subject string, data []byte), filters ...string) error
	Delete(ctx context.Context, seq uint64) error
	PurgeAcked(ctx context.Context, name, filter string) error
	Subscribe(ctx context.Context, name, filter string, handle func(schedule.Msg), opts ...eventstore.SubscribeOption) error
}

// Option configures a Manager. An option given a value it does not accept
// makes New fail with an error wrapping ErrInvalidOption; each option says
// which values those are.
type Option func(*Manager) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("deadlines: invalid option")

// WithTimeouts sets the payment timeout and the shipping SLA (defaults
// DefaultPaymentTimeout and DefaultShippingSLA). Invalid: either <= 0 or
// over MaxTimeout.
func WithTimeouts(payment, shipping time.Duration) Option {
	return func(m *Manager) error {
		if payment <= 0 || shipping <= 0 || payment > MaxTimeout || shipping > MaxTimeout {
			return fmt.Errorf("%w: WithTimeouts(%v, %v): both must be positive and at most %v", ErrInvalidOption, payment, shipping, MaxTimeout)
		}
		m.paymentTimeout, m.shippingSLA = payment, shipping
		return nil
	}
}

// DefaultHandleTimeout bounds the handling of one event or one firing
// (WithHandleTimeout): well under the subscriptions' 30 s AckWait, so
// that a handler waiting on a command side that never answers (a hung
// process, a connection a partition black-holed) fails and is retried
// rather than holding the subscription's only worker, and every deadline
// behind it, for good.
const DefaultHandleTimeout = 10 * time.Second

// WithHandleTimeout sets how long handling one event of the log or one
// firing may take before it fails and is retried (default
// DefaultHandleTimeout). Invalid: <= 0.
func WithHandleTimeout(d time.Duration) Option {
	return func(m *Manager) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithHandleTimeout(%v): must be positive", ErrInvalidOption, d)
		}
		m.handleTimeout = d
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()). Invalid: nil.
func WithLogger(l *slog.Logger) Option {
	return func(m *Manager) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger(nil)", ErrInvalidOption)
		}
		m.log = l
		return nil
	}
}

// WithMeter records metrics. Invalid: nil.
func WithMeter(mp metric.MeterProvider) Option {
	return func(m *Manager) error {
		if mp == nil {
			return fmt.Errorf("%w: WithMeter(nil)", ErrInvalidOption)
		}
		m.mp = mp
		return nil
	}
}

// Manager schedules and enforces deadlines.
type Manager struct {
	store          Store
	timers         Timers
	cmds           ordersv1.OrderCommandServiceClient
	paymentTimeout time.Duration
	shippingSLA    time.Duration
	handleTimeout  time.Duration
	log            *slog.Logger
	mp             metric.MeterProvider
	fired          metric.Int64Counter
	// consuming tells, for the log's consumer and the firings' (in Run's
	// order), whether it consumes now; lastErr is why it last stopped.
	consuming [1 + len(firings)]atomic.Bool
	lastErr   [1 + len(firings)]atomic.Pointer[error]
}

// Consuming reports whether the manager follows the log and both kinds of
// firings now: while one cannot (NATS unreachable, a consumer the server
// refuses), deadlines are not scheduled, or one kind is not enforced.
func (m *Manager) Consuming() bool {
	for i := range m.consuming {
		if !m.consuming[i].Load() {
			return false
		}
	}
	return true
}

// Err returns why a consumer that does not consume now last stopped; nil
// when none stopped that does not consume again (one not started yet
// included).
func (m *Manager) Err() error {
	for i := range m.consuming {
		if p := m.lastErr[i].Load(); p != nil && !m.consuming[i].Load() {
			return *p
		}
	}
	return nil
}

// New returns a manager, setting the DEADLINES stream (timers) up when
// JetStream answers in time (Run does it otherwise). store is the event
// store; cmds cancels orders, and its calls should carry the system
// actor's credentials (the manager sets x-actor for servers without
// authentication). It fails with an error wrapping ErrInvalidOption when
// an option is invalid, or when its metrics cannot be registered.
func New(ctx context.Context, store Store, timers Timers, cmds ordersv1.OrderCommandServiceClient, opts ...Option) (*Manager, error) {
	m := &Manager{store: store, timers: timers, cmds: cmds, paymentTimeout: DefaultPaymentTimeout, shippingSLA: DefaultShippingSLA,
		handleTimeout: DefaultHandleTimeout, log: slog.Default(), mp: noopmetric.NewMeterProvider()}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, err
		}
	}
	// A cluster electing its JetStream leader leaves the stream's
	// set-up unanswered for a while: Run sets it up (again) before each
	// attempt to consume, so start-up need not wait for it.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_ = m.timers.Ensure(sctx)
	cancel()
	if err := m.metrics(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) metrics() error {
	meter := m.mp.Meter("github.com/orderstream/orderstream/services/deadlines")
	var err error
	if m.fired, err = meter.Int64Counter("orders.deadlines.fired", metric.WithDescription("Deadlines that fired, by kind and what was done.")); err != nil {
		return err
	}
	overdue, err := meter.Int64ObservableGauge("orders.deadlines.shipments_overdue", metric.WithDescription("Paid orders past the shipping SLA and not shipped."))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		n, err := m.timers.CountSubjects(ctx, subjOverdue+">")
		if err != nil {
			return nil // unknown while NATS is unreachable
		}
		o.ObserveInt64(overdue, int64(n))
		return nil
	}, overdue)
	return err
}

// timer is the body of a schedule message, and so of its firing.
type timer struct {
	Kind     string    `json:"kind"`
	OrderID  string    `json:"order_id"`
	Due      time.Time `json:"due"`
	Position uint64    `json:"position"`
	Overdue  bool      `json:"overdue,omitempty"`
}

// Run follows the log and the firings until ctx ends, then returns nil.
// While a consumer cannot run (NATS unreachable, a cluster electing a
// leader) it retries with backoff.
func (m *Manager) Run(ctx context.Context) error {
	runs := []func(context.Context, func()) error{m.followLog}
	for _, f := range firings {
		runs = append(runs, func(ctx context.Context, ready func()) error { return m.followFired(ctx, f.consumer, f.kind, ready) })
	}
	done := make(chan struct{}, len(runs))
	for i, run := range runs {
		go func() {
			defer func() { done <- struct{}{} }()
			wait := time.Second
			for {
				// A consumer that got to consume starts the backoff
				// over: the wait grew only across failures in a row, or
				// after a few losses in the process's life every later
				// one left deadlines unenforced for 30 s.
				var consumed atomic.Bool
				err := run(ctx, func() {
					consumed.Store(true)
					m.consuming[i].Store(true)
				})
				m.consuming[i].Store(false)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					err = errors.New("deadlines: consumer ended")
				}
				m.lastErr[i].Store(&err)
				if consumed.Load() {
					wait = time.Second
				}
				m.log.Warn("deadlines: consumer stopped; retrying", "err", err, "retry_in", wait)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				wait = min(wait*2, 30*time.Second)
			}
		}()
	}
	for range runs {
		<-done
	}
	return nil
}

// followLog schedules and cancels deadlines as orders move.
func (m *Manager) followLog(ctx context.Context, ready func()) error {
	if err := m.timers.Ensure(ctx); err != nil {
		return err
	}
	return m.store.Subscribe(ctx, LogConsumer, func(d eventstore.Delivery) {
		act := m.onEvent(d.Event, d.NumDelivered != 1)
		if act == nil {
			// Most events (an order's creation, its items) call for no
			// deadline: settled without the handling's timer.
			_ = d.Ack()
			return
		}
		hctx, cancel := context.WithTimeout(ctx, m.handleTimeout)
		defer cancel()
		if err := act(hctx); err != nil {
			delay := retryWait(d.NumDelivered)
			if ctx.Err() == nil {
				m.log.Warn("deadlines: could not update a deadline; retrying", "in", delay, "err", err)
			}
			_ = d.NakWithDelay(delay)
			return
		}
		_ = d.Ack()
	}, eventstore.WithDescription("deadlines: schedules payment timeouts and shipping SLAs"),
		// A placement or a payment it cannot read is a deadline never
		// set: said.
		eventstore.WithSkipped(func(subject string, position uint64, err error) {
			m.log.Error("deadlines: a message on the log that is no event was skipped", "subject", subject, "position", position, "err", err)
		}),
		eventstore.WithAckWait(30*time.Second), eventstore.WithMaxPending(1000),
		eventstore.WithPinnedGroup(PriorityGroup, 10*time.Second), eventstore.WithReady(ready))
}

// onEvent returns what starts or ends the deadlines an order event calls
// for, or nil when it calls for none. Events are
// handled one at a time, in log order, but for a redelivered one: handed
// back (its handling failed, or its manager stopped and a standby took
// over), it comes after later events of its order, which already purged
// the deadline it would start. So a redelivered event starts a deadline
// only when the order, read now, still calls for it; one appended after
// that read is handled after the schedule, and purges it.
func (m *Manager) onEvent(rec eventstore.Recorded, redelivered bool) func(context.Context) error {
	switch rec.Type {
	case "OrderPlaced":
		return func(ctx context.Context) error {
			if ok, err := m.still(ctx, rec, redelivered, kindPayment); !ok || err != nil {
				return err
			}
			return m.schedule(ctx, timer{Kind: kindPayment, OrderID: rec.OrderID, Due: occurredAt(rec).Add(m.paymentTimeout), Position: rec.Position})
		}
	case "PaymentAuthorized":
		return func(ctx context.Context) error {
			if err := m.purge(ctx, subjSchedule+kindPayment+"."+rec.OrderID); err != nil {
				return err
			}
			if ok, err := m.still(ctx, rec, redelivered, kindShipping); !ok || err != nil {
				return err
			}
			return m.schedule(ctx, timer{Kind: kindShipping, OrderID: rec.OrderID, Due: occurredAt(rec).Add(m.shippingSLA), Position: rec.Position})
		}
	case "OrderShipped":
		return func(ctx context.Context) error {
			return m.purge(ctx, subjSchedule+kindShipping+"."+rec.OrderID, subjOverdue+rec.OrderID)
		}
	case "OrderCancelled":
		return func(ctx context.Context) error {
			return m.purge(ctx, subjSchedule+kindPayment+"."+rec.OrderID, subjSchedule+kindShipping+"."+rec.OrderID, subjOverdue+rec.OrderID)
		}
	}
	return nil
}

// still reports whether rec's order still calls for a deadline of kind
// (calledFor): always, for an event delivered the first time (see
// onEvent); read now for a redelivered one.
func (m *Manager) still(ctx context.Context, rec eventstore.Recorded, redelivered bool, kind string) (bool, error) {
	if !redelivered {
		return true, nil
	}
	st, _, err := m.latest(ctx, rec.OrderID)
	return calledFor(kind, st.Status), err
}

// calledFor reports whether an order in status calls for a deadline of
// kind: a payment timeout while it waits for a payment, a shipping SLA
// while it is paid and not shipped.
func calledFor(kind string, status order.Status) bool {
	switch kind {
	case kindPayment:
		return status == order.StatusPlaced || status == order.StatusPaymentDeclined
	case kindShipping:
		return status == order.StatusPaid
	}
	return false
}

// occurredAt is when rec's event happened, for its deadline: when the
// server stored it, by the clock of the kind that fires the timer. The
// metadata's occurred_at is the command node's clock: a node an hour behind
// set its orders' payment timeouts an hour early, fired at once, and one
// ahead (whose time the order's later events keep, never going back) set
// them late. occurred_at serves only an event stored without a time.
func occurredAt(rec eventstore.Recorded) time.Time {
	if !rec.Time.IsZero() {
		return rec.Time
	}
	return rec.Meta.OccurredAt
}

// schedule publishes the schedule message of s. Its message id makes a
// redelivered event publish it once; the server replaces an older schedule
// of the same order and kind.
func (m *Manager) schedule(ctx context.Context, s timer) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return m.timers.Schedule(ctx, subjSchedule+s.Kind+"."+s.OrderID, subjFired+s.Kind+"."+s.OrderID, s.Due, b,
		fmt.Sprintf("%s:%s:%d", s.Kind, s.OrderID, s.Position))
}

func (m *Manager) purge(ctx context.Context, subjects ...string) error {
	return m.timers.Purge(ctx, subjects...)
}

// followFired enforces the deadlines of kind that fired, through the
// consumer name.
func (m *Manager) followFired(ctx context.Context, name, kind string, ready func()) error {
	return m.timers.Subscribe(ctx, name, subjFired+kind+".>", func(msg schedule.Msg) {
		var s timer
		err := json.Unmarshal(msg.Data, &s)
		if err == nil && s.OrderID == "" {
			err = errors.New("no order id")
		}
		if err != nil {
			// Not a timer this manager set (another build's, or written
			// by hand): nothing can enforce it, and delivering it again
			// changes nothing. Said, since it may be a deadline that will
			// not be enforced.
			m.log.Error("deadlines: a firing that is no deadline of this build was dropped", "subject", msg.Subject, "sequence", msg.Sequence, "err", err)
			m.fired.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "unknown"), attribute.String("outcome", "undecodable")))
			_ = msg.Term()
			return
		}
		hctx, cancel := context.WithTimeout(ctx, m.handleTimeout)
		defer cancel()
		outcome, err := m.enforce(hctx, s)
		if err == nil {
			// Counted as enforced, whatever becomes of the delete: a
			// firing delivered again finds its work done ("ignored"),
			// and a cancel would never be counted.
			m.fired.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", s.Kind), attribute.String("outcome", outcome)))
		}
		if err == nil && msg.Sequence != 0 {
			// What is left on the firings' subjects is what still waits
			// (List). A firing redelivered after this is enforced again,
			// which changes nothing, and deleted again. The delete has a
			// timeout of its own: the enforcing may have used up hctx's.
			dctx, dcancel := context.WithTimeout(ctx, m.handleTimeout)
			err = m.timers.Delete(dctx, msg.Sequence)
			dcancel()
		}
		if err != nil {
			delay := retryWait(msg.NumDelivered)
			if ctx.Err() == nil {
				m.log.Warn("deadlines: could not enforce a deadline; retrying", "kind", s.Kind, "order", s.OrderID, "in", delay, "err", err)
			}
			_ = msg.NakWithDelay(delay)
			return
		}
		_ = msg.Ack()
	}, eventstore.WithDescription("deadlines: enforces the "+kind+" deadlines that fired"),
		eventstore.WithAckWait(30*time.Second), eventstore.WithMaxPending(100), eventstore.WithReady(ready))
}

// retryPolicy spaces the tries of a firing that could not be enforced,
// and of an event whose deadline could not be updated:
// a second at first, as a command side that restarts is soon back, then
// longer, up to a minute: a cancel the command side keeps refusing (a
// token without the clerk role) was tried, and warned of, every second
// for each such order, for ever.
var retryPolicy = backoff.Policy{Base: time.Second, Cap: time.Minute, Jitter: backoff.Equal}

// retryWait is how long a firing or an event delivered n times (0: not
// known) waits before it is tried again. n is bounded so that its int
// cannot wrap to a negative count, which would wait a second.
func retryWait(n uint64) time.Duration {
	return retryPolicy.Delay(int(min(n, 64)))
}

// errRaced is a cancel that lost to another change of the order: the
// firing is checked again.
var errRaced = errors.New("the order changed while the deadline was enforced")

// enforce acts on a fired deadline if the order still calls for it and
// says what it did: "cancelled", "overdue" or "ignored".
func (m *Manager) enforce(ctx context.Context, s timer) (string, error) {
	st, revision, err := m.latest(ctx, s.OrderID)
	if err != nil {
		return "", err
	}
	switch s.Kind {
	case kindPayment:
		if !calledFor(s.Kind, st.Status) {
			return "ignored", nil
		}
		cctx := metadata.AppendToOutgoingContext(ctx, "x-actor", Actor, "x-causation-id", fmt.Sprint(s.Position))
		rev := revision
		_, err := m.cmds.CancelOrder(cctx, &ordersv1.CancelOrderRequest{
			RequestId: fmt.Sprintf("%s%s:%d", command.DeadlineRequestPrefix, s.Kind, s.Position), OrderId: s.OrderID,
			Reason: ReasonPaymentTimeout, ExpectedRevision: &rev,
		})
		switch status.Code(err) {
		case codes.OK:
			m.log.Info("deadlines: order cancelled: no payment in time", "order", s.OrderID, "due", s.Due)
			return "cancelled", nil
		case codes.FailedPrecondition:
			return "ignored", nil
		case codes.Aborted:
			return "", errRaced
		default:
			return "", fmt.Errorf("cancelling: %w", err)
		}
	case kindShipping:
		if !calledFor(s.Kind, st.Status) {
			// An earlier delivery of this firing may have written the
			// marker and failed before taking it back (markOverdue).
			if err := m.purge(ctx, subjOverdue+s.OrderID); err != nil {
				return "", err
			}
			return "ignored", nil
		}
		return m.markOverdue(ctx, s)
	}
	return "ignored", nil
}

// markOverdue writes the overdue marker of an order just read paid, and
// takes it back if the order was shipped or cancelled meanwhile: the
// follower's purge for that event may have run before the Put, leaving
// nothing to purge. So the order is read again after the Put. An event
// this second read misses is appended after the Put, so the follower's
// purge for it comes after the Put and removes the marker. A paid order
// never returns to paid once it moves on, so a marker that survives both
// reads belongs to an order still paid.
func (m *Manager) markOverdue(ctx context.Context, s timer) (string, error) {
	s.Overdue = true
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	if err := m.timers.Put(ctx, subjOverdue+s.OrderID, b); err != nil {
		return "", err
	}
	// An error from here on leaves the marker until the redelivered
	// firing reads the order again (enforce purges it for an order no
	// longer paid).
	st, _, err := m.latest(ctx, s.OrderID)
	if err != nil {
		return "", err
	}
	if st.Status != order.StatusPaid {
		if err := m.purge(ctx, subjOverdue+s.OrderID); err != nil {
			return "", err
		}
		return "ignored", nil
	}
	m.log.Warn("deadlines: shipment overdue", "order", s.OrderID, "due", s.Due)
	return "overdue", nil
}

// latest is the order's state and revision with every acknowledged event,
// as fold makes them.
func (m *Manager) latest(ctx context.Context, orderID string) (order.State, uint64, error) {
	recs, err := m.store.LoadLatest(ctx, orderID)
	if err != nil {
		return order.State{}, 0, err
	}
	return fold(recs)
}

// fold is the order's state and stream revision (the number of its events,
// which CancelOrder's expected_revision compares with) from its history.
func fold(recs []eventstore.Recorded) (order.State, uint64, error) {
	var st order.State
	var revision uint64
	for _, r := range recs {
		e, err := convert.Foldable(convert.DecodeEvent(r.Type, r.Data))
		if err != nil {
			return order.State{}, 0, fmt.Errorf("order %s at %d: %w", r.OrderID, r.Position, err)
		}
		st = order.Evolve(st, e, r.Meta.OccurredAt)
		revision = uint64(st.Version)
	}
	return st, revision, nil
}

// Deadline is one pending deadline, one that fired and waits to be
// enforced, or an overdue shipment.
type Deadline struct {
	OrderID string
	Kind    string // "payment_timeout" or "shipping_sla"
	Due     time.Time
	Overdue bool
	// Fired: the timer fired and the deadline is not enforced yet (the
	// command side could not be reached, say); its firing is retried.
	Fired    bool
	Position uint64
}

// List returns the pending deadlines, those that fired and are not
// enforced yet, and overdue shipments (those of orderID, or all when it is
// empty), soonest due first, at most limit of them; truncated reports that
// more matched. A timer that fires while the stream is read is listed once,
// as fired.
func (m *Manager) List(ctx context.Context, orderID string, limit int) (out []Deadline, truncated bool, err error) {
	// A firing that a manager of an older build handled (during a rolling
	// upgrade, say) is acknowledged but not deleted: it would be listed as
	// still owed.
	for _, f := range firings {
		if err := m.timers.PurgeAcked(ctx, f.consumer, subjFired+f.kind+".>"); err != nil {
			return nil, false, err
		}
	}
	filters := []string{subjSchedule + ">", subjFired + ">", subjOverdue + ">"}
	if orderID != "" {
		filters = []string{subjSchedule + "*." + orderID, subjFired + "*." + orderID, subjOverdue + orderID}
	}
	// Only the soonest limit are kept as the stream is read (sorted and
	// cut whenever twice as many have gathered): it may hold a timer for
	// every open order, and a page asks for a few of them.
	keep := max(limit, 0)
	matched := 0
	err = m.timers.Each(ctx, func(subject string, b []byte) {
		var s timer
		if json.Unmarshal(b, &s) != nil || s.OrderID == "" {
			return
		}
		matched++
		out = append(out, Deadline{OrderID: s.OrderID, Kind: s.Kind, Due: s.Due, Overdue: s.Overdue,
			Fired: strings.HasPrefix(subject, subjFired), Position: s.Position})
		if len(out) >= 2*keep+64 {
			out, matched = soonestOnce(out, matched)
			out = slices.Delete(out, keep, len(out))
		}
	}, filters...)
	if err != nil {
		return nil, false, err
	}
	out, matched = soonestOnce(out, matched)
	if len(out) > keep {
		out = out[:keep]
	}
	return out, matched > len(out), nil
}

// soonestOnce sorts ds soonest first and drops each timer met twice: a
// timer that fires while the stream is read is met as pending and again,
// further on, as fired, and is listed once, fired. The fired copy is the
// same timer (order, kind and due time alike); the shipping SLA's overdue
// record has a subject of its own and no fired copy. matched, less what
// was dropped, is returned with them.
func soonestOnce(ds []Deadline, matched int) ([]Deadline, int) {
	slices.SortFunc(ds, func(a, b Deadline) int {
		if c := a.Due.Compare(b.Due); c != 0 {
			return c
		}
		if c := strings.Compare(a.OrderID, b.OrderID); c != 0 {
			return c
		}
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		if a.Overdue != b.Overdue {
			return boolOrder(a.Overdue)
		}
		if a.Fired != b.Fired {
			return -boolOrder(a.Fired) // the fired copy first, kept
		}
		return 0
	})
	n := len(ds)
	ds = slices.CompactFunc(ds, func(a, b Deadline) bool {
		return a.Due.Equal(b.Due) && a.OrderID == b.OrderID && a.Kind == b.Kind && a.Overdue == b.Overdue
	})
	return ds, matched - (n - len(ds))
}

// boolOrder orders false before true: -1 for false, 1 for true.
func boolOrder(b bool) int {
	if b {
		return 1
	}
	return -1
}
