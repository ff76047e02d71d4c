package payments_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/services/payments"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// handsBackFirst hands the first delivery of the first OrderPlaced back
// unhandled (as a manager stopping before it ran the job does), so that
// the job comes as a delivery again; it counts deliveries of an event
// that arrive while another delivery of it is still being handled.
type handsBackFirst struct {
	payments.Store
	handedBack atomic.Bool
	mu         sync.Mutex
	inFlight   map[uint64]int
	overlaps   atomic.Int32
}

func (s *handsBackFirst) Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error {
	return s.Store.Subscribe(ctx, name, func(d eventstore.Delivery) {
		if d.Event.Type == "OrderPlaced" && s.handedBack.CompareAndSwap(false, true) {
			_ = d.Nak()
			return
		}
		s.mu.Lock()
		if s.inFlight[d.Event.Position] > 0 {
			s.overlaps.Add(1)
		}
		s.inFlight[d.Event.Position]++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight[d.Event.Position]--
			s.mu.Unlock()
		}()
		handle(d)
	}, opts...)
}

// slowOrFailingGet delays (slow) or fails (failing) Gets of parked jobs'
// keys (not of the sent.* records).
type slowOrFailingGet struct {
	*bucket.Bucket
	slowOnce atomic.Int64 // a delay for the next Get of a parked key, once
	failing  atomic.Bool
}

func (b *slowOrFailingGet) Get(ctx context.Context, key string) ([]byte, error) {
	if !strings.HasPrefix(key, "sent.") {
		if d := b.slowOnce.Swap(0); d > 0 {
			select {
			case <-time.After(time.Duration(d)):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if b.failing.Load() {
			return nil, errors.New("nats: timeout")
		}
	}
	return b.Bucket.Get(ctx, key)
}

// handle's promise: "a long backoff, a slow provider or a wait for the
// store never makes the server deliver it again". The read of the parked
// jobs by a delivery again, bounded by the attempt timeout (5 s by
// default) and not by the ack wait (2 s by default), ran before the
// progress heartbeat: a read slower than the ack wait had the server
// deliver the event again while the first handler still held it, and both
// ran the job.
func TestSlowParkedReadOfADeliveryAgainIsNotDeliveredAgainMeanwhile(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	store := &handsBackFirst{Store: e.store, inFlight: map[uint64]int{}}
	kv := &slowOrFailingGet{Bucket: parkedBucket(t, e.js)}
	kv.slowOnce.Store(int64(1500 * time.Millisecond)) // slower than the ack wait, within the attempt timeout
	e.runParked(t, store, kv, e.cmd, sim, fast(),
		payments.WithRetry(2, 3*time.Second, time.Millisecond, 2*time.Millisecond), payments.WithAckWait(time.Second))
	id := e.place(t, "slow-read", 100)
	e.waitFor(t, 1, "PaymentAuthorized")
	waitHandled(t, e)
	waitUntil(t, "every handler returned", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		for _, n := range store.inFlight {
			if n > 0 {
				return false
			}
		}
		return true
	})
	if n := store.overlaps.Load(); n != 0 {
		t.Fatalf("order %s: the event was delivered again %d time(s) while a handler still held it (its parked-entry read outlasted the ack wait, with no progress sent); the job ran %+v",
			id, n, e.mgr.Load().Stats())
	}
}

// A delivery again whose reads of the parked jobs keep failing runs its
// job after a few (a provider without key lifetimes needs no bucket to
// charge). It was handed back for as long as the bucket failed, with a
// warning and nothing else: not run, not parked, not counted in
// orders.payments.jobs_waiting and never raising the outage alert.
func TestDeliveryAgainThatCannotReadTheBucketRuns(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{}) // no key lifetime: nothing of the job needs the bucket
	store := &handsBackFirst{Store: e.store, inFlight: map[uint64]int{}}
	kv := &slowOrFailingGet{Bucket: parkedBucket(t, e.js)}
	kv.failing.Store(true)
	reader := sdkmetric.NewManualReader()
	e.runParked(t, store, kv, e.cmd, sim, fast(), payments.WithAckWait(200*time.Millisecond),
		payments.WithOutageLimit(300*time.Millisecond), withReader(reader))
	id := e.place(t, "bucket-down", 100)
	deadline := time.Now().Add(5 * time.Second) // over ten outage limits
	for time.Now().Before(deadline) {
		if e.outcomes(t, id, "PaymentAuthorized") > 0 ||
			metricValue(t, reader, "orders.payments.outage_alerts") > 0 || metricValue(t, reader, "orders.payments.jobs_waiting") > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("order %s: after 5 s (outage limit 300 ms) of a failing bucket the job was neither run, nor counted waiting, nor alerted on (outage_alerts %d, jobs_waiting %d, parked %d)",
		id, metricValue(t, reader, "orders.payments.outage_alerts"), metricValue(t, reader, "orders.payments.jobs_waiting"), e.mgr.Load().ParkedNow())
}

// Deliveries again handed back while the bucket failed held the
// consumer's pending slots (MaxPending = workers) through each delay: with
// as many of them as workers, no later event was delivered, though a
// first delivery of a charge needs no bucket read (a provider without key
// lifetimes).
func TestDeliveryAgainThatCannotReadTheBucketDoesNotStallLaterJobs(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	store := &handsBackFirst{Store: e.store, inFlight: map[uint64]int{}}
	kv := &slowOrFailingGet{Bucket: parkedBucket(t, e.js)}
	kv.failing.Store(true)
	e.runParked(t, store, kv, e.cmd, sim, fast(), payments.WithWorkers(1), payments.WithAckWait(200*time.Millisecond))
	e.place(t, "handed-back", 100)
	later := e.place(t, "later", 100)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if e.outcomes(t, later, "PaymentAuthorized") > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("order %s (a first delivery, needing no bucket) not paid after 5 s: the delivery again in the Nak loop holds the only pending slot", later)
}
