package payments_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// scripted wraps the simulator with hooks that run inside a call, so a
// test can make things happen at an exact point of a payment.
type scripted struct {
	*payments.Simulator
	charge      func(ctx context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool)
	chargeCalls atomic.Int32
	failVoids   atomic.Int32
	voidCalls   atomic.Int32
	decline     string
	// The next failRefunds refunds fail before reaching the provider,
	// then the next loseRefunds are made and answer with an error.
	failRefunds, loseRefunds atomic.Int32
	refundCalls              atomic.Int32
	// declineRefunds and declineVoids, when set, are the reason every
	// refund or void is declined with: a provider that answers, for good.
	declineRefunds, declineVoids string
	// refunded, when set, is called after a refund is made.
	refunded func(req payments.RefundRequest)

	mu       sync.Mutex
	inflight map[string]int
	maxConc  int
}

func (g *scripted) Charge(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	g.mu.Lock()
	if g.inflight == nil {
		g.inflight = map[string]int{}
	}
	g.inflight[req.IdempotencyKey]++
	g.maxConc = max(g.maxConc, g.inflight[req.IdempotencyKey])
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.inflight[req.IdempotencyKey]--; g.mu.Unlock() }()
	n := g.chargeCalls.Add(1)
	if g.decline != "" {
		return payments.ChargeResult{}, fmt.Errorf("%w: %s", payments.ErrDeclined, g.decline)
	}
	if g.charge != nil {
		if res, err, ok := g.charge(ctx, n, req); ok {
			return res, err
		}
	}
	return g.Simulator.Charge(ctx, req)
}

func (g *scripted) Refund(ctx context.Context, req payments.RefundRequest) (payments.RefundResult, error) {
	g.refundCalls.Add(1)
	if g.declineRefunds != "" {
		return payments.RefundResult{}, fmt.Errorf("%w: %s", payments.ErrDeclined, g.declineRefunds)
	}
	if g.failRefunds.Add(-1) >= 0 {
		return payments.RefundResult{}, errors.New("provider: refund temporarily unavailable")
	}
	if g.loseRefunds.Add(-1) >= 0 {
		if _, err := g.Simulator.Refund(ctx, req); err != nil {
			return payments.RefundResult{}, err
		}
		if g.refunded != nil {
			g.refunded(req)
		}
		return payments.RefundResult{}, errors.New("provider: connection reset after the refund was sent")
	}
	res, err := g.Simulator.Refund(ctx, req)
	if err == nil && g.refunded != nil {
		g.refunded(req)
	}
	return res, err
}

func (g *scripted) Void(ctx context.Context, req payments.VoidRequest) (payments.VoidResult, error) {
	g.voidCalls.Add(1)
	if g.declineVoids != "" {
		return payments.VoidResult{}, fmt.Errorf("%w: %s", payments.ErrDeclined, g.declineVoids)
	}
	if g.failVoids.Add(-1) >= 0 {
		return payments.VoidResult{}, errors.New("provider: void temporarily unavailable")
	}
	return g.Simulator.Void(ctx, req)
}

// cancel cancels an order from inside a gateway call.
func (e *env) cancel(tb testing.TB, id string) {
	tb.Helper()
	if _, err := e.cmd.CancelOrder(context.Background(), &ordersv1.CancelOrderRequest{RequestId: "cancel-" + id, OrderId: id}); err != nil {
		tb.Error(err)
	}
}

// waitStats polls the manager's counters until ok holds.
func (e *env) waitStats(tb testing.TB, what string, ok func(payments.Stats) bool) payments.Stats {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.mgr.Load().Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: stats %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond) // polling counters, not standing in for an event
	}
}

func assertVoidedOnce(t *testing.T, sim *payments.Simulator) {
	t.Helper()
	charged, voided := sim.Charged(), sim.Voided()
	if len(charged) != 1 || len(voided) != 1 {
		t.Fatalf("charged %v, voided %v: want one charge, voided", charged, voided)
	}
	for k := range charged {
		if voided[k] != 1 {
			t.Fatalf("charge %s not voided: %v", k, voided)
		}
	}
}

// The order is cancelled while its charge is in flight: the charge cannot
// be recorded, so it is voided, and a failing void is retried rather than
// forgotten.
func TestChargeOfOrderCancelledMeanwhileIsVoided(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	var id atomic.Value
	gw := &scripted{Simulator: sim}
	gw.failVoids.Store(2)
	gw.charge = func(_ context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool) {
		if n == 1 {
			e.cancel(t, req.OrderID)
		}
		return payments.ChargeResult{}, nil, false
	}
	e.run(t, gw, fast())
	id.Store(e.place(t, "late-cancel", 500))
	st := e.waitStats(t, "void", func(s payments.Stats) bool { return s.Voided == 1 })
	if st.Charged != 0 || st.Parked != 0 {
		t.Fatalf("stats %+v", st)
	}
	assertVoidedOnce(t, sim)
	if gw.voidCalls.Load() != 3 {
		t.Fatalf("%d void calls, want 3 (two failures, one success)", gw.voidCalls.Load())
	}
}

