// Package payments is the payments process manager: it follows the ORDERS
// log and pays each placed order exactly once, refunds each cancelled paid
// order, and records the outcomes through the command side.
//
// Exactly once, through crashes: the log is read through a durable
// subscription of the event store whose acknowledgement comes only after
// the outcome is recorded (or the job parked), so a crash means
// redelivery, never loss. Redelivery
// is harmless because every gateway call carries an idempotency key derived
// from the order and the triggering event ("charge:<order>:<position>",
// "refund:<order>"), and every recording a request id derived from the
// triggering event ("pay:<position>", "refund:<position>"), which the
// command side deduplicates. A provider forgets keys after a while
// (KeyLifetime): before a delivered job first sends its key, it writes
// when into the bucket, so that a delivery of it again after the key may
// be forgotten parks the job instead of charging or refunding twice.
//
// Transient gateway errors are retried with exponential backoff and full
// jitter, a timeout per attempt, and a bounded number of attempts; then the
// job is parked in the bucket PAYMENTS_PARKED (eventstore/bucket), listed and
// retried on demand through PaymentAdminService. While the circuit breaker
// is open, attempts are refused without calling the provider but still
// count, so a provider down longer than the retry budget gets its jobs
// parked within that budget. An unavailable event store or command side is
// not a failure of the payment: the job waits for it with the same backoff
// without spending attempts, up to an outage limit after which the manager
// alerts and hands the message back (see Manager.run). A permanent decline is
// recorded at once. An outcome the command side will not record (any error
// but a cancelled order) is retried the same way and parked, never
// acknowledged as done: the money may have moved.
//
// A charge job whose order was cancelled before the charge was recorded is
// dropped, unless an earlier attempt, delivery or retry may have taken
// money (a charge that succeeded but could not be recorded, a transient
// error after the request was sent, a redelivery or a retry of the parked
// job, as either may follow a crash after the charge): then the charge
// made under its key is voided through the gateway, with the same retries
// and parking. Cancelling an order whose payment was recorded is the
// refund job's business instead.
//
// Replicas: the subscription is pinned to one manager at a time (a
// priority group); the others stand by and take over when it
// stops pulling. A manager that starts takes the group over at once, so one
// started after a crash does not wait out the dead one's pin, and the dead
// one's messages come back after the short AckWait.
//
// Back-pressure: at most Workers jobs run and the consumer holds at most
// Workers unacknowledged deliveries, so every delivered message is being
// worked on (and kept alive with progress acknowledgements) rather than
// waiting in a buffer until its AckWait runs out: a slow gateway slows
// intake instead of growing memory or causing redeliveries.
package payments

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/eventstore/otelstore"
	"github.com/orderstream/orderstream/internal/backoff"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/command"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Defaults. Eight attempts, each wait at least half its bound (100 ms
// doubling to 5 s), ride out a provider away for about 6 s before a job is
// parked: with five and waits from nothing up to the bound, a provider
// away for one second parked every job that met it, for an operator to
// retry before the payment timeout cancelled its order.
const (
	DefaultWorkers        = 10
	DefaultMaxAttempts    = 8
	DefaultAttemptTimeout = 5 * time.Second
	DefaultBackoffBase    = 100 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
	ConsumerName          = "payments"
	PriorityGroup         = "payments"
	DefaultPinnedTTL      = 5 * time.Second
	DefaultAckWait        = 2 * time.Second
	// MaxAckWait is the longest AckWait (WithAckWait): the messages of a
	// manager that died then come back within the hour.
	MaxAckWait         = time.Hour
	DefaultOutageLimit = 15 * time.Minute
	ParkedBucket       = "PAYMENTS_PARKED"
	// ParkedDescription describes the parked-jobs bucket to operators.
	ParkedDescription = "payment jobs parked after their retries"
)

// Store is what the manager reads of the event store.
type Store interface {
	// LoadLatestAfter is LoadLatest from a position (0: the whole
	// history). Latest, since the manager decides without an append to
	// catch a stale read: a lagging replica's copy may not yet hold the
	// event that triggered the job. A job whose order's state was folded
	// from the deliveries reads only what followed them (see states).
	LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error)
	// Subscribe follows the log through the durable subscription the
	// manager's jobs are acknowledged on.
	Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error
	// SubjectPrefix and Subject name the log's subjects in the job's span.
	SubjectPrefix() string
	Subject(orderID string) string
}

// Parked is the bucket the manager parks jobs in (a *bucket.Bucket).
type Parked interface {
	// Create stores a new key; bucket.ErrExists when it holds a value.
	Create(ctx context.Context, key string, value []byte) error
	Put(ctx context.Context, key string, value []byte) error
	// Get returns bucket.ErrNotFound for a key without a value.
	Get(ctx context.Context, key string) ([]byte, error)
	// Read is Get with the value's revision, for Update and DeleteAt.
	Read(ctx context.Context, key string) ([]byte, uint64, error)
	// Update and DeleteAt write or remove a key's value if it is still
	// at revision: bucket.ErrChanged when another caller wrote or
	// removed it since.
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	DeleteAt(ctx context.Context, key string, revision uint64) error
	Delete(ctx context.Context, key string) error
	// Remove is Delete leaving no marker behind (a request to the
	// stream's API), for the keys written once per job (the records of
	// when keys went out).
	Remove(ctx context.Context, key string) error
	Keys(ctx context.Context) ([]string, error)
}

// Option configures a Manager. An option given a value it does not accept
// makes New return an error wrapping ErrInvalidOption rather than being
// ignored, so a misconfiguration is found at start-up.
type Option func(*Manager) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("payments: invalid option")

// ErrNotParked reports a Settle of a job that is not parked.
var ErrNotParked = errors.New("payments: no such parked job")

// ErrJobBusy reports a Settle of a job that a retry or another settle is
// running: settling it then could let the retry move money after the
// operator settled it by hand.
var ErrJobBusy = errors.New("payments: the parked job is being retried or settled")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}

// WithWorkers sets the worker pool size (default DefaultWorkers). Invalid:
// n < 1.
func WithWorkers(n int) Option {
	return func(m *Manager) error {
		if n < 1 {
			return invalid("WithWorkers(%d): want at least 1", n)
		}
		m.workers = n
		return nil
	}
}

// WithRetry sets the attempt budget, per-attempt timeout and backoff bounds.
// Invalid: maxAttempts < 1, a timeout or base that is not positive, or max
// below base.
func WithRetry(maxAttempts int, attemptTimeout, base, max time.Duration) Option {
	return func(m *Manager) error {
		if maxAttempts < 1 || attemptTimeout <= 0 || base <= 0 || max < base {
			return invalid("WithRetry(%d, %v, %v, %v)", maxAttempts, attemptTimeout, base, max)
		}
		m.maxAttempts, m.attemptTimeout, m.backoffBase, m.backoffMax = maxAttempts, attemptTimeout, base, max
		return nil
	}
}

// WithAckWait sets the subscription's AckWait (default DefaultAckWait): how
// soon the messages a crashed manager held are delivered again. Running
// jobs tell the server four times per AckWait that they are in progress,
// so it need not cover a job's duration. Invalid: d under a millisecond
// or over MaxAckWait (a retry's lease lasts 15 AckWaits, and a longer one
// overflowed it: the lease ran out as it was taken, and its renewal's
// ticker panicked).
func WithAckWait(d time.Duration) Option {
	return func(m *Manager) error {
		if d < time.Millisecond || d > MaxAckWait {
			return invalid("WithAckWait(%v): want 1ms to %v", d, MaxAckWait)
		}
		m.ackWait = d
		return nil
	}
}

