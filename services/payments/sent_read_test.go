package payments_test

import (
	"math"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
)

// One failed read of the record of when the key went out is tried again,
// as a failed read of the parked jobs is: it made a delivery again of a
// parked refund job run it, refunding beside the parked job, which the
// operator then refunded by hand as well.
func TestOneFailedReadOfTheSentRecordDoesNotRunAParkedJob(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{KeyTTL: time.Hour})
	gw := &scripted{Simulator: sim}
	var made atomic.Int32
	gw.refunded = func(payments.RefundRequest) { made.Add(1) }
	gw.failRefunds.Store(math.MaxInt32)
	kv := &failsGetOnce{Bucket: parkedBucket(t, e.js), sent: true}
	e.runParked(t, &losesFirstAck{Store: e.store, typ: "OrderCancelled"}, kv, e.cmd, gw, fast(),
		payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithAckWait(time.Second))
	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)
	kv.armed.Store(true)    // one read of the sent record fails
	gw.failRefunds.Store(0) // a delivery again that ran the job would refund now
	for deadline := time.Now().Add(10 * time.Second); kv.armed.Load() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	waitHandled(t, e)
	refunds := func() int {
		return int(made.Load())
	}
	e.waitParked(t, 1)
	t.Logf("after the delivery again: refunds %d, job still parked", refunds())
	// The operator refunds by hand and settles the parked job, as it asks.
	if _, err := sim.Refund(t.Context(), payments.RefundRequest{IdempotencyKey: "by-hand:" + id, OrderID: id, Amount: 1300, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	made.Add(1)
	_, _ = e.cmd.RecordRefund(t.Context(), &ordersv1.RecordRefundRequest{RequestId: "clerk-refund-" + id, OrderId: id, RefundRef: "by-hand-1", Amount: 1300})
	if _, err := e.admin.SettleParkedPayment(t.Context(), settleRefund(id)); err != nil {
		t.Fatalf("settle: %v", err)
	}
	if n := refunds(); n != 1 {
		t.Fatalf("the customer was refunded %d times, want once (by hand): one failed read of the sent record ran the parked job", n)
	}
}
