package payments_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/payments"
)

// positionOfKey returns the placement position a charge key ends with.
func positionOfKey(key string) string { return key[strings.LastIndexByte(key, ':')+1:] }

// chargeWhileClerkRecords runs a manager whose first charge of an order,
// while at the provider, has a clerk record the payment clerk returns, and
// places one order of amount for customer. It returns the simulator, the
// order's id and the manager's stats once its job ended.
func chargeWhileClerkRecords(t *testing.T, e *env, customer string, amount int64, clerk func(payments.ChargeRequest) *ordersv1.RecordPaymentRequest) (*payments.Simulator, string, payments.Stats) {
	t.Helper()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &scripted{Simulator: sim}
	gw.charge = func(_ context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool) {
		if n == 1 {
			if _, err := e.cmd.RecordPayment(context.Background(), clerk(req)); err != nil {
				t.Errorf("clerk's recording: %v", err)
			}
		}
		return payments.ChargeResult{}, nil, false
	}
	e.run(t, gw, fast())
	id := e.place(t, customer, amount)
	st := e.waitStats(t, "job ended", func(s payments.Stats) bool { return s.Dropped+s.Voided+s.Parked+s.Charged > 0 })
	if len(sim.Charged()) == 0 {
		t.Fatalf("order %s: the provider took no charge, so nothing was raced; stats %+v", id, st)
	}
	return sim, id, st
}

// A clerk records a decline under the manager's own request id
// "pay:<placement position>" (RecordPayment accepts the reserved prefix)
// while the manager's charge is at the provider. The manager's recording
// of the charge is refused as REQUEST_ID_REUSED, and its next attempt reads
// the order as payment_declined: the charge is voided. The job was
// dropped, and the charge stood at the provider, neither recorded nor
// voided.
func TestChargeOfAnOrderDeclinedMeanwhileIsVoided(t *testing.T) {
	e := start(t)
	sim, id, st := chargeWhileClerkRecords(t, e, "clerk-race", 700, func(req payments.ChargeRequest) *ordersv1.RecordPaymentRequest {
		return &ordersv1.RecordPaymentRequest{RequestId: "pay:" + positionOfKey(req.IdempotencyKey), OrderId: req.OrderID,
			Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED, Reason: "card refused on the phone"}
	})
	charged, voided := sim.Charged(), sim.Voided()
	authorized := e.outcomes(t, id, "PaymentAuthorized")
	for k, n := range charged {
		if n > 0 && voided[k] == 0 && authorized == 0 {
			t.Fatalf("order %s: money taken under %s, never recorded (PaymentAuthorized %d) nor voided (%v); stats %+v",
				id, k, authorized, voided, st)
		}
	}
}

// The same without the reserved id: a clerk records a payment taken
// another way (AUTHORIZED, under a request id of their own) while the
// manager's charge is at the provider. The manager's recording is refused
// (the order is paid), and its next attempt reads the order as paid under
// another reference: its charge is voided. It was dropped, and the
// customer paid twice.
func TestChargeOfAnOrderPaidOtherwiseMeanwhileIsVoided(t *testing.T) {
	e := start(t)
	sim, id, st := chargeWhileClerkRecords(t, e, "clerk-paid", 700, func(req payments.ChargeRequest) *ordersv1.RecordPaymentRequest {
		return &ordersv1.RecordPaymentRequest{RequestId: "clerk-pay-" + req.OrderID[:8], OrderId: req.OrderID,
			Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "till-42", Amount: req.Amount, Currency: req.Currency}
	})
	charged, voided := sim.Charged(), sim.Voided()
	for k, n := range charged {
		if n > 0 && voided[k] == 0 {
			t.Fatalf("order %s: money taken under %s, recorded only as the clerk's payment (PaymentAuthorized %d) and never voided (%v); stats %+v",
				id, k, e.outcomes(t, id, "PaymentAuthorized"), voided, st)
		}
	}
}

// clerkRefundsOnce is a gateway's refunded hook that has a clerk record,
// at the first refund the provider makes, the order's refund as taken at
// the till.
func clerkRefundsOnce(t *testing.T, e *env) func(payments.RefundRequest) {
	var once sync.Once
	return func(req payments.RefundRequest) {
		once.Do(func() {
			if _, err := e.cmd.RecordRefund(context.Background(), &ordersv1.RecordRefundRequest{
				RequestId: "till-refund-" + req.OrderID, OrderId: req.OrderID, RefundRef: "till-1", Amount: req.Amount}); err != nil {
				t.Errorf("clerk's refund: %v", err)
			}
		})
	}
}

