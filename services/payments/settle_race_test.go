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

// heldRefunds holds each refund call that reaches the provider until
// release is closed, saying so on entered.
type heldRefunds struct {
	*scripted
	entered, release chan struct{}
}

func (g *heldRefunds) Refund(ctx context.Context, req payments.RefundRequest) (payments.RefundResult, error) {
	if g.failRefunds.Load() <= 0 {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		<-g.release
	}
	return g.scripted.Refund(ctx, req)
}

// parkedRefund parks a refund job of an order paid 1300 and cancelled,
// against gw, and returns the order's id.
func parkedRefund(t *testing.T, e *env, gw payments.Provider, failing *scripted) string {
	failing.failRefunds.Store(math.MaxInt32)
	e.run(t, gw, fast(), payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond))
	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)
	return id
}

// heldRetry starts a retry of order id's parked refund, which gw lets
// reach the provider and holds there until gw.release is closed, and
// returns once it is held there; the retry's error comes on the channel
// returned.
func heldRetry(t *testing.T, e *env, gw *heldRefunds, id string) <-chan error {
	t.Helper()
	gw.failRefunds.Store(0)
	retried := make(chan error, 1)
	go func() {
		_, err := e.admin.RetryParkedPayment(t.Context(), &ordersv1.RetryParkedPaymentRequest{OrderId: id})
		retried <- err
	}()
	<-gw.entered
	return retried
}

func settleRefund(id string) *ordersv1.SettleParkedPaymentRequest {
	return &ordersv1.SettleParkedPaymentRequest{OrderId: id, Kind: ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_REFUND}
}

// A settle while a retry of the same job runs is refused (ABORTED): the
// retry may still move the job's money, after the operator settled it by
// hand. Before, the settle removed the job, the retry refunded all the
// same and removed it again, and the parked gauge went below zero.
func TestSettleDuringARetryIsRefused(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	gw := &heldRefunds{scripted: &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})},
		entered: make(chan struct{}, 1), release: make(chan struct{})}
	id := parkedRefund(t, e, gw, gw.scripted)
	retried := heldRetry(t, e, gw, id)
	if _, err := e.admin.SettleParkedPayment(ctx, settleRefund(id)); status.Code(err) != codes.Aborted {
		t.Errorf("settle while the retry runs: %v, want ABORTED", err)
	}
	close(gw.release)
	if err := <-retried; err != nil {
		t.Fatal(err)
	}
	e.waitParked(t, 0)
	if n := e.mgr.Load().ParkedNow(); n != 0 {
		t.Errorf("parked gauge %d after the retry completed the job, want 0", n)
	}
	if _, err := e.admin.SettleParkedPayment(ctx, settleRefund(id)); status.Code(err) != codes.NotFound {
		t.Errorf("settle after the retry completed the job: %v, want NOT_FOUND", err)
	}
}

// Of concurrent settles of one job one removes it; the others find it gone
// or busy, and the gauge counts it out once. Before, all of them
// succeeded, and the gauge went to -7.
func TestConcurrentSettlesRemoveAJobOnce(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	gw := &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})}
	id := parkedRefund(t, e, gw, gw)
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := e.admin.SettleParkedPayment(ctx, settleRefund(id))
			errs <- err
		}()
	}
	settled := 0
	for range n {
		err := <-errs
		switch code := status.Code(err); {
		case err == nil:
			settled++
		case code != codes.NotFound && code != codes.Aborted:
			t.Errorf("a settle that lost: %v, want NOT_FOUND or ABORTED", err)
		}
	}
	if settled != 1 || e.mgr.Load().ParkedNow() != 0 {
		t.Errorf("%d settles succeeded, parked gauge %d; want 1 and 0", settled, e.mgr.Load().ParkedNow())
	}
}
