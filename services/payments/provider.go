package payments

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Provider is a payment provider. Implementations must be idempotent
// by IdempotencyKey: a repeated key returns the first outcome without
// charging or refunding again, which is what makes retries and crash
// recovery safe.
type Provider interface {
	Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error)
	Refund(ctx context.Context, req RefundRequest) (RefundResult, error)
	// Void releases the charge made under req.ChargeKey, if the provider
	// holds one (voiding an authorization or refunding a capture), and
	// succeeds with Released false when it never took money under that
	// key. It is how money comes back when the outcome of a charge was
	// never learned, so it must not need the provider's payment reference.
	Void(ctx context.Context, req VoidRequest) (VoidResult, error)
}

// ChargeRequest asks for an amount to be authorized.
type ChargeRequest struct {
	IdempotencyKey string
	OrderID        string
	CustomerID     string
	Amount         int64 // minor units
	Currency       string
}

// ChargeResult is an authorization.
type ChargeResult struct{ PaymentRef string }

// RefundRequest asks for a payment to be refunded.
type RefundRequest struct {
	IdempotencyKey string
	OrderID        string
	PaymentRef     string
	Amount         int64
	Currency       string
}

// RefundResult is a refund.
type RefundResult struct{ RefundRef string }

// VoidRequest asks for whatever was charged under ChargeKey (the
// IdempotencyKey of an earlier ChargeRequest) to be released.
type VoidRequest struct {
	IdempotencyKey string
	ChargeKey      string
	OrderID        string
}

// VoidResult says whether money had been taken and was released.
type VoidResult struct {
	Released bool
	VoidRef  string
}

// KeyLifetime is implemented by a Provider that forgets an idempotency key
// some time after its first use, as real providers do (a day, say): a
// charge sent again under a forgotten key charges again, and a void under
// it releases nothing. A job whose earlier attempt sent its key and may
// have moved money under it (its answer lost) is not sent to such a
// provider again once the key may be forgotten: it is parked for an
// operator to settle with the provider. 0 means keys are never forgotten.
type KeyLifetime interface {
	KeyLifetime() time.Duration
}

// KeyLifetime is how long the simulator remembers a key at the least
// (KeyTTL after the last call that carried it); 0 with no KeyTTL.
func (s *Simulator) KeyLifetime() time.Duration { return s.cfg.KeyTTL }

// ErrDeclined is a permanent refusal: retrying will not change it. Wrap it
// with the provider's reason.
var ErrDeclined = errors.New("payment declined")

// Every other gateway error is treated as transient and retried.

// SimulatorConfig configures a Simulator.
type SimulatorConfig struct {
	// Latency is added to every call.
	Latency time.Duration
	// FailureRate is the probability (0-1) that a call fails transiently
	// before doing anything.
	FailureRate float64
	// LostAnswerRate is the probability (0-1) that a call which got
	// through does its work (takes the charge, makes the refund or void,
	// or finds the earlier one under its key) and then fails transiently
	// anyway, as when the provider's answer is lost on the way back. The
	// caller cannot tell it from a failure before the work; only the
	// idempotency key keeps its retry from moving money again.
	LostAnswerRate float64
	// Seed seeds the failure draws; 0 seeds from the clock.
	Seed uint64
	// DeclineOver declines charges above this amount (minor units); 0
	// means no limit.
	DeclineOver int64
	// DeclineCustomer declines every charge of this customer id, a test
	// card of sorts; default "cust-decline".
	DeclineCustomer string
	// KeyTTL is how long the simulator remembers a charge or refund key after
	// the last call that carried it and got through (or voided the charge). A
	// repeat within it gets the first outcome and moves nothing: a job
	// retrying a payment while the command side is down reaches the simulator
	// at every attempt, so keeps its key however long that lasts. A key unused
	// for longer is new to it again, as with a real provider whose idempotency
	// keys expire, and a void of a charge whose key it forgot finds nothing to
	// release; so a job kept from the simulator for longer than KeyTTL (the
	// event store down, the circuit open, the simulator down) may be charged
	// twice. With KeyTTL set the simulator keeps only what its idempotency
	// needs, so its memory follows the call rate times KeyTTL instead of every
	// call ever made, and the audit records (Charged, Refunded, Movements,
	// ChargeKeys) stay empty. 0 remembers every key and keeps the audit
	// records, for tests that prove each order was charged once.
	KeyTTL time.Duration
	// Clock is the simulator's clock for KeyTTL, non-decreasing; nil is
	// time.Now.
	Clock func() time.Time
}

// Simulator is a Provider for local runs and tests: no money moves.
// It is idempotent by key like a real provider, and records every
// simulated money movement and every key each order was charged under, so
// tests can prove each order was charged exactly once; a long-running
// process sets KeyTTL instead.
type Simulator struct {
	cfg SimulatorConfig

	mu         sync.Mutex
	rng        *rand.Rand
	charges    map[string]chargeOutcome
	refunds    map[string]refundOutcome
	charged    map[string]int // money taken per charge key
	refunded   map[string]int
	voided     map[string]int // released charges per charge key
	movements  []Movement
	chargeKeys map[string]map[string]bool // order → keys of its charge calls
	// seen and seenRefunds queue the charge and refund keys at each use,
	// oldest first, for forgetting them KeyTTL after their last.
	seen, seenRefunds fifo
	// refs and refundRefs number the references handed out, which stay
	// unique when keys are forgotten.
	refs, refundRefs int
	attempts         int
	lost             int
	down             bool
}