// takeThenLose has a scripted gateway's first charge take the money, run
// meanwhile, and lose its answer; the later ones fail as lost too, without
// reaching the provider, so that only a void can settle the job.
func takeThenLose(t *testing.T, sim *payments.Simulator, meanwhile func(payments.ChargeRequest)) *scripted {
	gw := &scripted{Simulator: sim}
	gw.charge = func(ctx context.Context, n int32, req payments.ChargeRequest) (payments.ChargeResult, error, bool) {
		if n == 1 {
			if _, err := sim.Charge(ctx, req); err != nil {
				t.Errorf("the charge: %v", err)
			}
			if meanwhile != nil {
				meanwhile(req)
			}
		}
		return payments.ChargeResult{}, errors.New("provider: connection reset before the answer arrived"), true
	}
	return gw
}

// tillPayment is a clerk's recording of a payment taken at the till.
func tillPayment(req payments.ChargeRequest) *ordersv1.RecordPaymentRequest {
	return &ordersv1.RecordPaymentRequest{RequestId: "till-pay-" + req.OrderID[:8], OrderId: req.OrderID,
		Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "till-7", Amount: req.Amount, Currency: req.Currency}
}

// assertNoChargeStands fails when money the provider took for the order
// was neither voided nor is the order's recorded payment.
func assertNoChargeStands(t *testing.T, e *env, sim *payments.Simulator, id string) {
	t.Helper()
	charged, voided := sim.Charged(), sim.Voided()
	for k, n := range charged {
		if n > 0 && voided[k] == 0 {
			t.Fatalf("order %s: money taken under %s stands, never voided, and the order records only the till's payment (PaymentAuthorized %d): the customer paid twice",
				id, k, e.outcomes(t, id, "PaymentAuthorized"))
		}
	}
}

// A charge that took the money but lost its answer, for an order a clerk
// meanwhile recorded as paid at the till: the job never learned its
// charge's reference, and took the order's payment for its own, so it
// dropped the job and the charge stood. The order's payment was recorded
// under another request id than the job's, so the charge is voided.
func TestLostChargeOfAnOrderPaidOtherwiseIsVoided(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := takeThenLose(t, sim, func(req payments.ChargeRequest) {
		if _, err := e.cmd.RecordPayment(context.Background(), tillPayment(req)); err != nil {
			t.Errorf("clerk's recording: %v", err)
		}
	})
	e.run(t, gw, fast())
	id := e.place(t, "lost-charge", 700)
	e.waitStats(t, "job ended", func(s payments.Stats) bool { return s.Dropped+s.Voided+s.Parked+s.Charged > 0 })
	assertNoChargeStands(t, e, sim, id)
}

// The same through a parked job: the charge took the money and every
// attempt lost its answer, so the job was parked; a clerk then records the
// till's payment, and the operator's retry voids the charge rather than
// dropping the job.
func TestParkedLostChargeRetriedAfterATillPaymentIsVoided(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	charged := make(chan payments.ChargeRequest, 1)
	gw := takeThenLose(t, sim, func(r payments.ChargeRequest) { charged <- r })
	e.run(t, gw, fast(), payments.WithRetry(3, time.Second, time.Millisecond, 2*time.Millisecond))
	id := e.place(t, "parked-charge", 900)
	e.waitParked(t, 1)
	if _, err := e.cmd.RecordPayment(t.Context(), tillPayment(<-charged)); err != nil {
		t.Fatal(err)
	}
	res, err := e.admin.RetryParkedPayment(t.Context(), &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 1 {
		t.Fatalf("retry: %v, %v", res, err)
	}
	assertNoChargeStands(t, e, sim, id)
}

// A refund the manager made while a clerk recorded the order's refund
// taken some other way (at the till) cannot be taken back: the job is
// parked at once, for an operator to settle with the provider, rather than
// dropped as done (the order no longer has a refund due) with the customer
// refunded twice and nobody told. So it is when the refund's answer was
// lost, and the job never learned its reference: it was dropped as done.
func TestRefundOfAnOrderRefundedOtherwiseMeanwhileIsParked(t *testing.T) {
	for name, lost := range map[string]int32{"answered": 0, "answer lost": 1} {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			sim := payments.NewSimulator(payments.SimulatorConfig{})
			gw := &scripted{Simulator: sim}
			gw.loseRefunds.Store(lost)
			gw.refunded = clerkRefundsOnce(t, e)
			e.run(t, gw, fast())
			id := e.payThenCancel(t, 1300)
			parked := e.waitParked(t, 1)
			if p := parked[0]; p.GetOrderId() != id || p.GetKind() != ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND || p.GetLastError() == "" {
				t.Fatalf("parked job %v", p)
			}
			if n := e.outcomes(t, id, "RefundIssued"); n != 1 {
				t.Fatalf("%d refunds recorded, want the clerk's", n)
			}
			if n := gw.refundCalls.Load(); n != 1 {
				t.Fatalf("%d refund calls, want the manager's one", n)
			}
		})
	}
}
