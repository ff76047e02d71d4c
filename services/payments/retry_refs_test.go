package payments_test

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
)

// A charge the command side refused to record is parked with its
// reference; a clerk then records the order paid under another reference.
// An operator's retry voids the parked charge (chargeNotRecorded), as the
// live job would. Retry's fresh job dropped PaymentRef, so it read as a
// redelivery ("unknown reference") and the charge stood: paid twice.
func TestRetryOfParkedChargePaidOtherwiseVoids(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	cmds := &refusing{OrderCommandServiceClient: e.cmd}
	cmds.refuse.Store(true)
	e.runRecording(t, e.store, cmds, sim, payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond))

	id := e.place(t, "parked-then-paid", 800)
	e.waitStats(t, "parked", func(s payments.Stats) bool { return s.Parked == 1 })
	// A clerk records a payment taken at the till.
	if _, err := e.cmd.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: "till-" + id[:8], OrderId: id,
		Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "till-42", Amount: 800, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id}); err != nil {
		t.Fatal(err)
	}
	charged, voided := sim.Charged(), sim.Voided()
	if len(charged) == 0 {
		t.Fatal("the provider took no charge: nothing to void")
	}
	for k, n := range charged {
		if n > 0 && voided[k] == 0 {
			t.Fatalf("order %s paid at the till; the parked charge %s was retried and never voided (voided %v, stats %+v)", id, k, voided, e.mgr.Load().Stats())
		}
	}
}

// The refund twin: a refund made but refused recording is parked with its
// RefundRef; a clerk then records a refund taken at the till. The
// operator's retry keeps it parked (the customer was refunded twice,
// errSettleByHand). Retry's fresh job had no RefundRef: the job
// "completed" and left the park, and nobody was told.
func TestRetryOfParkedRefundRefundedOtherwiseStaysParked(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	cmds := &refusing{OrderCommandServiceClient: e.cmd}
	cmds.refuseRefunds.Store(true)
	e.runRecording(t, e.store, cmds, sim, payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond))

	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)
	if _, err := e.cmd.RecordRefund(ctx, &ordersv1.RecordRefundRequest{RequestId: "till-refund-" + id, OrderId: id, RefundRef: "till-1", Amount: 1300}); err != nil {
		t.Fatal(err)
	}
	res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetCompleted() != 0 || res.GetParkedAgain() != 1 {
		t.Fatalf("retry of a refund made twice (manager's and the till's): %v; the double refund left the park unreported", res)
	}
}