// A refund or a void the provider declines is its answer, and a lasting
// one: the job is parked at once for an operator to settle with the
// provider, rather than asked again until its attempts run out, and the
// circuit, which a provider that answers every call has no reason to open,
// stays closed, so the next order is charged.
func TestDeclinedRefundOrVoidIsParkedAtOnceWithTheCircuitClosed(t *testing.T) {
	// A void is the charge job's: the charge it made is what it releases.
	for kind, job := range map[string]ordersv1.PaymentJobKind{"refund": ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND, "void": ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_CHARGE} {
		t.Run(kind, func(t *testing.T) {
			e := start(t)
			gw := &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})}
			calls := &gw.refundCalls
			switch kind {
			case "refund":
				gw.declineRefunds = "refund window expired"
			default:
				gw.declineVoids = "authorization already captured"
				calls = &gw.voidCalls
				gw.charge = func(_ context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool) {
					if n == 1 {
						e.cancel(t, req.OrderID)
					}
					return payments.ChargeResult{}, nil, false
				}
			}
			e.run(t, gw, payments.WithRetry(3, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithCircuit(2, time.Hour))
			paid := 1
			if kind == "refund" {
				paid++
				e.payThenCancel(t, 900)
			} else {
				e.place(t, "void-declined", 900)
			}
			if parked := e.waitParked(t, 1); parked[0].GetKind() != job {
				t.Fatalf("parked %v, want the %s job", parked, job)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("the provider was asked %d times to %s, want once: it declined", n, kind)
			}
			if e.mgr.Load().CircuitOpen() {
				t.Fatal("the circuit opened on a provider that answered every call")
			}
			id := e.place(t, "after-decline", 500)
			if got := e.waitFor(t, paid, "PaymentAuthorized"); len(got[id]) != 1 {
				t.Fatalf("the order placed after the declined %s: %v, want it paid", kind, got)
			}
		})
	}
}

// The provider took the money but answered with an error, and the order
// was cancelled before the retry: the retry finds it cancelled and voids
// the charge made under the job's key.
func TestAmbiguousChargeOfCancelledOrderIsVoided(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	gw.charge = func(_ context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool) {
		if n != 1 {
			return payments.ChargeResult{}, nil, false
		}
		if _, err := sim.Charge(context.Background(), req); err != nil {
			t.Error(err)
		}
		e.cancel(t, req.OrderID)
		return payments.ChargeResult{}, errors.New("provider: connection reset after the request was sent"), true
	}
	e.run(t, gw, fast())
	e.place(t, "reset", 500)
	e.waitStats(t, "void", func(s payments.Stats) bool { return s.Voided == 1 })
	assertVoidedOnce(t, sim)
	if gw.chargeCalls.Load() != 1 {
		t.Fatalf("%d charge calls after the cancellation was seen, want 1", gw.chargeCalls.Load())
	}
}

// Decline reasons the order would refuse as text (control characters,
// overlong) are made recordable rather than lost.
func TestAnyDeclineReasonIsRecorded(t *testing.T) {
	for name, reason := range map[string]string{
		"newline":   "do not honour\nissuer code 05",
		"multibyte": strings.Repeat("é", 300),
		"invalid":   "bad \xff byte",
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			e.run(t, &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{}), decline: reason}, fast())
			id := e.place(t, "declined", 500)
			got := e.waitFor(t, 1, "PaymentDeclined", "PaymentAuthorized")
			if len(got[id]) != 1 || got[id][0] != "PaymentDeclined" {
				t.Fatalf("order %s: %v", id, got)
			}
		})
	}
}

// refusing is a command client whose RecordPayment fails as long as refuse
// is set, as with a wrong PAYMENTS_TOKEN, and whose RecordRefund fails as
// long as refuseRefunds is.
type refusing struct {
	ordersv1.OrderCommandServiceClient
	refuse, refuseRefunds atomic.Bool
}

func (r *refusing) RecordPayment(ctx context.Context, in *ordersv1.RecordPaymentRequest, opts ...grpc.CallOption) (*ordersv1.RecordPaymentResponse, error) {
	if r.refuse.Load() {
		return nil, status.Error(codes.PermissionDenied, "not allowed")
	}
	return r.OrderCommandServiceClient.RecordPayment(ctx, in, opts...)
}