// refundOutcome is a refund key's reference and, with KeyTTL, its last
// use.
type refundOutcome struct {
	ref  string
	last time.Time
}

type chargeOutcome struct {
	last   time.Time // the last call with the key, with KeyTTL
	ref    string
	reason string // non-empty when declined
	order  string
	amount int64
}

// Movement is money the simulator moved: a charge taken, a refund or a
// void paid back.
type Movement struct {
	Kind    string // "charge", "refund" or "void"
	Key     string // the idempotency key of the call that moved it
	OrderID string
	Amount  int64
}

// NewSimulator returns a simulated gateway.
func NewSimulator(cfg SimulatorConfig) *Simulator {
	if cfg.DeclineCustomer == "" {
		cfg.DeclineCustomer = "cust-decline"
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return &Simulator{cfg: cfg, rng: rand.New(rand.NewPCG(seed, 7)),
		charges: map[string]chargeOutcome{}, refunds: map[string]refundOutcome{}, charged: map[string]int{}, refunded: map[string]int{}, voided: map[string]int{},
		chargeKeys: map[string]map[string]bool{}}
}

// seenKey is a key and a time the simulator saw it.
type seenKey struct {
	key string
	at  time.Time
}

// fifo is a queue of keys, oldest first.
type fifo struct {
	keys []seenKey
	head int
}

func (q *fifo) push(k seenKey) { q.keys = append(q.keys, k) }

// expired removes and returns the oldest key when it was seen at or before
// cut.
func (q *fifo) expired(cut time.Time) (string, bool) {
	if q.head == len(q.keys) || q.keys[q.head].at.After(cut) {
		return "", false
	}
	k := q.keys[q.head].key
	q.keys[q.head] = seenKey{}
	q.head++
	if q.head > len(q.keys)/2 {
		n := copy(q.keys, q.keys[q.head:])
		clear(q.keys[n:])
		q.keys, q.head = q.keys[:n], 0
	}
	return k, true
}

// used records a use of key now, queued on q for expiry, and returns the
// key's last use: now with KeyTTL set, else the zero time (nothing
// expires); caller holds mu.
func (s *Simulator) used(q *fifo, key string, now time.Time) time.Time {
	if s.audit() {
		return time.Time{}
	}
	q.push(seenKey{key, now})
	return now
}

// audit reports whether the simulator keeps its audit records (KeyTTL
// unset).
func (s *Simulator) audit() bool { return s.cfg.KeyTTL <= 0 }

// record adds m to the audit records, counting it per key in counts when
// not nil; nothing with KeyTTL set. Caller holds mu.
func (s *Simulator) record(counts map[string]int, m Movement) {
	if !s.audit() {
		return
	}
	if counts != nil {
		counts[m.Key]++
	}
	s.movements = append(s.movements, m)
}

// forgetExpired forgets the keys last used KeyTTL ago or earlier and
// returns the time now; caller holds mu. Each use of a key queues it once
// more, so a key popped here is forgotten only when no later use
// refreshed it.
func (s *Simulator) forgetExpired() time.Time {
	now := time.Now()
	if s.cfg.Clock != nil {
		now = s.cfg.Clock()
	}
	if s.audit() {
		return now
	}
	cut := now.Add(-s.cfg.KeyTTL)
	for k, ok := s.seen.expired(cut); ok; k, ok = s.seen.expired(cut) {
		if o, found := s.charges[k]; found && !o.last.After(cut) {
			delete(s.charges, k)
			delete(s.voided, k)
		}
	}
	for k, ok := s.seenRefunds.expired(cut); ok; k, ok = s.seenRefunds.expired(cut) {
		if r, found := s.refunds[k]; found && !r.last.After(cut) {
			delete(s.refunds, k)
		}
	}
	return now
}

// SetDown makes every call fail transiently (true) or behave again (false),
// simulating an outage.
func (s *Simulator) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *Simulator) wait(ctx context.Context) error {
	if s.cfg.Latency <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(s.cfg.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var (
	errUnavailable = errors.New("simulator: provider temporarily unavailable")
	errLostAnswer  = errors.New("simulator: connection reset before the answer arrived")
)

// failNow decides a transient failure; caller holds mu.
func (s *Simulator) failNow() bool {
	s.attempts++
	return s.down || (s.cfg.FailureRate > 0 && s.rng.Float64() < s.cfg.FailureRate)
}

// loseAnswer decides whether the answer of a call that did its work is
// lost; caller holds mu.
func (s *Simulator) loseAnswer() bool {
	if s.cfg.LostAnswerRate > 0 && s.rng.Float64() < s.cfg.LostAnswerRate {
		s.lost++
		return true
	}
	return false
}

// Charge authorizes once per idempotency key.
func (s *Simulator) Charge(ctx context.Context, req ChargeRequest) (ChargeResult, error) {
	if err := s.wait(ctx); err != nil {
		return ChargeResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.forgetExpired()
	if s.audit() {
		if s.chargeKeys[req.OrderID] == nil {
			s.chargeKeys[req.OrderID] = map[string]bool{}
		}
		s.chargeKeys[req.OrderID][req.IdempotencyKey] = true
	}
	if s.failNow() {
		return ChargeResult{}, errUnavailable
	}
	o, ok := s.charges[req.IdempotencyKey]
	if !ok {
		// A new key: decide, and take the money. A repeated key gets
		// the first outcome back and moves nothing.
		o = chargeOutcome{order: req.OrderID, amount: req.Amount}
		switch {
		case req.CustomerID == s.cfg.DeclineCustomer:
			o.reason = "card declined"
		case s.cfg.DeclineOver > 0 && req.Amount > s.cfg.DeclineOver:
			o.reason = "amount over limit"
		default:
			s.refs++
			o.ref = fmt.Sprintf("sim-ch-%d", s.refs)
			s.record(s.charged, Movement{Kind: "charge", Key: req.IdempotencyKey, OrderID: req.OrderID, Amount: req.Amount})
		}
	}
	o.last = s.used(&s.seen, req.IdempotencyKey, now)
	s.charges[req.IdempotencyKey] = o
	if s.loseAnswer() {
		return ChargeResult{}, errLostAnswer
	}
	if o.reason != "" {
		return ChargeResult{}, fmt.Errorf("%w: %s", ErrDeclined, o.reason)
	}
	return ChargeResult{PaymentRef: o.ref}, nil
}

// Refund refunds once per idempotency key.
func (s *Simulator) Refund(ctx context.Context, req RefundRequest) (RefundResult, error) {
	if err := s.wait(ctx); err != nil {
		return RefundResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.forgetExpired()
	if s.failNow() {
		return RefundResult{}, errUnavailable
	}
	r, ok := s.refunds[req.IdempotencyKey]
	if !ok {
		s.refundRefs++
		r.ref = fmt.Sprintf("sim-rf-%d", s.refundRefs)
		s.record(s.refunded, Movement{Kind: "refund", Key: req.IdempotencyKey, OrderID: req.OrderID, Amount: req.Amount})
	}
	r.last = s.used(&s.seenRefunds, req.IdempotencyKey, now)
	s.refunds[req.IdempotencyKey] = r
	if s.loseAnswer() {
		return RefundResult{}, errLostAnswer
	}
	return RefundResult{RefundRef: r.ref}, nil
}

// Void releases a successful charge once per charge key.
func (s *Simulator) Void(ctx context.Context, req VoidRequest) (VoidResult, error) {
	if err := s.wait(ctx); err != nil {
		return VoidResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.forgetExpired()
	if s.failNow() {
		return VoidResult{}, errUnavailable
	}
	o, ok := s.charges[req.ChargeKey]
	if !ok || o.reason != "" {
		return VoidResult{}, nil
	}
	o.last = s.used(&s.seen, req.ChargeKey, now)
	s.charges[req.ChargeKey] = o
	if s.voided[req.ChargeKey] == 0 {
		s.voided[req.ChargeKey]++
		s.record(nil, Movement{Kind: "void", Key: req.IdempotencyKey, OrderID: o.order, Amount: o.amount})
	}
	if s.loseAnswer() {
		return VoidResult{}, errLostAnswer
	}
	return VoidResult{Released: true, VoidRef: "sim-vd-" + o.ref}, nil
}

// Voided returns how many charges were released per charge key (those
// remembered; see KeyTTL).
func (s *Simulator) Voided() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.voided))
	for k, v := range s.voided {
		out[k] = v
	}
	return out
}

// Charged returns how many times money was actually taken per key (empty
// with KeyTTL set).
func (s *Simulator) Charged() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.charged))
	for k, v := range s.charged {
		out[k] = v
	}
	return out
}

// Movements returns every money movement so far, in order (none with
// KeyTTL set).
func (s *Simulator) Movements() []Movement {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Movement(nil), s.movements...)
}

// ChargeKeys returns, per order, the idempotency keys its charge calls
// carried, failed calls included (none with KeyTTL set).
func (s *Simulator) ChargeKeys() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]string, len(s.chargeKeys))
	for o, keys := range s.chargeKeys {
		for k := range keys {
			out[o] = append(out[o], k)
		}
	}
	return out
}

// LostAnswers returns how many calls did their work and then failed (see
// SimulatorConfig.LostAnswerRate).
func (s *Simulator) LostAnswers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lost
}

// Refunded returns how many refunds were actually made per key (empty with
// KeyTTL set).
func (s *Simulator) Refunded() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.refunded))
	for k, v := range s.refunded {
		out[k] = v
	}
	return out
}

// Attempts returns the number of calls made, failed ones included.
func (s *Simulator) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}
