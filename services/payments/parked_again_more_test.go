package payments_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/services/payments"
)

// The record sent.<kind>.<order>.<position> of a parked job whose ack was
// lost (left for the delivery again) is removed by that delivery, which
// leaves the job parked: README and ARCHITECTURE say it is removed once
// the job is done or parked. It stayed for good.
func TestSentRecordOfAParkedJobWhoseAckWasLostIsRemoved(t *testing.T) {
	e := start(t)
	gw := &forgetful{lifetime: time.Hour, first: map[string]time.Time{}, refs: map[string]string{}}
	e.runOn(t, &losesFirstAck{Store: e.store, typ: "OrderPlaced"}, gw, fast(),
		payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithAckWait(time.Second))
	id := e.place(t, "sent-record", 100)
	e.waitParked(t, 1)
	waitHandled(t, e) // the delivery again, after the ack wait
	gw.up()
	res, err := e.admin.RetryParkedPayment(t.Context(), &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 1 {
		t.Fatalf("retry: %v %v", res, err)
	}
	e.waitParked(t, 0)
	keys, err := parkedBucket(t, e.js).Keys(t.Context())
	if err != nil && !errors.Is(err, bucket.ErrNotFound) {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "sent.") {
			t.Fatalf("the job is done, yet the bucket still holds %s (keys %v)", k, keys)
		}
	}
}

// failsGetOnce fails the next Get of a parked job's key (of a sent.*
// record, with sent) once armed.
type failsGetOnce struct {
	*bucket.Bucket
	sent  bool
	armed atomic.Bool
}

func (f *failsGetOnce) Get(ctx context.Context, key string) ([]byte, error) {
	if strings.HasPrefix(key, "sent.") == f.sent && f.armed.CompareAndSwap(true, false) {
		return nil, errors.New("nats: timeout")
	}
	return f.Bucket.Get(ctx, key)
}

// A delivery again whose read of the parked jobs fails once (a leader
// election, a timeout) reads them again, and leaves its parked job parked.
// It ran, and refunded beside the parked job.
func TestDeliveryAgainThatCannotReadTheParkedJobsMovesNoMoney(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	gw.failRefunds.Store(math.MaxInt32)
	kv := &failsGetOnce{Bucket: parkedBucket(t, e.js)}
	e.runParked(t, &losesFirstAck{Store: e.store, typ: "OrderCancelled"}, kv, e.cmd, gw, fast(),
		payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithAckWait(time.Second))
	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)
	kv.armed.Store(true)    // one read of the bucket fails (a leader election, a timeout)
	gw.failRefunds.Store(0) // a delivery again that ran the job would refund now
	waitHandled(t, e)
	if n := refundsOf(sim, id); n != 0 {
		t.Fatalf("the delivery again of the parked job refunded %d time(s) after one failed bucket read; want it left parked", n)
	}
}