func (r *refusing) RecordRefund(ctx context.Context, in *ordersv1.RecordRefundRequest, opts ...grpc.CallOption) (*ordersv1.RecordRefundResponse, error) {
	if r.refuseRefunds.Load() {
		return nil, status.Error(codes.PermissionDenied, "not allowed")
	}
	return r.OrderCommandServiceClient.RecordRefund(ctx, in, opts...)
}

// A charge the command side will not record is parked, not acknowledged
// as done; retrying it while the refusal lasts keeps it parked; once the
// refusal ends a retry records it, and the order was charged once.
func TestUnrecordedChargeIsParkedNotLost(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	cmds := &refusing{OrderCommandServiceClient: e.cmd}
	cmds.refuse.Store(true)
	e.runRecording(t, e.store, cmds, sim, payments.WithRetry(3, time.Second, time.Millisecond, 2*time.Millisecond))

	id := e.place(t, "refused", 800)
	e.waitStats(t, "parked", func(s payments.Stats) bool { return s.Parked == 1 })
	res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 0 || res.GetParkedAgain() != 1 {
		t.Fatalf("retry while refused: %v %v", res, err)
	}
	if p, err := e.admin.ListParkedPayments(ctx, &ordersv1.ListParkedPaymentsRequest{}); err != nil || len(p.GetParked()) != 1 {
		t.Fatalf("parked after a failed retry: %v %v", p, err)
	}
	cmds.refuse.Store(false)
	res, err = e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 1 {
		t.Fatalf("retry: %v %v", res, err)
	}
	got := e.waitFor(t, 1, "PaymentAuthorized")
	if len(got[id]) != 1 {
		t.Fatalf("order %s: %v", id, got)
	}
	assertChargedOnce(t, sim, 1)
}

// Jobs that run longer than the consumer's AckWait (here against a
// provider that hangs until each attempt times out) are neither delivered
// twice nor run twice at once: only as many messages as workers are
// outstanding, and running jobs signal progress.
func TestLongJobsAreNotRedelivered(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out an AckWait")
	}
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	// AckWait is max(3×300ms, 1s) = 1s; the provider hangs for 2.5 s, so
	// the first jobs run more than twice that long.
	const hang = 2500 * time.Millisecond
	var once sync.Once
	var first time.Time
	gw := &scripted{Simulator: sim}
	gw.charge = func(ctx context.Context, _ int32, _ payments.ChargeRequest) (payments.ChargeResult, error, bool) {
		once.Do(func() { first = time.Now() })
		if time.Since(first) < hang {
			<-ctx.Done() // the attempt timeout
			return payments.ChargeResult{}, ctx.Err(), true
		}
		return payments.ChargeResult{}, nil, false
	}
	e.run(t, gw, payments.WithWorkers(2), payments.WithRetry(100, 300*time.Millisecond, time.Millisecond, 2*time.Millisecond), payments.WithCircuit(1000, 10*time.Millisecond))
	for i := range 4 {
		e.place(t, fmt.Sprint("slow-", i), 100)
	}
	e.waitFor(t, 4, "PaymentAuthorized")
	cons, err := e.js.Consumer(t.Context(), e.store.StreamName(), payments.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 {
		t.Fatalf("%d messages redelivered while their jobs ran", info.NumRedelivered)
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.maxConc != 1 {
		t.Fatalf("a charge key was in flight %d times at once", gw.maxConc)
	}
	// The counters move after the recording returns, so just after the
	// log shows the fourth event.
	if st := e.waitStats(t, "four charges counted", func(st payments.Stats) bool { return st.Charged == 4 }); st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	assertChargedOnce(t, sim, 4)
}

// A charge that goes through on the job's last attempt, for an order
// cancelled while the charge was at the provider, is voided as one taken
// on an earlier attempt is: the command side's refusal to record it says
// that the order moved on, not that the payment failed. Counted as a
// failed attempt, it used up the budget and parked the job, the customer's
// money held on a cancelled order until an operator retried it.
func TestChargeOnTheLastAttemptOfAnOrderCancelledMeanwhileIsVoided(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	const attempts = 3
	gw.charge = func(_ context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool) {
		switch {
		case n < attempts:
			return payments.ChargeResult{}, errors.New("provider: temporarily unavailable"), true
		case n == attempts:
			e.cancel(t, req.OrderID)
		}
		return payments.ChargeResult{}, nil, false
	}
	e.run(t, gw, payments.WithRetry(attempts, time.Second, time.Millisecond, 5*time.Millisecond), payments.WithCircuit(1000, 10*time.Millisecond))
	e.place(t, "last-attempt-cancel", 500)
	st := e.waitStats(t, "the job's end", func(s payments.Stats) bool { return s.Voided+s.Parked > 0 })
	if st.Parked != 0 || st.Voided != 1 {
		t.Fatalf("stats %+v: want the charge voided, nothing parked", st)
	}
	assertVoidedOnce(t, sim)
}
