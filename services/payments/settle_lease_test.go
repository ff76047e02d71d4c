package payments_test

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// otherProcess returns the admin service of a second manager on the same
// bucket, as another ordersd with the payments role serves it: it shares
// nothing with the first but the bucket.
func (e *env) otherProcess(t *testing.T, gw payments.Provider, opts ...payments.Option) *payments.Admin {
	t.Helper()
	m, err := payments.New(t.Context(), e.store, parkedBucket(t, e.js), e.cmd, gw, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return payments.NewAdmin(m, nil)
}

// A retry leases its job in the bucket: a settle in another process while
// the retry runs is refused, and a retry there skips the job, so the
// customer is refunded once, by the retry, and never after an operator
// settled the refund by hand. Before, the other process's settle removed
// the job while the retry refunded all the same.
func TestSettleOrRetryInAnotherProcessDuringARetryIsRefused(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	gw := &heldRefunds{scripted: &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})},
		entered: make(chan struct{}, 2), release: make(chan struct{})}
	id := parkedRefund(t, e, gw, gw.scripted)
	retried := heldRetry(t, e, gw, id)
	other := e.otherProcess(t, gw)
	if _, err := other.SettleParkedPayment(ctx, settleRefund(id)); status.Code(err) != codes.Aborted {
		t.Errorf("settle in another process while the retry runs: %v, want ABORTED", err)
	}
	res, err := other.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 0 || res.GetParkedAgain() != 0 {
		t.Errorf("retry in another process while the retry runs: %v, %v; want the job skipped", res, err)
	}
	close(gw.release)
	if err := <-retried; err != nil {
		t.Fatal(err)
	}
	e.waitParked(t, 0)
	if _, refunds := gw.Remembered(); refunds != 1 {
		t.Errorf("%d refunds reached the provider, want 1", refunds)
	}
}

// The lease is renewed while the retry runs: a settle elsewhere is still
// refused once the lease the retry first took has run out.
func TestARetryKeepsItsLeaseWhileItRuns(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	gw := &heldRefunds{scripted: &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})},
		entered: make(chan struct{}, 1), release: make(chan struct{})}
	gw.failRefunds.Store(1 << 30)
	// A short AckWait makes a short lease (retryLease AckWaits).
	e.run(t, gw, fast(), payments.WithAckWait(100*time.Millisecond), payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond))
	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)
	retried := heldRetry(t, e, gw, id)
	first := leaseOf(t, e)
	for !time.Now().After(first) { // the condition under test: the first lease's end passing
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.otherProcess(t, gw).SettleParkedPayment(ctx, settleRefund(id)); status.Code(err) != codes.Aborted {
		t.Errorf("settle elsewhere past the retry's first lease: %v, want ABORTED", err)
	}
	close(gw.release)
	if err := <-retried; err != nil {
		t.Fatal(err)
	}
	e.waitParked(t, 0)
}

// A lease another process holds keeps its job from a retry and a settle
// here until it runs out; one run out (its process died mid-retry) keeps
// nothing.
func TestALeaseHoldsItsJobUntilItRunsOut(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	gw := &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})}
	id := parkedRefund(t, e, gw, gw)
	gw.failRefunds.Store(0)
	setLease(t, e, time.Now().Add(time.Hour))
	if _, err := e.admin.SettleParkedPayment(ctx, settleRefund(id)); status.Code(err) != codes.Aborted {
		t.Errorf("settle of a job leased elsewhere: %v, want ABORTED", err)
	}
	res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if err != nil || res.GetCompleted() != 0 || res.GetParkedAgain() != 0 {
		t.Errorf("retry of a job leased elsewhere: %v, %v; want it skipped", res, err)
	}
	if _, refunds := gw.Remembered(); refunds != 0 {
		t.Errorf("%d refunds reached the provider, want none", refunds)
	}
	setLease(t, e, time.Now().Add(-time.Second))
	if _, err := e.admin.SettleParkedPayment(ctx, settleRefund(id)); err != nil {
		t.Errorf("settle of a job whose lease ran out: %v", err)
	}
}

