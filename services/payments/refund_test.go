package payments_test

import (
	"context"
	"math"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// A refund job parked after failures whose order an operator then refunds
// at the till may have refunded too (a failure does not say whether the
// provider made the refund): a retry parks it again, for the operator to
// check with the provider, and once they settled it by hand
// SettleParkedPayment removes it. Before, no call could remove it: every
// retry parked it again, and the parked gauge never came down.
func TestParkedRefundSettledByHandLeavesThePark(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	gw := &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})}
	id := parkedRefund(t, e, gw, gw)
	if _, err := e.cmd.RecordRefund(ctx, &ordersv1.RecordRefundRequest{RequestId: "till-refund-" + id, OrderId: id, RefundRef: "till-1", Amount: 1300}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id}); err != nil || res.GetParkedAgain() != 1 {
		t.Fatalf("retry of a refund that may have been made twice: %v, %v; want it parked again", res, err)
	}
	for name, req := range map[string]*ordersv1.SettleParkedPaymentRequest{
		"no kind":      {OrderId: id},
		"unknown kind": {OrderId: id, Kind: ordersv1.PaymentJobKind(7)},
		"bad order id": {OrderId: "bad id", Kind: ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND},
		"no order id":  {Kind: ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND},
	} {
		if _, err := e.admin.SettleParkedPayment(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("settle with %s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if _, err := e.admin.SettleParkedPayment(ctx, &ordersv1.SettleParkedPaymentRequest{OrderId: id, Kind: ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_CHARGE}); status.Code(err) != codes.NotFound {
		t.Errorf("settle of a charge that is not parked: %v, want NOT_FOUND", err)
	}
	res, err := e.admin.SettleParkedPayment(ctx, settleRefund(id))
	if err != nil || res.GetSettled().GetOrderId() != id || res.GetSettled().GetKind() != ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND {
		t.Fatalf("settle: %v, %v", res, err)
	}
	e.waitParked(t, 0)
	if n := e.mgr.Load().ParkedNow(); n != 0 {
		t.Errorf("parked gauge %d after the settle, want 0", n)
	}
	if _, err := e.admin.SettleParkedPayment(ctx, settleRefund(id)); status.Code(err) != codes.NotFound {
		t.Errorf("settle again: %v, want NOT_FOUND", err)
	}
}
