package payments_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc"
)

// hookedGateway is a Simulator whose charges a test can take over.
type hookedGateway struct {
	*payments.Simulator
	charge atomic.Pointer[func(context.Context, payments.ChargeRequest) (payments.ChargeResult, error)]
}

func (g *hookedGateway) Charge(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	if h := g.charge.Load(); h != nil {
		return (*h)(ctx, req)
	}
	return g.Simulator.Charge(ctx, req)
}

// A retry of a parked charge that the caller's context cuts short after
// the provider took the money, before the outcome is recorded, leaves the
// parked job saying that money may have been taken; so once the order is
// cancelled, the next retry voids the charge instead of dropping the job
// as one that never reached the provider.
func TestAnInterruptedRetryKeepsWhatItMayHaveCharged(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{Seed: 1})
	sim.SetDown(true)
	gw := &hookedGateway{Simulator: sim}
	// One worker and a circuit that opens at the first failure: the first
	// order's charge fails at the provider and opens it, and the second
	// order's attempts are refused by the open circuit, so its job is
	// parked without ever reaching the provider.
	// The first order's charge is held until the second order is
	// placed, so that the circuit's cool-down does not run out while the
	// second order is made; which orders reached the provider is kept.
	var reached sync.Map
	placed := make(chan struct{})
	held := func(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
		reached.Store(req.OrderID, true)
		select {
		case <-placed:
		case <-ctx.Done():
		}
		return sim.Charge(ctx, req)
	}
	gw.charge.Store(&held)
	e.run(t, gw, payments.WithWorkers(1), payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond),
		payments.WithCircuit(1, time.Second))
	e.place(t, "cust-a", 100)
	b := e.place(t, "cust-b", 200)
	close(placed)
	e.waitStats(t, "both charges parked", func(s payments.Stats) bool { return s.Parked == 2 })
	if parkedMaybeCharged(t, e, b) {
		if _, ok := reached.Load(b); !ok {
			t.Fatal("the second order's charge never reached the provider, yet its parked job says money may have been taken")
		}
		t.Skip("the second order's charge reached the provider before parking (a slow run): nothing to show")
	}
	sim.SetDown(false)

	// Retry until the circuit lets a charge through: that charge takes
	// the money and the caller gives up before it is recorded.
	m := e.mgr.Load()
	var through atomic.Bool
	for !through.Load() {
		ctx, cancel := context.WithCancel(t.Context())
		cut := func(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
			through.Store(true)
			if _, err := sim.Charge(ctx, req); err != nil {
				return payments.ChargeResult{}, err
			}
			cancel()
			return payments.ChargeResult{}, errors.New("connection reset after the charge was sent")
		}
		gw.charge.Store(&cut)
		_, _, err := m.Retry(ctx, b)
		cancel()
		if !through.Load() {
			if err != nil {
				t.Fatalf("Retry while the circuit is open: %v", err)
			}
			select { // the circuit's cool-down, a poll not a wait for it
			case <-t.Context().Done():
				t.Fatal(t.Context().Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	gw.charge.Store(nil)
	if !parkedMaybeCharged(t, e, b) {
		t.Fatal("after a retry cut short past the provider, the parked job does not say money may have been taken")
	}

	if _, err := e.cmd.CancelOrder(t.Context(), &ordersv1.CancelOrderRequest{RequestId: "cancel-" + b, OrderId: b}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Retry(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	var charged, voided int
	for _, mv := range sim.Movements() {
		if mv.OrderID == b {
			switch mv.Kind {
			case "charge":
				charged++
			case "void":
				voided++
			}
		}
	}
	if charged != 1 || voided != 1 {
		t.Fatalf("cancelled order %s: %d charges and %d voids, want the charge voided", b, charged, voided)
	}
}

// parkedMaybeCharged reports whether orderID's parked charge job says an
// attempt may have taken money; it fails t if no such job is parked.
func parkedMaybeCharged(t *testing.T, e *env, orderID string) bool {
	t.Helper()
	jobs, err := e.mgr.Load().Parked(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Kind == "charge" && j.OrderID == orderID {
			return j.MaybeCharged
		}
	}
	t.Fatalf("no charge job of %s is parked", orderID)
	return false
}

// failingStore fails the manager's reads of order histories while fail is
// set, with an error that is not an outage: a job then spends its attempts
// and is parked without ever reaching the provider.
type failingStore struct {
	*eventstore.Store
	fail atomic.Bool
}

func (s *failingStore) LoadLatestAfter(ctx context.Context, id string, after uint64) ([]eventstore.Recorded, error) {
	if s.fail.Load() {
		return nil, errors.New("order history unreadable")
	}
	return s.Store.LoadLatestAfter(ctx, id, after)
}

// A process that dies during a retry of a parked charge, after the
// provider took the money and before the outcome is recorded, runs no
// more code: what the bucket says at that moment is all the next retry
// learns. So the parked job must say that money may have been taken
// before the retry's charge reaches the provider; otherwise, once the
// order is cancelled, the next retry drops the job as never charged and
// the money is never given back.
func TestARetryMarksItsChargeBeforeReachingTheProvider(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &hookedGateway{Simulator: sim}
	store := &failingStore{Store: e.store}
	store.fail.Store(true)
	e.runOn(t, store, gw, payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond))
	id := e.place(t, "crash-in-retry", 300)
	e.waitStats(t, "charge parked", func(s payments.Stats) bool { return s.Parked == 1 })
	if maybe := parkedMaybeCharged(t, e, id); maybe || sim.Attempts() != 0 {
		t.Fatalf("parked with MaybeCharged %v after %d provider calls; want a job that never reached the provider", maybe, sim.Attempts())
	}
	store.fail.Store(false)

	// The retry's charge takes the money and then holds the retry there,
	// unrecorded: the moment a crash would freeze.
	taken, release := make(chan struct{}), make(chan struct{})
	hold := func(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
		res, err := sim.Charge(ctx, req)
		if err != nil {
			return res, err
		}
		close(taken)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return res, nil
	}
	gw.charge.Store(&hold)
	var (
		completed, parkedAgain int
		retryErr               error
	)
	retried := make(chan struct{})
	go func() {
		defer close(retried)
		completed, parkedAgain, retryErr = e.mgr.Load().Retry(t.Context(), id)
	}()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	// A test that stops early still lets the retry end before the servers
	// stop.
	t.Cleanup(func() { unblock(); <-retried })

	select {
	case <-taken:
	case <-retried:
		t.Fatalf("Retry returned (%d, %d, %v) before its charge reached the provider", completed, parkedAgain, retryErr)
	}
	if !parkedMaybeCharged(t, e, id) {
		t.Error("a retry's charge holds the money, unrecorded, and the parked job does not say money may have been taken: a crash now would lose it")
	}

	unblock()
	<-retried
	if retryErr != nil || completed != 1 || parkedAgain != 0 {
		t.Fatalf("Retry: %d completed, %d parked again, err %v; want the job completed", completed, parkedAgain, retryErr)
	}
	if got := e.waitFor(t, 1, "PaymentAuthorized"); len(got[id]) != 1 {
		t.Fatalf("order %s: %v", id, got)
	}
	assertChargedOnce(t, sim, 1)
	if jobs, err := e.mgr.Load().Parked(t.Context()); err != nil || len(jobs) != 0 {
		t.Fatalf("parked after the retry completed: %+v %v", jobs, err)
	}
}

// recordedThenCut is a command side whose RecordPayment, once it has
// recorded the payment, calls after: the caller of a retry giving up at
// that moment.
type recordedThenCut struct {
	ordersv1.OrderCommandServiceClient
	after atomic.Pointer[func()]
}

func (c *recordedThenCut) RecordPayment(ctx context.Context, in *ordersv1.RecordPaymentRequest, opts ...grpc.CallOption) (*ordersv1.RecordPaymentResponse, error) {
	res, err := c.OrderCommandServiceClient.RecordPayment(ctx, in, opts...)
	if f := c.after.Load(); err == nil && f != nil {
		(*f)()
	}
	return res, err
}

// A retry of a parked charge whose caller gives up once the payment is
// recorded has completed the job: it is no longer parked, and the retry
// says it completed. The job's entry was deleted under the caller's
// context, so the retry answered an error and the paid order stayed listed
// as parked until another retry dropped it.
func TestRetryCompletedAsItsCallerLeavesIsNotParked(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	cmds := &recordedThenCut{OrderCommandServiceClient: e.cmd}
	e.runRecording(t, e.store, cmds, sim, payments.WithRetry(1, time.Second, time.Millisecond, 2*time.Millisecond))
	id := e.place(t, "cut", 100)
	e.waitParked(t, 1)
	sim.SetDown(false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	leave := func() { cancel() }
	cmds.after.Store(&leave)
	completed, _, err := e.mgr.Load().Retry(ctx, id)
	cmds.after.Store(nil)
	if err != nil || completed != 1 {
		t.Fatalf("retry whose caller left once the payment was recorded: %d completed, %v; want 1 and no error", completed, err)
	}
	if jobs, err := e.mgr.Load().Parked(t.Context()); err != nil || len(jobs) != 0 {
		t.Fatalf("parked after the retry completed the job: %v, %v", jobs, err)
	}
}