// onlyKey returns the key of the one job parked in b.
func onlyKey(t *testing.T, b *bucket.Bucket) string {
	t.Helper()
	keys, err := jobKeys(t.Context(), b)
	if err != nil || len(keys) != 1 {
		t.Fatalf("parked keys %v, %v; want one", keys, err)
	}
	return keys[0]
}

// sentPrefix begins the bucket's keys that are not parked jobs: the
// records of when jobs' keys went out, which a delivered job removes once
// it is done or parked.
const sentPrefix = "sent."

// jobKeys lists the bucket's keys of parked jobs, and the error of listing.
func jobKeys(ctx context.Context, b *bucket.Bucket) ([]string, error) {
	keys, err := b.Keys(ctx)
	return slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, sentPrefix) }), err
}

// leaseOf returns the end of the lease the one parked job holds.
func leaseOf(t *testing.T, e *env) time.Time {
	t.Helper()
	var j struct {
		RetryingUntil time.Time `json:"retrying_until"`
	}
	b := parkedBucket(t, e.js)
	v, err := b.Get(t.Context(), onlyKey(t, b))
	if err == nil {
		err = json.Unmarshal(v, &j)
	}
	if err != nil || j.RetryingUntil.IsZero() {
		t.Fatalf("lease of the parked refund: %v, %v", j.RetryingUntil, err)
	}
	return j.RetryingUntil
}

// setLease writes the one parked job leased until until, as a retry in
// another process would.
func setLease(t *testing.T, e *env, until time.Time) {
	t.Helper()
	setJob(t, e, func(j map[string]any) { j["retrying_until"] = until.UTC() })
}

// setJob rewrites the one parked job's stored JSON with edit.
func setJob(t *testing.T, e *env, edit func(map[string]any)) {
	t.Helper()
	j := parkedJob(t, e)
	edit(j)
	v, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	b := parkedBucket(t, e.js)
	if err := b.Put(t.Context(), onlyKey(t, b), v); err != nil {
		t.Fatal(err)
	}
}

// parkedJob returns the only parked job's entry, as stored.
func parkedJob(t *testing.T, e *env) map[string]any {
	t.Helper()
	b := parkedBucket(t, e.js)
	return parkedEntry(t, b, onlyKey(t, b))
}

// parkedEntry returns the entry under key in b, as stored.
func parkedEntry(t *testing.T, b *bucket.Bucket, key string) map[string]any {
	t.Helper()
	v, err := b.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(v, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// A refund job was parked and its acknowledgement lost; an operator's
// retry of it, in another process, holds its lease and is at the provider
// when the event is delivered again. The delivery leaves the job to the
// retry: a settle meanwhile is refused (ABORTED), as the README says. It
// parked the job over the retry's entry, erasing the lease, and the
// settle got through while the retry went on to refund.
func TestDeliveryAgainLeavesARetriedJobToItsRetry(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	failing := &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})}
	failing.failRefunds.Store(math.MaxInt32)
	e.runOn(t, &losesFirstAck{Store: e.store, typ: "OrderCancelled"}, failing, fast(),
		payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithAckWait(3*time.Second))
	id := e.payThenCancel(t, 1300)
	e.waitParked(t, 1)
	held := &heldRefunds{scripted: &scripted{Simulator: payments.NewSimulator(payments.SimulatorConfig{})},
		entered: make(chan struct{}, 1), release: make(chan struct{})}
	other := e.otherProcess(t, held)
	retried := make(chan error, 1)
	go func() {
		_, err := other.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
		retried <- err
	}()
	<-held.entered    // the retry holds the job's lease and is at the provider
	waitHandled(t, e) // the delivery again, after the ack wait
	_, settleErr := e.admin.SettleParkedPayment(ctx, settleRefund(id))
	close(held.release)
	if err := <-retried; err != nil {
		t.Fatalf("the retry: %v", err)
	}
	if status.Code(settleErr) != codes.Aborted {
		t.Fatalf("settle while a retry of the job runs: %v, want ABORTED; the retry then refunded %d time(s) after the settle",
			settleErr, len(held.Refunded()))
	}
	if n := len(held.Refunded()); n != 1 {
		t.Fatalf("the retry refunded %d times, want once", n)
	}
}