// WithOutageLimit sets how long a job waits for the event store or the
// command side to come back before the manager alerts (default
// DefaultOutageLimit); see Manager.run. Invalid: d <= 0.
func WithOutageLimit(d time.Duration) Option {
	return func(m *Manager) error {
		if d <= 0 {
			return invalid("WithOutageLimit(%v): want a positive duration", d)
		}
		m.outageLimit = d
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()). Invalid: nil.
func WithLogger(l *slog.Logger) Option {
	return func(m *Manager) error {
		if l == nil {
			return invalid("WithLogger(nil)")
		}
		m.log = l
		return nil
	}
}

// WithPinnedTTL sets how long the server keeps the subscription pinned to a
// manager that stopped pulling before another replica takes over (default
// DefaultPinnedTTL). Invalid: d <= 0.
func WithPinnedTTL(d time.Duration) Option {
	return func(m *Manager) error {
		if d <= 0 {
			return invalid("WithPinnedTTL(%v): want a positive duration", d)
		}
		m.pinnedTTL = d
		return nil
	}
}

// WithCircuit sets how many consecutive transient gateway failures open the
// circuit, and for how long it then holds calls back. Invalid: threshold < 1
// or cooldown <= 0.
func WithCircuit(threshold int, cooldown time.Duration) Option {
	return func(m *Manager) error {
		if threshold < 1 || cooldown <= 0 {
			return invalid("WithCircuit(%d, %v)", threshold, cooldown)
		}
		m.breaker.threshold, m.breaker.cooldown = threshold, cooldown
		return nil
	}
}

// WithStates sets how many orders' states, folded from the events the
// manager was delivered, it keeps so that a job need not read the order's
// whole history (default DefaultStates; 0 reads it for every job). Each
// takes about 0.7 KB for an order of one line with a shipping address, so
// about 3 MiB at the default. Invalid: n < 0.
func WithStates(n int) Option {
	return func(m *Manager) error {
		if n < 0 {
			return invalid("WithStates(%d): want 0 or more", n)
		}
		m.states = newStates(n)
		return nil
	}
}

// WithTelemetry traces payment attempts and records metrics. Invalid: a nil
// provider.
func WithTelemetry(tp trace.TracerProvider, mp metric.MeterProvider) Option {
	return func(m *Manager) error {
		if tp == nil || mp == nil {
			return invalid("WithTelemetry: nil provider")
		}
		m.tp, m.mp = tp, mp
		return nil
	}
}

// Manager is the payments process manager.
type Manager struct {
	store          Store
	cmds           ordersv1.OrderCommandServiceClient
	gw             Provider
	keyLifetime    time.Duration // the provider's KeyLifetime, 0 if none
	kv             Parked
	workers        int
	maxAttempts    int
	attemptTimeout time.Duration
	backoffBase    time.Duration
	backoffMax     time.Duration
	pinnedTTL      time.Duration
	ackWait        time.Duration
	outageLimit    time.Duration
	log            *slog.Logger
	tp             trace.TracerProvider
	mp             metric.MeterProvider
	tracer         trace.Tracer

	breaker breaker
	// states holds the orders folded from the deliveries.
	states *states

	busy      atomic.Int64
	consuming atomic.Bool
	consumed  atomic.Bool // consume got as far as consuming since Run last looked
	lastErr   atomic.Pointer[error]
	attempts  metric.Int64Counter
	outcomes  metric.Int64Counter
	parked    metric.Int64Counter
	outages   metric.Int64Counter
	// waiting is how many jobs are waiting for the store or the command
	// side to come back.
	waiting atomic.Int64
	// parkedNow is how many jobs the bucket holds, as this manager
	// sees it: counted at start, then kept on park, retry and settle.
	parkedNow atomic.Int64

	stats struct {
		sync.Mutex
		Stats
	}
}

// Stats counts what the manager did since it started.
type Stats struct {
	Charged, Declined, Refunded, Voided, Parked, Dropped, Attempts int
}

// New prepares a manager and counts the jobs parked: store is the event
// store (the subscription is set up by Run), parked the bucket of parked
// jobs (ParkedBucket), cmds records outcomes and gw is the provider. It
// returns the bucket's error when the jobs cannot be counted.
func New(ctx context.Context, store Store, parked Parked, cmds ordersv1.OrderCommandServiceClient, gw Provider, opts ...Option) (*Manager, error) {
	m := &Manager{
		store: store, kv: parked, cmds: cmds, gw: gw, workers: DefaultWorkers, maxAttempts: DefaultMaxAttempts,
		attemptTimeout: DefaultAttemptTimeout, backoffBase: DefaultBackoffBase, backoffMax: DefaultBackoffMax, pinnedTTL: DefaultPinnedTTL,
		ackWait: DefaultAckWait, outageLimit: DefaultOutageLimit, states: newStates(DefaultStates),
		log: slog.Default(), tp: nooptrace.NewTracerProvider(), mp: noopmetric.NewMeterProvider(),
	}
	m.breaker.threshold, m.breaker.cooldown = DefaultCircuitThreshold, DefaultCircuitCooldown
	if kl, ok := gw.(KeyLifetime); ok {
		m.keyLifetime = kl.KeyLifetime()
	}
	for _, o := range opts {
		if err := o(m); err != nil {
			return nil, err
		}
	}
	m.tracer = m.tp.Tracer("github.com/orderstream/orderstream/services/payments")
	keys, err := m.jobKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("payments: parked bucket: %w", err)
	}
	m.parkedNow.Store(int64(len(keys)))
	if err := m.metrics(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) metrics() error {
	meter := m.mp.Meter("github.com/orderstream/orderstream/services/payments")
	var err, e error
	m.attempts, e = meter.Int64Counter("orders.payments.attempts", metric.WithDescription("Gateway calls, by kind and result."))
	err = errors.Join(err, e)
	m.outcomes, e = meter.Int64Counter("orders.payments.outcomes", metric.WithDescription("Recorded outcomes: authorized, declined, refunded, dropped."))
	err = errors.Join(err, e)
	m.parked, e = meter.Int64Counter("orders.payments.parked", metric.WithDescription("Jobs parked after using up their retries (parkings, including a retried job parked again)."))
	err = errors.Join(err, e)
	m.outages, e = meter.Int64Counter("orders.payments.outage_alerts", metric.WithDescription("Jobs that waited longer than the outage limit for the event store or the command side, and were handed back to be delivered again."))
	err = errors.Join(err, e)
	waiting, e := meter.Int64ObservableGauge("orders.payments.jobs_waiting", metric.WithDescription("Jobs waiting for the event store or the command side to come back, without spending attempts."))
	err = errors.Join(err, e)
	parkedNow, e := meter.Int64ObservableGauge("orders.payments.parked_jobs", metric.WithDescription("Jobs parked now, waiting for a retry on demand."))
	err = errors.Join(err, e)
	busy, e := meter.Int64ObservableGauge("orders.payments.workers_busy", metric.WithDescription("Workers running a job."))
	err = errors.Join(err, e)
	size, e := meter.Int64ObservableGauge("orders.payments.workers", metric.WithDescription("Worker pool size."))
	err = errors.Join(err, e)
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(busy, m.busy.Load())
		o.ObserveInt64(size, int64(m.workers))
		o.ObserveInt64(parkedNow, m.parkedNow.Load())
		o.ObserveInt64(waiting, m.waiting.Load())
		return nil
	}, busy, size, parkedNow, waiting)
	return err
}

// CircuitOpen reports whether the gateway circuit is open: the provider
// failed so many times in a row that calls are held back for a while.
func (m *Manager) CircuitOpen() bool { return m.breaker.isOpen() }

// ParkedNow returns how many jobs are parked: those in the bucket when the
// manager started, plus those it parked since, less those it retried to
// completion or settled. Jobs parked, retried or settled by another
// replica meanwhile are not seen until a restart.
func (m *Manager) ParkedNow() int64 { return m.parkedNow.Load() }

// Stats returns counts since start.
func (m *Manager) Stats() Stats {
	m.stats.Lock()
	defer m.stats.Unlock()
	return m.stats.Stats
}

func (m *Manager) count(f func(*Stats)) {
	m.stats.Lock()
	f(&m.stats.Stats)
	m.stats.Unlock()
}

// jobKind is what a job does.
type jobKind string

const (
	kindCharge jobKind = "charge"
	kindRefund jobKind = "refund"
)

