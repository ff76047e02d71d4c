package deadlines_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/services/deadlines"
)

const (
	overduePrefix       = deadlines.SubjectRoot + ".overdue."
	shippingSchedPrefix = deadlines.SubjectRoot + ".schedule.shipping_sla."
)

// shipBeforeOverdue is the DEADLINES stream with the losing interleaving of
// a shipment and an overdue marker forced: the first marker is put only
// after its order was shipped and the log follower had handled the
// OrderShipped (its purge finding no marker yet).
type shipBeforeOverdue struct {
	*schedule.Stream
	t *testing.T
	e *env

	// failOwnPurge fails the next purge of a marker alone (the firing
	// handler's; the follower purges a schedule with it).
	failOwnPurge   atomic.Bool
	ownPurgeFailed atomic.Bool

	raced      atomic.Bool // the shipment was forced in before a Put
	shipOnce   sync.Once
	purged     chan struct{} // closed when the follower has handled OrderShipped
	purgedOnce sync.Once
}

func newShipBeforeOverdue(t *testing.T, e *env) *shipBeforeOverdue {
	return &shipBeforeOverdue{Stream: e.timers(t), t: t, e: e, purged: make(chan struct{})}
}

func (w *shipBeforeOverdue) Put(ctx context.Context, subject string, data []byte) error {
	if id, ok := strings.CutPrefix(subject, overduePrefix); ok {
		w.shipOnce.Do(func() {
			if _, err := w.e.cmd.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: "race-ship-" + id, OrderId: id}); err != nil {
				w.t.Errorf("shipping %s: %v", id, err)
				return
			}
			select {
			case <-w.purged:
				w.raced.Store(true)
			case <-ctx.Done():
			}
		})
	}
	return w.Stream.Put(ctx, subject, data)
}

func (w *shipBeforeOverdue) Purge(ctx context.Context, subjects ...string) error {
	if len(subjects) == 1 && strings.HasPrefix(subjects[0], overduePrefix) && w.failOwnPurge.CompareAndSwap(true, false) {
		w.ownPurgeFailed.Store(true)
		return errors.New("injected: purge lost")
	}
	err := w.Stream.Purge(ctx, subjects...)
	if err == nil && slices.ContainsFunc(subjects, func(s string) bool { return strings.HasPrefix(s, shippingSchedPrefix) }) {
		w.purgedOnce.Do(func() { close(w.purged) })
	}
	return err
}

// firingsSettled waits until the manager has acknowledged every shipping
// SLA's firing delivered to it, none being left to deliver.
func firingsSettled(t *testing.T, e *env) {
	t.Helper()
	consumerReaches(t, e, deadlines.StreamName, deadlines.ShippingFiredConsumer, "the firings were never all acknowledged", func(info *jetstream.ConsumerInfo) bool {
		return info.Delivered.Consumer > 0 && info.AckFloor.Consumer == info.Delivered.Consumer && info.NumAckPending == 0 && info.NumPending == 0
	})
}

// noOverdue checks what the operator sees: no overdue shipment listed for
// id and none counted by the gauge.
func noOverdue(t *testing.T, m *deadlines.Manager, timers *schedule.Stream, id string) {
	t.Helper()
	res, err := deadlines.NewAdmin(m, nil).ListDeadlines(t.Context(), &ordersv1.ListDeadlinesRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.GetDeadlines() {
		if d.GetOverdue() {
			t.Errorf("order %s shipped but listed overdue: %v", id, d)
		}
	}
	if n, err := timers.CountSubjects(t.Context(), overduePrefix+">"); err != nil || n != 0 {
		t.Errorf("overdue markers counted by the gauge: %d, %v; want 0", n, err)
	}
}

// TestShipmentRacingOverdueMarkerLeavesNoMarker: the order ships after the
// shipping-SLA firing read it paid but before the overdue marker is
// written, and the follower's purge for the shipment finds nothing yet.
// Once the firing is handled, no marker is left.
func TestShipmentRacingOverdueMarkerLeavesNoMarker(t *testing.T) {
	e := start(t)
	timers := newShipBeforeOverdue(t, e)
	m, _ := e.runTimers(t, timers, time.Hour, time.Second)
	id := e.place(t, "race-ship")
	e.pay(t, id)
	firingsSettled(t, e)
	if !timers.raced.Load() {
		t.Fatal("the shipment was not forced in before the marker")
	}
	noOverdue(t, m, timers.Stream, id)
}

// TestOverdueMarkerOfAFailedRecheckIsPurgedOnRedelivery: as above, but the
// handler's own purge of the marker fails; the firing is redelivered and
// its handling, finding the order shipped, purges the marker.
func TestOverdueMarkerOfAFailedRecheckIsPurgedOnRedelivery(t *testing.T) {
	e := start(t)
	timers := newShipBeforeOverdue(t, e)
	timers.failOwnPurge.Store(true)
	m, _ := e.runTimers(t, timers, time.Hour, time.Second)
	id := e.place(t, "race-ship-fail")
	e.pay(t, id)
	firingsSettled(t, e)
	if !timers.raced.Load() || !timers.ownPurgeFailed.Load() {
		t.Fatalf("raced %v, own purge failed %v; want both", timers.raced.Load(), timers.ownPurgeFailed.Load())
	}
	noOverdue(t, m, timers.Stream, id)
}
