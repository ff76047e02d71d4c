package payments_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
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
	e.run(t, gw, payments.WithWorkers(1), payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond),
		payments.WithCircuit(1, time.Second))
	e.place(t, "cust-a", 100)
	b := e.place(t, "cust-b", 200)
	e.waitStats(t, "both charges parked", func(s payments.Stats) bool { return s.Parked == 2 })
	if parkedMaybeCharged(t, e, b) {
		t.Skip("the second order's charge reached the provider before parking (a slow run): nothing to show")
	}
	sim.SetDown(false)

	// Retry until the circuit lets a charge through: that charge takes
	// the money and the caller gives up before it is recorded.
	m := e.mgr.Load()
	var reached atomic.Bool
	for !reached.Load() {
		ctx, cancel := context.WithCancel(t.Context())
		cut := func(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
			reached.Store(true)
			if _, err := sim.Charge(ctx, req); err != nil {
				return payments.ChargeResult{}, err
			}
			cancel()
			return payments.ChargeResult{}, errors.New("connection reset after the charge was sent")
		}
		gw.charge.Store(&cut)
		_, _, err := m.Retry(ctx, b)
		cancel()
		if !reached.Load() {
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