// job is one unit of work, triggered by the event at Position.
type job struct {
	Kind     jobKind `json:"kind"`
	OrderID  string  `json:"order_id"`
	Position uint64  `json:"position"`
	Attempts int     `json:"attempts,omitempty"`
	// MaybeCharged says an earlier attempt, delivery or retry may have
	// taken money under the charge key, so a cancelled order needs a void.
	// A retry never clears it (see Manager.Retry).
	MaybeCharged bool `json:"maybe_charged,omitempty"`
	// PaymentRef is the provider's reference of the charge an attempt
	// took, once one has: an order paid under another reference was paid
	// some other way meanwhile, and this charge is voided.
	PaymentRef string `json:"payment_ref,omitempty"`
	// RefundRef is the provider's reference of the refund an attempt
	// made, once one has: an order refunded under another reference was
	// refunded some other way meanwhile, and the customer twice.
	RefundRef string `json:"refund_ref,omitempty"`
	// MaybeRefunded says an earlier attempt, delivery or retry may have
	// refunded under the refund key without the job learning the
	// reference: an order then refunded under another request id was
	// refunded some other way too, perhaps twice, and an operator must
	// settle it.
	MaybeRefunded bool      `json:"maybe_refunded,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	ParkedAt      time.Time `json:"parked_at,omitzero"`
	// RetryingUntil is the end of the lease of a retry running the job,
	// in whichever process (see Manager.Retry): until then another
	// retry leaves the job alone and a settle is refused.
	RetryingUntil time.Time `json:"retrying_until,omitzero"`
	// KeyUsedAt is when an attempt first sent the job's key to the
	// provider (zero: none did, or an earlier build's job), for a
	// provider that forgets keys (KeyLifetime).
	KeyUsedAt time.Time `json:"key_used_at,omitzero"`

	// sent is, for a delivered job of a provider that forgets keys, the
	// bucket key of the record of when its key first went out (see
	// sendingKey), which outlives the delivery: "" for a retry, whose
	// lease keeps that time in the parked job instead. sentKnown says
	// KeyUsedAt holds what the record held (a first delivery: nothing),
	// and sentMaybe that the record may exist, to be removed once the
	// job is done or parked.
	sent                 string
	sentKnown, sentMaybe bool
	// leased says a retry holding the job's lease runs it (retryOne):
	// parked again, it replaces the entry its lease is on.
	leased bool
}

// result of running a job.
type result int

const (
	done    result = iota // outcome recorded, or nothing to do
	parked                // retries used up; stored in the bucket
	abandon               // stopped (shutdown); the message is redelivered
)

// String names a result in the job's span.
func (r result) String() string {
	switch r {
	case done:
		return "done"
	case parked:
		return "parked"
	default:
		return "abandoned"
	}
}

// Run consumes the log until ctx ends, then returns nil. When the consumer
// cannot be created or fails (JetStream not ready yet, a cluster electing
// a leader, an incompatible consumer left by an operator), Run keeps
// trying with backoff; Consuming reports false meanwhile and Err says why,
// so a readiness check can show it.
func (m *Manager) Run(ctx context.Context) error {
	const firstWait, maxWait = 250 * time.Millisecond, 5 * time.Second
	wait := firstWait
	for {
		err := m.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if m.consumed.Swap(false) {
			wait = firstWait // it ran: a new failure, not a longer outage
		}
		m.lastErr.Store(&err)
		m.log.Warn("payments: not consuming the log; retrying", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, maxWait)
	}
}

// Consuming reports whether the manager is following the log now.
func (m *Manager) Consuming() bool { return m.consuming.Load() }

// Err returns why the manager last failed to follow the log, or nil.
func (m *Manager) Err() error {
	if p := m.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// consume runs the subscription until ctx ends or it cannot run.
func (m *Manager) consume(ctx context.Context) error {
	err := m.store.Subscribe(ctx, ConsumerName, func(d eventstore.Delivery) { m.handle(ctx, d) },
		eventstore.WithDescription("payments process manager"),
		// A placement it cannot read is an order it never charges: said.
		eventstore.WithSkipped(func(subject string, position uint64, err error) {
			m.log.Error("payments: a message on the log that is no event was skipped", "subject", subject, "position", position, "err", err)
		}),
		// Short, so a crashed manager's messages come back within
		// seconds; running jobs keep theirs with progress signals.
		eventstore.WithAckWait(m.ackWait),
		// No more messages outstanding than workers: a delivered message
		// is always being worked on, never waiting out its AckWait in a
		// buffer (which would deliver it a second time).
		eventstore.WithMaxPending(m.workers), eventstore.WithWorkers(m.workers),
		// One active worker group at a time across replicas, taken over
		// at once by a manager that starts (after a crash the dead one's
		// pin would hold it for PinnedTTL with nobody pulling) and handed
		// over by one that stops; a live manager that loses the pin this
		// way finishes the jobs it holds and stands by.
		eventstore.WithPinnedGroup(PriorityGroup, m.pinnedTTL), eventstore.WithTakeOver(),
		// A pull every 2 s at most keeps the pin alive well within
		// PinnedTTL, which can then be short.
		eventstore.WithPullExpiry(2*time.Second),
		eventstore.WithReady(func() {
			m.consuming.Store(true)
			m.consumed.Store(true)
			m.lastErr.Store(nil)
		}))
	m.consuming.Store(false)
	if err != nil {
		return fmt.Errorf("payments: %w", err)
	}
	return nil
}

// handle runs the job an event calls for and acknowledges the event once
// the job is done or parked. While the job runs it tells the server every
// AckWait/4 that the delivery is in progress, so a long backoff, a slow
// provider or a wait for the store never makes the server deliver it again.
func (m *Manager) handle(ctx context.Context, msg eventstore.Delivery) {
	rec := msg.Event
	m.states.observe(rec)
	var j job
	switch rec.Type {
	case "OrderPlaced":
		j = job{Kind: kindCharge, OrderID: rec.OrderID, Position: rec.Position}
	case "OrderCancelled":
		j = job{Kind: kindRefund, OrderID: rec.OrderID, Position: rec.Position}
	default:
		_ = msg.Ack()
		return
	}
	if msg.NumDelivered != 1 {
		// An earlier delivery (or one not known not to be the first)
		// may have charged or refunded before its manager stopped.
		// When its key went out is not known, and is not assumed: a job
		// handed back before its key went out (at the outage limit, at
		// shutdown) would otherwise be parked to be settled by hand once
		// the key's lifetime has passed since its event, though no key
		// ever went out. One that sent its key and is delivered again
		// past that lifetime (an outage longer than it) is sent again
		// under it.
		j.MaybeCharged, j.MaybeRefunded = j.Kind == kindCharge, j.Kind == kindRefund
	}
	if m.keyLifetime > 0 {
		j.sent, j.sentKnown = sentKey(j), msg.NumDelivered == 1
	}
	m.busy.Add(1)
	defer m.busy.Add(-1)
	// The job is one consumer "process" span, a child of the append that
	// wrote the event (and linked to it, as the messaging conventions
	// ask), enclosing every attempt, its backoff and the recording of the
	// outcome.
	pctx := otelstore.ContextFrom(ctx, rec.Meta)
	var links []trace.Link
	if l, ok := otelstore.LinkFrom(rec.Meta); ok {
		links = append(links, l)
	}
	ctx, span := m.tracer.Start(pctx, "payment.job", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(otelstore.MessagingSystem, semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationTemplate(otelstore.SubjectTemplate(m.store.SubjectPrefix())),
			semconv.MessagingDestinationName(m.store.Subject(rec.OrderID)), semconv.MessagingConsumerGroupName(ConsumerName),
			attribute.String("payment.kind", string(j.Kind)), attribute.String("order.id", j.OrderID), attribute.Int64("log.position", int64(j.Position))))
	defer span.End()
	stop := make(chan struct{})
	var beat sync.WaitGroup
	beat.Go(func() {
		t := time.NewTicker(m.ackWait / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	var r result
	if msg.NumDelivered != 1 && m.parkedAgain(ctx, &j) {
		// Parked by an earlier delivery whose ack was lost: the job is
		// the operator's now (Retry, Settle). Run again here, it moved
		// money beside a settle that had just been accepted, and a
		// retry holding the job dropped what it learned. The record of
		// when its key went out, which that delivery left for this one,
		// goes once this ack lands: the parked job holds that time.
		j.sentMaybe = m.keyLifetime > 0
		span.SetAttributes(attribute.Bool("payment.parked_already", true))
		r = parked
	} else {
		r = m.run(ctx, &j)
	}
	close(stop)
	beat.Wait()
	span.SetAttributes(attribute.String("payment.result", r.String()))
	switch r {
	case done, parked:
		// Acknowledged at shutdown too: the job is over, and an ack not
		// sent is a delivery again.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.attemptTimeout)
		err := msg.DoubleAck(actx)
		cancel()
		if err != nil {
			m.log.WarnContext(ctx, "payments: ack failed; the job may be delivered again, and is deduplicated", "order", j.OrderID, "err", err)
			// A delivery again must find when the job's key went out:
			// without it, one past the key's lifetime sends the key
			// again, and may charge or refund twice. (If the ack did
			// land, its answer lost, the record stays behind: a few
			// bytes nothing reads again.)
			break
		}
		m.forgetSent(ctx, j)
	case abandon:
		_ = msg.Nak()
	}
}

// parkedReadTries bounds the reads of the parked jobs that a delivery
// again makes while the bucket fails (a leader election, a timeout), with
// the jobs' backoff between them. Past them the job runs, as a delivery
// again did before it looked: handed back instead, a job the bucket alone
// failed would wait on it while the payment needed none, holding one of
// the few deliveries the consumer lets wait.
const parkedReadTries = 3

// parkedAgain reports whether j, delivered again, is parked already, and
// its entry holds what j's record of when its key went out says (see
// handle), trying the bucket's reads up to parkedReadTries times; false
// when it cannot say.
func (m *Manager) parkedAgain(ctx context.Context, j *job) bool {
	for n := 1; ; n++ {
		cur, parked, err := m.parkedAlready(ctx, *j)
		if err == nil && !parked {
			return false
		}
		if err == nil {
			var held bool
			if held, err = m.sentHeldBy(ctx, j, cur); err == nil {
				return held
			}
		}
		if n == parkedReadTries || !m.sleep(ctx, n) {
			if ctx.Err() == nil {
				m.log.WarnContext(ctx, "payments: could not read the parked jobs; the job delivered again runs", "order", j.OrderID, "err", err)
			}
			return false
		}
	}
}

// parkedAlready returns j's parked entry and whether it is j itself (its
// kind, order and event) that is parked; the bucket's error when it cannot
// say.
func (m *Manager) parkedAlready(ctx context.Context, j job) (job, bool, error) {
	gctx, cancel := context.WithTimeout(ctx, m.attemptTimeout)
	defer cancel()
	v, err := m.kv.Get(gctx, parkKey(j.Kind, j.OrderID))
	switch {
	case errors.Is(err, bucket.ErrNotFound):
		return job{}, false, nil
	case err != nil:
		return job{}, false, err
	}
	var cur job
	ok := json.Unmarshal(v, &cur) == nil && cur.Position == j.Position
	return cur, ok, nil
}

// sentHeldBy reports whether the parked entry cur holds what j's record
// of when its key went out says, so that j may be left parked and the
// record removed: a retry of the parked job knows that time from its entry
// alone. A record holding an earlier time than cur (or cur none: a
// delivery that ran after the park sent the key, then was handed back) is
// not held: the job then runs, as a delivery again did, and reads it.
// Without key lifetimes nothing is recorded. The error is the bucket's,
// when the record cannot be read.
func (m *Manager) sentHeldBy(ctx context.Context, j *job, cur job) (bool, error) {
	if m.keyLifetime <= 0 {
		return true, nil
	}
	probe := *j
	if err := m.knowSent(ctx, &probe); err != nil {
		return false, err
	}
	if probe.KeyUsedAt.IsZero() {
		return true, nil // no record
	}
	return !cur.KeyUsedAt.IsZero() && !cur.KeyUsedAt.After(probe.KeyUsedAt), nil
}

// keyMayBeForgotten returns, wrapping errSettleByHand, why j must not be
// sent to the provider again: an earlier attempt sent its key and may
// have moved money under it, and the provider may have forgotten the key
// since (see KeyLifetime), so that a charge or refund sent again could be
// made twice, and a void release nothing.
func (m *Manager) keyMayBeForgotten(j job) error {
	if m.keyLifetime <= 0 || j.KeyUsedAt.IsZero() || !(j.MaybeCharged || j.MaybeRefunded) {
		return nil
	}
	since := time.Since(j.KeyUsedAt)
	if since <= m.keyLifetime {
		return nil
	}
	return fmt.Errorf("%w: an attempt of this job sent its key to the provider %v ago and may have moved money under it (it failed without saying whether it did), and the provider forgets keys after %v: sent again, the %s could be made twice, or a void release nothing; check with the provider, then settle the job",
		errSettleByHand, since.Round(time.Second), m.keyLifetime, j.Kind)
}

// sendingKey records that an attempt sends j's key to the provider now,
// unless an earlier one did (see job.KeyUsedAt). For a delivered job of a
// provider that forgets keys it first writes that time into the bucket,
// where a delivery of the job again (after a crash, or handed back at the
// outage limit) reads it (knowSent): without it, a job delivered again
// after an outage longer than the key's lifetime sent its forgotten key
// again and could charge twice. A write that fails is an outage (errOutage),
// and the key is not sent.
func (m *Manager) sendingKey(ctx context.Context, j *job) error {
	if !j.KeyUsedAt.IsZero() {
		return nil
	}
	at := time.Now().UTC()
	if j.sent != "" {
		j.sentMaybe = true
		wctx, cancel := context.WithTimeout(ctx, m.attemptTimeout)
		err := m.kv.Put(wctx, j.sent, at.AppendFormat(nil, time.RFC3339Nano))
		cancel()
		if err != nil {
			return fmt.Errorf("recording when the job's key goes out: %w: %w", errOutage, err)
		}
	}
	j.KeyUsedAt = at
	return nil
}

// knowSent reads, for a job delivered again, when an earlier delivery
// first sent its key (see sendingKey) into j.KeyUsedAt. A read that fails
// is an outage (errOutage): the job cannot tell whether its key may be
// forgotten.
func (m *Manager) knowSent(ctx context.Context, j *job) error {
	if j.sent == "" || j.sentKnown {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, m.attemptTimeout)
	v, err := m.kv.Get(rctx, j.sent)
	cancel()
	switch {
	case errors.Is(err, bucket.ErrNotFound):
	case err != nil:
		return fmt.Errorf("reading when the job's key went out: %w: %w", errOutage, err)
	default:
		at, err := time.Parse(time.RFC3339Nano, string(v))
		if err != nil {
			// Unreadable: taken as sent long ago, which parks the job
			// rather than risk a second charge under a forgotten key.
			at = time.Unix(0, 0)
		}
		j.KeyUsedAt, j.sentMaybe = at.UTC(), true
	}
	j.sentKnown = true
	return nil
}

// forgetSent removes the record of when a job's key went out, once the
// job is done or parked (a parked job keeps that time itself) and its ack
// landed. One left behind, its removal failing, is a few bytes that
// nothing reads again (one left for a delivery again, its ack lost, that
// delivery removes).
func (m *Manager) forgetSent(ctx context.Context, j job) {
	if !j.sentMaybe {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.attemptTimeout)
	defer cancel()
	if err := m.kv.Remove(rctx, j.sent); err != nil {
		m.log.WarnContext(ctx, "payments: could not remove the record of when a job's key went out", "order", j.OrderID, "err", err)
	}
}

// sentPrefix begins the bucket keys of the records of when jobs' keys went
// out (sendingKey); the bucket's other keys are parked jobs.
const sentPrefix = "sent."

// sentKey is the bucket key of the record of when j's key first went out:
// one per triggering event, as the key is.
func sentKey(j job) string {
	return sentPrefix + parkKey(j.Kind, j.OrderID) + "." + strconv.FormatUint(j.Position, 10)
}

// errSettleByHand marks a job whose money no attempt can set right (a
// refund made while the order's refund was recorded some other way): it
// is parked at once, its error saying what to settle with the provider.
var errSettleByHand = errors.New("payments: to be settled by hand")

// errOutage marks a failure of the event store or of the command side
// (unreachable, electing a leader, too slow to answer), which is not a
// failure of the payment and spends no attempt.
var errOutage = errors.New("payments: event store or command side unavailable")

// recordingErr wraps the error of recording an outcome through the command
// side, marking it as an outage when the command side or its store did not
// answer, or asked to be tried again later: it shed the call (busy), or
// the order's log was contended beyond its own retries (ABORTED; the
// manager sends no expected revision, so that is never a stale one). None
// of these is a failure of the payment: spending attempts on them parked
// jobs whose money had moved, during a burst of a second or two.
func recordingErr(what string, err error) error {
	switch code := status.Code(err); {
	case code == codes.Unavailable, code == codes.DeadlineExceeded, code == codes.Aborted, rpcerr.IsBusy(err):
		return fmt.Errorf("%s: %w: %w", what, errOutage, err)
	case code == codes.FailedPrecondition:
		return fmt.Errorf("%s: %w: %w", what, errMovedOn, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// errMovedOn marks an outcome the command side refused because the order
// moved on while the job was at the provider (cancelled, or paid, declined
// or refunded some other way). That is no failure of the payment: the
// next attempt decides on the order as it now is, voiding the charge the
// order ended without, or parking a refund made twice with its reason.
// Counted as a failed attempt, the refusal met on the last one parked the
// job instead, the customer's money held on a cancelled order until an
// operator retried it. A job spends no attempt on it once (run): a second
// refusal, which the order read again should not allow, counts.
var errMovedOn = errors.New("payments: the order moved on meanwhile")

// run executes a job with its retry budget. The job records what its
// attempts learned (MaybeCharged), which parking keeps.
//
// Attempts count failures of the payment only: a provider error or refusal,
// an open circuit, an outcome the command side refuses (once refused
// because the order moved on, it spends none: errMovedOn). While the event
// store or the command side is unavailable (an election, a NATS restart)
// the job waits with the same backoff without spending attempts; when that
// lasts longer than the outage limit the manager alerts (error log and the
// orders.payments.outage_alerts counter) and hands the message back to be
// delivered again, so the job is neither parked nor lost.
func (m *Manager) run(ctx context.Context, j *job) result {
	var lastErr error
	var outageSince time.Time
	waits := 0
	movedOn := false // a refusal because the order moved on was met (errMovedOn)
	defer func() {
		if !outageSince.IsZero() {
			m.waiting.Add(-1)
		}
	}()
	for attempt := 1; ; {
		r, retry, err := m.attempt(ctx, j, attempt)
		if !retry {
			if errors.Is(err, errSettleByHand) {
				return m.giveUp(ctx, j, err)
			}
			if err != nil && r == done {
				m.log.ErrorContext(ctx, "payments: job failed permanently", "kind", j.Kind, "order", j.OrderID, "err", err)
			}
			return r
		}
		if ctx.Err() != nil {
			return abandon
		}
		if errors.Is(err, errOutage) {
			if outageSince.IsZero() {
				outageSince = time.Now()
				m.waiting.Add(1)
			}
			if waited := time.Since(outageSince); waited >= m.outageLimit {
				m.outages.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(j.Kind))))
				m.log.ErrorContext(ctx, "payments: job waited out the outage limit for the event store or command side; handed back for redelivery",
					"kind", j.Kind, "order", j.OrderID, "waited", waited.Round(time.Second), "err", err)
				return abandon
			}
			waits++
			if !m.sleep(ctx, waits) {
				return abandon
			}
			continue
		}
		if !outageSince.IsZero() {
			outageSince, waits = time.Time{}, 0
			m.waiting.Add(-1)
		}
		if errors.Is(err, errMovedOn) && !movedOn {
			movedOn = true
			continue // at once: the order moved on, and is read again
		}
		if errors.Is(err, ErrCircuitOpen) {
			// Held back without calling the provider. The attempt
			// still counts, on the job's own backoff (waiting, though,
			// for the circuit's next probe when that comes sooner than
			// the longest backoff): a provider down longer than the
			// retry budget parks the job within that budget, rather
			// than once the circuit lets every waiting job probe in
			// turn. The last real failure stays the reason, if there
			// was one.
			if lastErr == nil {
				lastErr = err
			}
		} else {
			lastErr = err
			m.log.WarnContext(ctx, "payments: attempt failed", "kind", j.Kind, "order", j.OrderID, "attempt", attempt, "err", err)
		}
		if attempt == m.maxAttempts {
			break
		}
		attempt++
		var least time.Duration
		if errors.Is(err, ErrCircuitOpen) {
			// A refused attempt waits for the circuit to let a probe
			// through, up to the job's longest backoff: with a cool-down
			// longer than the whole retry budget, a job that met a circuit
			// just opened was parked without the provider ever being
			// asked, even when it was back at once.
			least = min(m.breaker.wait(), m.backoffMax)
		}
		if !m.sleepAtLeast(ctx, attempt-1, least) {
			return abandon
		}
	}
	return m.giveUp(ctx, j, lastErr)
}

// giveUp parks a job that used up its attempts, or at once one whose money
// only a person can set right (errSettleByHand); lastErr is why the last
// attempt failed. Either way the parked job counts its attempts as all
// spent: none is left to it without an operator's retry.
func (m *Manager) giveUp(ctx context.Context, j *job, lastErr error) result {
	j.Attempts = m.maxAttempts
	if lastErr != nil {
		j.LastError = lastErr.Error()
	}
	j.ParkedAt = time.Now().UTC()
	added, err := m.park(ctx, *j)
	if err != nil {
		m.log.ErrorContext(ctx, "payments: could not park job; it is delivered again (or, retried by an operator, stays parked as it was)", "order", j.OrderID, "err", err)
		return abandon
	}
	if added {
		m.parkedNow.Add(1)
	}
	m.parked.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", string(j.Kind))))
	m.count(func(s *Stats) { s.Parked++ })
	m.log.ErrorContext(ctx, "payments: job parked after its retries", "kind", j.Kind, "order", j.OrderID, "err", lastErr)
	return parked
}

// sleep waits the backoff before retry n (1-based): equal jitter over an
// exponentially growing ceiling (between half of it and all of it), so that
// the attempts span a known time however the draws fall. It reports false
// when ctx ended.
func (m *Manager) sleep(ctx context.Context, n int) bool { return m.sleepAtLeast(ctx, n, 0) }

// sleepAtLeast is sleep for no less than least.
func (m *Manager) sleepAtLeast(ctx context.Context, n int, least time.Duration) bool {
	p := backoff.Policy{Base: m.backoffBase, Cap: m.backoffMax, Jitter: backoff.Equal}
	return backoff.Sleep(ctx, max(p.Delay(n), least)) == nil
}

// attempt runs one attempt of a job on the order's current state.
func (m *Manager) attempt(ctx context.Context, j *job, n int) (result, bool, error) {
	if err := m.knowSent(ctx, j); err != nil {
		return done, true, err
	}
	v, err := m.state(ctx, j.OrderID)
	if err != nil {
		return done, true, err
	}
	if j.Kind == kindRefund {
		return m.refund(ctx, j, v, n)
	}
	return m.charge(ctx, j, v, n)
}

// state folds the order from the log: the manager decides from facts, not
// from a read model that may lag. An order whose every event was delivered
// to the manager is folded from them and from whatever the log holds after
// the last (see states); another is read whole.
func (m *Manager) state(ctx context.Context, orderID string) (view, error) {
	// An order without a folded state starts empty at position 0: the
	// whole history.
	v, pos, _ := m.states.get(orderID)
	recs, err := m.store.LoadLatestAfter(ctx, orderID, pos)
	if errors.Is(err, eventstore.ErrUnavailable) {
		return view{}, fmt.Errorf("%w: %w", errOutage, err)
	}
	if err != nil {
		return view{}, err
	}
	for _, r := range recs {
		if v, err = v.fold(r); err != nil {
			return view{}, fmt.Errorf("order %s at %d: %w", orderID, r.Position, err)
		}
	}
	return v, nil
}

// view is an order's state as a job decides on it, with the request ids
// its payment and its refund were recorded under: a charge or refund of
// the job that got no answer is told apart by them from one made some
// other way meanwhile (a clerk's, recorded with RecordPayment or
// RecordRefund).
type view struct {
	order.State
	paidBy, refundedBy string // "" for events recorded without a request id
}

// fold applies the order's event rec to v.
func (v view) fold(rec eventstore.Recorded) (view, error) {
	e, err := convert.Foldable(convert.DecodeEvent(rec.Type, rec.Data))
	if err != nil {
		return v, err
	}
	v.State = order.Evolve(v.State, e, rec.Meta.OccurredAt)
	switch e.(type) {
	case order.PaymentAuthorized:
		v.paidBy = rec.Meta.RequestID
	case order.RefundIssued:
		v.refundedBy = rec.Meta.RequestID
	}
	return v, nil
}

// chargeRequestID and refundRequestID are the request ids the job records
// its outcome under: the command side knows them as the manager's.
func chargeRequestID(j job) string { return fmt.Sprint(command.PaymentRequestPrefix, j.Position) }
func refundRequestID(j job) string { return fmt.Sprint(command.RefundRequestPrefix, j.Position) }

// callCtx marks a command as the payments manager's, caused by the job's
// event.
func callCtx(ctx context.Context, j job) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-actor", "payments", "x-causation-id", strconv.FormatUint(j.Position, 10))
}

// charge runs one charge attempt. retry reports a failure worth another
// attempt.
func (m *Manager) charge(ctx context.Context, j *job, v view, attempt int) (result, bool, error) {
	st := v.State
	if j.MaybeCharged && chargeNotRecorded(v, *j) {
		if err := m.keyMayBeForgotten(*j); err != nil {
			return done, false, err
		}
		return m.void(ctx, j, attempt)
	}
	if st.Status != order.StatusPlaced {
		// Paid or declined (recorded by an earlier delivery), cancelled
		// before any money moved, or never placed: nothing to charge.
		m.count(func(s *Stats) { s.Dropped++ })
		m.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "dropped")))
		return done, false, nil
	}
	if err := m.keyMayBeForgotten(*j); err != nil {
		return done, false, err
	}
	probe, err := m.breaker.allow()
	if err != nil {
		return done, true, err
	}
	if err := m.sendingKey(ctx, j); err != nil {
		m.breaker.cancel(probe)
		return done, true, err
	}
	actx, cancel := context.WithTimeout(ctx, m.attemptTimeout)
	actx, span := m.tracer.Start(actx, "payment.charge", trace.WithAttributes(
		attribute.String("order.id", j.OrderID), attribute.Int64("log.position", int64(j.Position)), attribute.Int("payment.attempt", attempt)))
	res, err := m.gw.Charge(actx, ChargeRequest{
		IdempotencyKey: chargeKey(*j),
		OrderID:        j.OrderID, CustomerID: st.CustomerID, Amount: st.GrandTotal(), Currency: st.Currency,
	})
	span.End()
	cancel()
	m.recordCall(ctx, probe, err)
	m.count(func(s *Stats) { s.Attempts++ })
	req := &ordersv1.RecordPaymentRequest{RequestId: chargeRequestID(*j), OrderId: j.OrderID}
	switch {
	case errors.Is(err, ErrDeclined):
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "charge"), attribute.String("result", "declined")))
		req.Outcome, req.Reason = ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED, declineReason(err)
	case err != nil:
		// The request may have reached the provider before the error.
		j.MaybeCharged = true
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "charge"), attribute.String("result", "error")))
		return done, true, err
	default:
		j.MaybeCharged, j.PaymentRef = true, res.PaymentRef
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "charge"), attribute.String("result", "authorized")))
		req.Outcome, req.PaymentRef, req.Amount, req.Currency = ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, res.PaymentRef, st.GrandTotal(), st.Currency
	}
	rctx, rcancel := context.WithTimeout(callCtx(ctx, *j), m.attemptTimeout)
	_, err = m.cmds.RecordPayment(rctx, req)
	rcancel()
	switch status.Code(err) {
	case codes.OK:
		if req.Outcome == ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED {
			m.count(func(s *Stats) { s.Charged++ })
			m.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "authorized")))
		} else {
			m.count(func(s *Stats) { s.Declined++ })
			m.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "declined")))
		}
		return done, false, nil
	default:
		// Not recorded: the order was cancelled meanwhile (the next
		// attempt sees that and voids the charge), or the command side
		// is unreachable or refuses. The charge stands at the provider;
		// the retry repeats the same idempotency key and request id, so
		// nothing doubles, and a job that never gets recorded is parked
		// for an operator rather than forgotten.
		return done, true, recordingErr("recording the payment", err)
	}
}

// chargeNotRecorded reports whether an order that job j may have taken
// money for (under its charge key, with the provider's reference when it
// learned one) ended without that charge recorded: cancelled before any
// payment, declined (recorded by someone else meanwhile, or the job's own
// decline after an attempt that failed: a void then releases nothing), or
// paid some other way (a clerk recorded a payment taken at the till): under
// another reference than the job's, or, when the job never learned its
// reference (the charge's answer was lost, or a delivery before this one
// charged), under another request id than the job's. A void releases only
// what the job's own charge key took, never the payment the order holds.
// A payment recorded without a request id (by an older build) is taken for
// the job's when the job does not know its reference.
func chargeNotRecorded(v view, j job) bool {
	st := v.State
	paidOtherwise := st.PaymentRef != "" && (j.PaymentRef != "" && st.PaymentRef != j.PaymentRef ||
		j.PaymentRef == "" && v.paidBy != "" && v.paidBy != chargeRequestID(j))
	switch st.Status {
	case order.StatusCancelled:
		return st.PaidAmount == 0 || paidOtherwise
	case order.StatusPaymentDeclined:
		return true
	case order.StatusPlaced:
		return false
	}
	return paidOtherwise
}

// void releases whatever a charge job's earlier attempts may have taken
// for an order that ended without the charge recorded (chargeNotRecorded).
func (m *Manager) void(ctx context.Context, j *job, attempt int) (result, bool, error) {
	probe, err := m.breaker.allow()
	if err != nil {
		return done, true, err
	}
	if err := m.sendingKey(ctx, j); err != nil {
		m.breaker.cancel(probe)
		return done, true, err
	}
	actx, cancel := context.WithTimeout(ctx, m.attemptTimeout)
	actx, span := m.tracer.Start(actx, "payment.void", trace.WithAttributes(
		attribute.String("order.id", j.OrderID), attribute.Int64("log.position", int64(j.Position)), attribute.Int("payment.attempt", attempt)))
	res, err := m.gw.Void(actx, VoidRequest{IdempotencyKey: "void:" + chargeKey(*j), ChargeKey: chargeKey(*j), OrderID: j.OrderID})
	span.End()
	cancel()
	m.recordCall(ctx, probe, err)
	m.count(func(s *Stats) { s.Attempts++ })
	if errors.Is(err, ErrDeclined) {
		// Asking again gets the same answer: parked at once for an
		// operator, whose retry asks the provider again.
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "void"), attribute.String("result", "declined")))
		return done, false, fmt.Errorf("%w: the provider declined to release the charge the order ended without (cancelled, declined or paid otherwise); release it with the provider, then settle the job: %w",
			errSettleByHand, err)
	}
	if err != nil {
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "void"), attribute.String("result", "error")))
		return done, true, fmt.Errorf("voiding a charge the order ended without (cancelled, declined or paid otherwise): %w", err)
	}
	m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "void"), attribute.String("result", "ok")))
	if res.Released {
		m.count(func(s *Stats) { s.Voided++ })
		m.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "voided")))
		m.log.WarnContext(ctx, "payments: the order ended without this charge recorded (cancelled, declined or paid otherwise); charge voided", "order", j.OrderID, "void_ref", res.VoidRef)
	} else {
		m.count(func(s *Stats) { s.Dropped++ })
		m.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "dropped")))
	}
	return done, false, nil
}

// recordCall tells the circuit breaker how a provider call (the probe of
// a half-open circuit or not) that ended with err went: a decline is the
// provider's answer, not its failure, and a call cut short by shutdown
// says nothing about the provider.
func (m *Manager) recordCall(ctx context.Context, probe bool, err error) {
	if ctx.Err() != nil {
		m.breaker.cancel(probe)
		return
	}
	m.breaker.record(probe, err == nil || errors.Is(err, ErrDeclined))
}

func chargeKey(j job) string { return fmt.Sprintf("charge:%s:%d", j.OrderID, j.Position) }

// declineReason turns a provider's decline into text the order accepts:
// valid UTF-8 without the characters free text refuses, at most order.MaxTextLen
// characters. Without this a decline the command side refuses
// would never be recorded.
func declineReason(err error) string {
	r := strings.Map(func(c rune) rune {
		if !order.TextRuneAllowed(c) {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(err.Error(), "\uFFFD"))
	if rs := []rune(r); len(rs) > order.MaxTextLen {
		r = string(rs[:order.MaxTextLen])
	}
	r = strings.TrimSpace(r)
	if r == "" {
		r = "declined"
	}
	return r
}

// refund runs one refund attempt for a cancelled order.
func (m *Manager) refund(ctx context.Context, j *job, v view, attempt int) (result, bool, error) {
	st := v.State
	if j.RefundRef != "" && st.RefundRef != "" && st.RefundRef != j.RefundRef {
		// A refund cannot be taken back: an operator must settle it, and
		// the parked job (its error saying so) is where they look.
		return done, false, fmt.Errorf("%w: the refund this job made (%s) stands at the provider, but the order records refund %s, made some other way meanwhile: the customer was refunded twice; settle it with the provider, then settle the job",
			errSettleByHand, j.RefundRef, st.RefundRef)
	}
	if j.RefundRef == "" && j.MaybeRefunded && st.RefundRef != "" && v.refundedBy != "" && v.refundedBy != refundRequestID(*j) {
		// An attempt of this job that got no answer may have refunded,
		// and the order records a refund made some other way: asking
		// the provider again under the refund key would refund if the
		// attempt did not, so an operator settles it.
		return done, false, fmt.Errorf("%w: an attempt of this job may have refunded at the provider (it failed without saying whether it did), and the order records refund %s, made some other way meanwhile: the customer may have been refunded twice; check with the provider, then settle the job",
			errSettleByHand, st.RefundRef)
	}
	if !st.RefundDue() {
		return done, false, nil
	}
	if err := m.keyMayBeForgotten(*j); err != nil {
		return done, false, err
	}
	probe, err := m.breaker.allow()
	if err != nil {
		return done, true, err
	}
	if err := m.sendingKey(ctx, j); err != nil {
		m.breaker.cancel(probe)
		return done, true, err
	}
	actx, cancel := context.WithTimeout(ctx, m.attemptTimeout)
	actx, span := m.tracer.Start(actx, "payment.refund", trace.WithAttributes(
		attribute.String("order.id", j.OrderID), attribute.Int64("log.position", int64(j.Position)), attribute.Int("payment.attempt", attempt)))
	res, err := m.gw.Refund(actx, RefundRequest{IdempotencyKey: "refund:" + j.OrderID, OrderID: j.OrderID, PaymentRef: st.PaymentRef, Amount: st.PaidAmount, Currency: st.Currency})
	span.End()
	cancel()
	m.recordCall(ctx, probe, err)
	m.count(func(s *Stats) { s.Attempts++ })
	if errors.Is(err, ErrDeclined) {
		// Refunded nothing, and asking again gets the same answer:
		// parked at once, as void does.
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "refund"), attribute.String("result", "declined")))
		return done, false, fmt.Errorf("%w: the provider declined the refund; refund the customer with the provider, then settle the job: %w", errSettleByHand, err)
	}
	if err != nil {
		// The request may have reached the provider before the error.
		j.MaybeRefunded = true
		m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "refund"), attribute.String("result", "error")))
		return done, true, err
	}
	m.attempts.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", "refund"), attribute.String("result", "refunded")))
	// Refunded, as a charge that succeeded is marked maybe charged: an
	// attempt after a recording that failed sends the key again only
	// while the provider remembers it (keyMayBeForgotten).
	j.RefundRef, j.MaybeRefunded = res.RefundRef, true
	rctx, rcancel := context.WithTimeout(callCtx(ctx, *j), m.attemptTimeout)
	defer rcancel()
	_, err = m.cmds.RecordRefund(rctx, &ordersv1.RecordRefundRequest{
		RequestId: refundRequestID(*j), OrderId: j.OrderID, RefundRef: res.RefundRef, Amount: st.PaidAmount,
	})
	switch status.Code(err) {
	case codes.OK:
		m.count(func(s *Stats) { s.Refunded++ })
		m.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "refunded")))
		return done, false, nil
	default:
		// The refund stands at the provider; retried with the same keys,
		// then parked, never forgotten.
		return done, true, recordingErr("recording the refund", err)
	}
}

func parkKey(kind jobKind, orderID string) string {
	return string(kind) + "." + base64.RawURLEncoding.EncodeToString([]byte(orderID))
}

// park stores j in the bucket; added reports that it was not parked
// already. A retried job parked again replaces the entry its lease is on.
// A job delivered again while parked (its acknowledgement was lost) is
// left parked (handle); one parked beside another delivery of it still
// running (the first outlived its ack wait) adds what it learned about its
// money to the entry (see mergeMoneyFacts),
// unless a retry of it runs, whose job it is then: written over, the
// retry's lease was gone, and a settle got through while the retry was at
// the provider, which refunded after the operator had settled by hand.
func (m *Manager) park(ctx context.Context, j job) (added bool, err error) {
	b, err := json.Marshal(j)
	if err != nil {
		return false, err
	}
	ctx = context.WithoutCancel(ctx)
	key := parkKey(j.Kind, j.OrderID)
	for {
		if err = m.kv.Create(ctx, key, b); err == nil {
			return true, nil
		}
		if !errors.Is(err, bucket.ErrExists) {
			return false, err
		}
		if j.leased {
			return false, m.kv.Put(ctx, key, b)
		}
		v, rev, err := m.kv.Read(ctx, key)
		if errors.Is(err, bucket.ErrNotFound) {
			continue // settled or retried to its end meanwhile
		}
		if err != nil {
			return false, err
		}
		var cur job
		if json.Unmarshal(v, &cur) == nil && cur.RetryingUntil.After(time.Now()) {
			return false, nil
		}
		parked := j
		mergeMoneyFacts(&parked, cur)
		pb, err := json.Marshal(parked)
		if err != nil {
			return false, err
		}
		if _, err = m.kv.Update(ctx, key, pb, rev); !errors.Is(err, bucket.ErrChanged) {
			return false, err
		}
	}
}

// mergeMoneyFacts adds to j what other knows about the job's money: the
// marks that money may have moved, the provider's references, the
// earliest time its key went out.
func mergeMoneyFacts(j *job, other job) {
	j.MaybeCharged = j.MaybeCharged || other.MaybeCharged
	j.MaybeRefunded = j.MaybeRefunded || other.MaybeRefunded
	j.PaymentRef = cmp.Or(j.PaymentRef, other.PaymentRef)
	j.RefundRef = cmp.Or(j.RefundRef, other.RefundRef)
	if j.KeyUsedAt.IsZero() || (!other.KeyUsedAt.IsZero() && other.KeyUsedAt.Before(j.KeyUsedAt)) {
		j.KeyUsedAt = other.KeyUsedAt
	}
}

// jobKeys returns the bucket's keys of parked jobs: all of its keys but
// the records of when keys went out (sentPrefix).
func (m *Manager) jobKeys(ctx context.Context) ([]string, error) {
	keys, err := m.kv.Keys(ctx)
	return slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, sentPrefix) }), err
}

// Parked lists parked jobs, oldest first.
func (m *Manager) Parked(ctx context.Context) ([]job, error) {
	keys, err := m.jobKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []job
	for _, k := range keys {
		v, err := m.kv.Get(ctx, k)
		if errors.Is(err, bucket.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var j job
		if err := json.Unmarshal(v, &j); err != nil {
			continue
		}
		out = append(out, j)
	}
	// Stable, so jobs parked in the same instant keep the bucket's order;
	// an outage can park thousands, which an insertion sort took
	// quadratic time over.
	slices.SortStableFunc(out, func(a, b job) int { return a.ParkedAt.Compare(b.ParkedAt) })
	return out, nil
}

// Retry runs parked jobs again (those of orderID, or all when it is
// empty) with a fresh attempt budget; completed jobs leave the bucket.
//
// A charge job is marked MaybeCharged in the bucket before it runs, and
// runs as marked. A process that dies after the provider took the money
// and before the outcome is recorded leaves nothing else behind, and a
// retry, unlike a delivery, has no redelivery count to tell the next one
// that it ran before: without the mark, a job whose order is then
// cancelled would be dropped as never charged and the money kept. A void
// of a charge that was never taken releases nothing (see Provider.Void),
// so the mark costs at most a needless void. A refund job is marked
// MaybeRefunded the same way, so that one whose order is then refunded
// some other way is parked for an operator rather than dropped: the mark
// costs at most a look at the provider, after which the operator removes
// the job (Settle). Retry never clears a mark.
//
// A retry leases its job in the bucket, with the mark, by a write
// conditioned on the revision it read, and renews the lease while it runs:
// so of retries in several processes one runs the job and the others skip
// it, a settle anywhere is refused (ErrJobBusy) while the job's money may
// still move, and a job settled since it was listed is not run. The lease
// lasts retryLease AckWaits (30 s by default; longer than any clock
// difference between nodes should be): a process that dies mid-retry
// holds its job that long.
func (m *Manager) Retry(ctx context.Context, orderID string) (completed, parkedAgain int, err error) {
	jobs, err := m.Parked(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, j := range jobs {
		if orderID != "" && j.OrderID != orderID {
			continue
		}
		r, err := m.retryOne(ctx, j)
		if err != nil {
			return completed, parkedAgain, err
		}
		switch r {
		case done:
			completed++
		case parked:
			parkedAgain++
		}
	}
	return completed, parkedAgain, nil
}

// retryOne runs the parked job j again, unless another retry of it holds
// its lease, in this process or another, or it was settled since it was
// listed (then it is skipped: abandon, nil). It answers done when the job
// completed and left the park, parked when it failed again.
func (m *Manager) retryOne(ctx context.Context, j job) (result, error) {
	key := parkKey(j.Kind, j.OrderID)
	l, err := m.lease(ctx, key)
	if errors.Is(err, errNotLeased) {
		return abandon, nil // settled since it was listed, or retried elsewhere
	}
	if err != nil {
		return abandon, fmt.Errorf("payments: leasing the parked %s of order %s to retry it: %w", j.Kind, j.OrderID, err)
	}
	// The retry starts the job's attempts afresh and keeps every fact
	// about money it holds (MaybeCharged, the provider's references): a
	// copy that listed the fields to keep dropped the references. Parked
	// again, it holds no lease. Copied before the lease's renewals start,
	// which write l.j.
	fresh := l.j
	fresh.Attempts, fresh.LastError, fresh.ParkedAt, fresh.RetryingUntil = 0, "", time.Time{}, time.Time{}
	fresh.KeyUsedAt, fresh.leased = l.keyUsedBefore, true
	runCtx, stop := l.keep(ctx, m)
	// An operator waits for the answer: the job runs only while the
	// call's deadline leaves time to answer UNAVAILABLE (which ordersctl
	// retries) before it, however long an outage or the job's backoff
	// would have it wait.
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(runCtx, d.Add(-retryAnswerMargin))
		defer cancel()
	}
	r := m.run(runCtx, &fresh)
	rev, held := stop()
	switch r {
	case done:
		// The job is done, its outcome recorded: a caller that left
		// meanwhile must not leave it listed as parked, nor be told it
		// failed.
		if err := m.kv.Delete(context.WithoutCancel(ctx), key); err != nil {
			return abandon, err
		}
		m.parkedNow.Add(-1)
		return done, nil
	case parked:
		return parked, nil
	default:
		// The call ended mid-job, perhaps after the provider took the
		// money, or the event store or the command side stayed away past
		// the outage limit, or the job could not be parked again, or the
		// lease could not be kept: it stays parked, marked before it
		// ran, and the jobs after it are not tried. Never an answer of
		// success. The lease is handed back at once, if still held, with
		// what the run learned about the job's money (its key sent, a
		// reference), which a later retry decides on.
		if held {
			released := fresh
			released.Attempts, released.LastError, released.ParkedAt = l.j.Attempts, l.j.LastError, l.j.ParkedAt
			if b, err := json.Marshal(released); err == nil {
				_, _ = m.kv.Update(context.WithoutCancel(ctx), key, b, rev)
			}
		} else {
			m.keepMoneyFacts(context.WithoutCancel(ctx), key, fresh)
		}
		if err := ctx.Err(); err != nil {
			return abandon, err
		}
		return abandon, fmt.Errorf("payments: the parked job of order %s could not be run to its end and stays parked: %w", j.OrderID, eventstore.ErrUnavailable)
	}
}

// keepMoneyFacts adds to the parked job under key, if it is still parked
// and no retry holds it, what run learned about its money (ran): the
// marks, the provider's references, when its key was first sent. A retry
// that lost its lease cannot hand it back, but a later retry must still
// decide on those facts. Best effort: a job changed meanwhile is left as
// it is.
func (m *Manager) keepMoneyFacts(ctx context.Context, key string, ran job) {
	v, rev, err := m.kv.Read(ctx, key)
	if err != nil {
		return
	}
	var cur job
	if json.Unmarshal(v, &cur) != nil || cur.RetryingUntil.After(time.Now()) {
		return
	}
	mergeMoneyFacts(&cur, ran)
	if b, err := json.Marshal(cur); err == nil {
		_, _ = m.kv.Update(ctx, key, b, rev)
	}
}

// retryAnswerMargin is the time a retry keeps before its call's deadline
// to answer that it could not run a job to its end.
const retryAnswerMargin = time.Second

// retryLease is how many AckWaits a retry's lease on its job lasts; it is
// renewed every third of that.
const retryLease = 15

// errNotLeased reports a job that a retry cannot lease: it left the park,
// or another retry holds it.
var errNotLeased = errors.New("payments: the parked job is settled or retried elsewhere")

// leased is a parked job a retry holds, as the bucket has it, marked and
// leased, at revision rev.
type leased struct {
	key string
	j   job
	rev uint64
	// keyUsedBefore is when the job's key first went out as the lease
	// found it (zero: never), before the lease wrote its own time.
	keyUsedBefore time.Time
}

// lease reads the parked job under key, as stored (the listing may be
// older), marks it MaybeCharged or MaybeRefunded as it runs (see Retry) and
// leases it, written only if nobody wrote or removed it since the read:
// errNotLeased when it is gone, changed meanwhile, or leased by a retry
// elsewhere.
func (m *Manager) lease(ctx context.Context, key string) (*leased, error) {
	v, rev, err := m.kv.Read(ctx, key)
	if errors.Is(err, bucket.ErrNotFound) {
		return nil, errNotLeased
	}
	if err != nil {
		return nil, err
	}
	var j job
	if err := json.Unmarshal(v, &j); err != nil {
		return nil, fmt.Errorf("payments: parked job %s: %w", key, err)
	}
	now := time.Now()
	if j.RetryingUntil.After(now) {
		return nil, errNotLeased
	}
	j.MaybeCharged = j.MaybeCharged || j.Kind == kindCharge
	j.MaybeRefunded = j.MaybeRefunded || j.Kind == kindRefund
	// As the marks: a retry whose process dies after its call moved the
	// money leaves them in the bucket, and a later retry past the key's
	// lifetime must not send the key again. The lease comes a moment
	// before the run's first call: the lifetime is counted from it, on
	// the safe side. The run itself starts from the job as it was
	// (keyUsedBefore): one that sends nothing (its circuit open) parks
	// the job again as it found it.
	before := j.KeyUsedAt
	if j.KeyUsedAt.IsZero() {
		j.KeyUsedAt = now.UTC()
	}
	l := &leased{key: key, j: j, rev: rev, keyUsedBefore: before}
	if err := l.renew(ctx, m, now); err != nil {
		if errors.Is(err, bucket.ErrChanged) {
			return nil, errNotLeased
		}
		return nil, err
	}
	return l, nil
}

// leaseFor is how long a retry's lease lasts.
func (m *Manager) leaseFor() time.Duration { return retryLease * m.ackWait }

// renew writes the job leased until now plus leaseFor, if the bucket
// still holds it at l.rev: bucket.ErrChanged when it does not.
func (l *leased) renew(ctx context.Context, m *Manager, now time.Time) error {
	l.j.RetryingUntil = now.Add(m.leaseFor()).UTC()
	b, err := json.Marshal(l.j)
	if err != nil {
		return err
	}
	rev, err := m.kv.Update(ctx, l.key, b, l.rev)
	if err != nil {
		return err
	}
	l.rev = rev
	return nil
}

// keep renews the lease every third of its length while the job runs. It
// returns the context to run the job in, which ends when a renewal fails
// (the job's money must not move once another process may settle it), and
// stop, which ends the renewals and reports the revision of the last
// write and whether the lease was still held by it.
func (l *leased) keep(ctx context.Context, m *Manager) (context.Context, func() (uint64, bool)) {
	runCtx, cancel := context.WithCancel(ctx)
	quit, exited := make(chan struct{}), make(chan struct{})
	held := true
	go func() {
		defer close(exited)
		t := time.NewTicker(m.leaseFor() / 3)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-runCtx.Done():
				return
			case <-t.C:
				if err := l.renew(runCtx, m, time.Now()); err != nil {
					if runCtx.Err() == nil {
						m.log.WarnContext(ctx, "payments: a retry could not renew its lease on the parked job; it stops", "kind", l.j.Kind, "order", l.j.OrderID, "err", err)
					}
					held = false
					cancel()
					return
				}
			}
		}
	}()
	return runCtx, func() (uint64, bool) {
		close(quit)
		<-exited
		cancel()
		return l.rev, held
	}
}

// Settle removes the parked job of kind (kindCharge or kindRefund) for
// orderID without running it, once an operator settled its money by hand
// with the provider: a refund job parked because the customer may have
// been refunded twice (errSettleByHand) stays parked on every retry, since
// no retry can undo that. It returns the job as it was parked. Of
// concurrent settles, in any process, one removes the job (a removal
// conditioned on the revision read); a settle while a retry of the job
// runs, in any process, holding the job's lease (see Retry), is refused,
// since the retry may still move the job's money. ErrNotParked when no
// such job is parked, ErrJobBusy while a retry or another settle of it
// runs; the bucket's errors otherwise.
func (m *Manager) Settle(ctx context.Context, orderID string, kind jobKind) (job, error) {
	key := parkKey(kind, orderID)
	v, rev, err := m.kv.Read(ctx, key)
	if errors.Is(err, bucket.ErrNotFound) {
		return job{}, ErrNotParked
	}
	if err != nil {
		return job{}, err
	}
	var j job
	if err := json.Unmarshal(v, &j); err != nil {
		return job{}, fmt.Errorf("payments: parked job %s: %w", key, err)
	}
	if j.RetryingUntil.After(time.Now()) {
		return job{}, ErrJobBusy // a retry holds it
	}
	switch err := m.kv.DeleteAt(ctx, key, rev); {
	case errors.Is(err, bucket.ErrChanged):
		return job{}, ErrJobBusy // another process retried or settled it meanwhile
	case err != nil:
		return job{}, err
	}
	m.parkedNow.Add(-1)
	j.RetryingUntil = time.Time{}
	return j, nil
}
