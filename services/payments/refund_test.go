package payments_test

import (
	"context"
	"math"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
)

// waitParked polls the admin API, as an operator would, until n jobs are
// parked, and returns them.
func (e *env) waitParked(tb testing.TB, n int) []*ordersv1.ParkedPayment {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := e.admin.ListParkedPayments(context.Background(), &ordersv1.ListParkedPaymentsRequest{})
		if err != nil {
			tb.Fatal(err)
		}
		if len(res.GetParked()) == n {
			return res.GetParked()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d parked jobs, want %d: %v", len(res.GetParked()), n, res.GetParked())
		}
		time.Sleep(10 * time.Millisecond) // polling the admin API
	}
}

// payThenCancel places an order, waits until it is paid, and cancels it.
func (e *env) payThenCancel(tb testing.TB, amount int64) string {
	tb.Helper()
	id := e.place(tb, "refundee", amount)
	if got := e.waitFor(tb, 1, "PaymentAuthorized"); len(got[id]) != 1 {
		tb.Fatalf("payments: %v", got)
	}
	if _, err := e.cmd.CancelOrder(context.Background(), &ordersv1.CancelOrderRequest{RequestId: "cancel-" + id, OrderId: id, Reason: "changed mind"}); err != nil {
		tb.Fatal(err)
	}
	return id
}

// assertRefundedOnce checks that the order got exactly one refund of
// amount, in the log and at the provider.
func assertRefundedOnce(t *testing.T, e *env, sim *payments.Simulator, id string, amount int64) {
	t.Helper()
	if n := e.outcomes(t, id, "RefundIssued"); n != 1 {
		t.Fatalf("order %s: %d RefundIssued events, want 1", id, n)
	}
	var refunds []payments.Movement
	for _, mv := range sim.Movements() {
		if mv.Kind == "refund" {
			refunds = append(refunds, mv)
		}
	}
	if len(refunds) != 1 || refunds[0].OrderID != id || refunds[0].Amount != amount {
		t.Fatalf("refunds at the provider: %+v, want one of %d for %s", refunds, amount, id)
	}
}

// Cancelling a paid order refunds it. The first refund call fails before
// reaching the provider and the second makes the refund but loses its
// answer: the job retries with the same key, gets the refund made by the
// second call, and records RefundIssued once.
func TestRefundRetriedAfterTransientFailures(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	gw.failRefunds.Store(1)
	gw.loseRefunds.Store(1)
	e.run(t, gw, fast())
	id := e.payThenCancel(t, 4200)
	e.waitFor(t, 1, "RefundIssued")
	e.waitStats(t, "refund counted", func(s payments.Stats) bool { return s.Refunded == 1 })
	if n := gw.refundCalls.Load(); n != 3 {
		t.Fatalf("%d refund calls, want 3 (a failure, a lost answer, a success)", n)
	}
	assertRefundedOnce(t, e, sim, id, 4200)
	assertChargedOnce(t, sim, 1)
}

// A refund that keeps failing is parked after its attempts, listed by the
// admin API, kept parked by a retry while the provider still fails, and
// completed by a retry once the provider works.
func TestFailingRefundIsParkedAndRetriedOnDemand(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	gw.failRefunds.Store(math.MaxInt32)
	e.run(t, gw, fast(), payments.WithRetry(3, time.Second, time.Millisecond, 2*time.Millisecond))
	id := e.payThenCancel(t, 900)
	parked := e.waitParked(t, 1)
	if p := parked[0]; p.GetOrderId() != id || p.GetKind() != ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND || p.GetAttempts() != 3 || p.GetLastError() == "" {
		t.Fatalf("parked job %v", p)
	}
	if n := gw.refundCalls.Load(); n != 3 {
		t.Fatalf("%d refund calls before parking, want 3", n)
	}
	res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 0 || res.GetParkedAgain() != 1 {
		t.Fatalf("retry while failing: %v %v", res, err)
	}
	e.waitParked(t, 1)
	gw.failRefunds.Store(0)
	res, err = e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 1 || res.GetParkedAgain() != 0 {
		t.Fatalf("retry: %v %v", res, err)
	}
	e.waitFor(t, 1, "RefundIssued")
	e.waitParked(t, 0)
	assertRefundedOnce(t, e, sim, id, 900)
}
