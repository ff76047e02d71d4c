package payments_test

import (
	"math"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
)

// A job parked by a delivery whose acknowledgement was lost is delivered
// again: the delivery leaves it parked, the operator's to retry or settle,
// and moves no money. It ran the job again: a refund by hand and a settle
// of the parked job, as the job asked, then refunded the customer twice,
// the second time after the settle was accepted (the settle takes the
// lease a retry holds, and a delivery takes none); and a charge delivered
// again while a retry held the job dropped when its key went out, so a
// later retry past the key's lifetime could charge twice.
func TestDeliveryAgainOfAParkedJobLeavesItToTheOperator(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	gw.failRefunds.Store(math.MaxInt32)
	e.runOn(t, &losesFirstAck{Store: e.store, typ: "OrderCancelled"}, gw, fast(),
		payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithAckWait(time.Second))
	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)      // parked, its ack lost: delivered again after the ack wait
	gw.failRefunds.Store(0) // a delivery again that ran the job would refund now
	waitHandled(t, e)
	refunds := func() int { return refundsOf(sim, id) }
	if n := refunds(); n != 0 {
		t.Fatalf("the delivery again of the parked job refunded %d time(s); want the job left parked", n)
	}
	e.waitParked(t, 1)
	// The operator refunds by hand, records it, and settles the job.
	if _, err := sim.Refund(ctx, payments.RefundRequest{IdempotencyKey: "by-hand:" + id, OrderID: id, Amount: 1300, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cmd.RecordRefund(ctx, &ordersv1.RecordRefundRequest{RequestId: "clerk-refund-" + id, OrderId: id, RefundRef: "by-hand-1", Amount: 1300}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.SettleParkedPayment(ctx, settleRefund(id)); err != nil {
		t.Fatalf("settle: %v", err)
	}
	e.waitParked(t, 0)
	if n := refunds(); n != 1 {
		t.Fatalf("the customer was refunded %d times, want once (by hand)", n)
	}
}

// refundsOf counts the refunds of order id the simulator made.
func refundsOf(sim *payments.Simulator, id string) int {
	n := 0
	for _, mv := range sim.Movements() {
		if mv.Kind == "refund" && mv.OrderID == id {
			n++
		}
	}
	return n
}
