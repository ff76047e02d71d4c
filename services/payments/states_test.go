package payments_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/services/payments"
)

// countingStore counts the manager's reads of order histories: whole (from
// position 0) and after a folded state.
type countingStore struct {
	*eventstore.Store
	whole, after atomic.Int64
}

func (c *countingStore) LoadLatestAfter(ctx context.Context, id string, after uint64) ([]eventstore.Recorded, error) {
	if after == 0 {
		c.whole.Add(1)
	} else {
		c.after.Add(1)
	}
	return c.Store.LoadLatestAfter(ctx, id, after)
}

// Orders whose every event the manager was delivered are charged from the
// state folded from those deliveries: with one worker, which handles each
// order's events in log order, no job reads a whole history. With no
// states kept every job reads the whole history. With the default pool an
// order's events may be handled out of order, and its job then reads the
// whole history. All three charge each order's total once.
func TestJobsFoldTheDeliveredEvents(t *testing.T) {
	for _, c := range []struct {
		name          string
		opts          []payments.Option
		folds, wholes bool // every job reads after the folded state; every job reads the whole history
	}{
		{"one worker", []payments.Option{payments.WithWorkers(1)}, true, false},
		{"no states", []payments.Option{payments.WithStates(0)}, false, true},
		{"default", nil, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := start(t)
			store := &countingStore{Store: e.store}
			sim := payments.NewSimulator(payments.SimulatorConfig{})
			e.runOn(t, store, sim, append([]payments.Option{fast()}, c.opts...)...)
			const orders = 6
			want := map[string]int64{}
			for i := range orders {
				amount := int64(100 * (i + 1))
				want[e.place(t, "folded", amount)] = amount
			}
			e.waitFor(t, orders, "PaymentAuthorized")
			assertChargedOnce(t, sim, orders)
			for _, mv := range sim.Movements() {
				if mv.Kind == "charge" && mv.Amount != want[mv.OrderID] {
					t.Errorf("order %s charged %d, want %d", mv.OrderID, mv.Amount, want[mv.OrderID])
				}
			}
			whole, after := store.whole.Load(), store.after.Load()
			if c.folds && (whole != 0 || after < orders) {
				t.Errorf("%d whole-history reads and %d reads after the deliveries, want 0 and at least %d", whole, after, orders)
			}
			if c.wholes && (whole < orders || after != 0) {
				t.Errorf("%d whole-history reads and %d reads after the deliveries, want at least %d and 0", whole, after, orders)
			}
		})
	}
}

// A job decides on the order as the log has it, not as far as the manager
// was delivered: an order cancelled after it was placed, before the
// manager saw the cancellation, is not charged.
func TestJobSeesEventsNotYetDelivered(t *testing.T) {
	e := start(t)
	id := e.place(t, "undecided", 900)
	if _, err := e.cmd.CancelOrder(t.Context(), &ordersv1.CancelOrderRequest{RequestId: "cancel-undelivered", OrderId: id}); err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: e.store}
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	// One worker: the placement's job runs to its end before the
	// cancellation is handed to the manager.
	e.runOn(t, store, sim, fast(), payments.WithWorkers(1))
	deadline := time.Now().Add(10 * time.Second)
	for e.mgr.Load().Stats().Dropped == 0 { // the charge job, with nothing to charge
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the charge job of a cancelled order did not end", e.mgr.Load().Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if len(sim.Charged()) != 0 {
		t.Fatalf("a cancelled order was charged: %v", sim.Charged())
	}
	if store.whole.Load() != 0 {
		t.Fatalf("%d whole-history reads, want none", store.whole.Load())
	}
}
