package payments_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/services/payments"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// gatedGateway holds every charge until open is closed, counting the
// charges waiting.
type gatedGateway struct {
	payments.Provider
	open    chan struct{}
	waiting atomic.Int32
}

func (g *gatedGateway) Charge(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	g.waiting.Add(1)
	select {
	case <-g.open:
	case <-ctx.Done():
		return payments.ChargeResult{}, ctx.Err()
	}
	return g.Provider.Charge(context.WithoutCancel(ctx), req)
}

// NATS (the event store and so the command side) goes away while charges
// are in flight, for far longer than all of a job's attempts and backoffs
// together. The jobs wait for it without spending attempts: when it is
// back, every placed order is paid once, nothing is parked, and no outage
// alert was raised.
func TestStoreOutageSpendsNoAttempts(t *testing.T) {
	e := startStorage(t, jetstream.FileStorage)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &gatedGateway{Provider: sim, open: make(chan struct{})}
	reader := sdkmetric.NewManualReader()
	// Three attempts, 5 ms of backoff at most: the outage outlasts them
	// many times over.
	const workers, orders = 4, 8
	e.run(t, gw, fast(), payments.WithRetry(3, time.Second, time.Millisecond, 5*time.Millisecond), payments.WithWorkers(workers), withReader(reader))
	for range orders {
		e.place(t, "outage", 300)
	}
	waitUntil(t, "charges in flight", func() bool { return gw.waiting.Load() == workers })

	restart := estest.Stop(t, e.srv)
	close(gw.open) // the charges go through; their recording cannot
	waitUntil(t, "jobs waiting for the store", func() bool { return metricValue(t, reader, "orders.payments.jobs_waiting") == workers })
	e.srv = restart()

	got := e.waitFor(t, orders, "PaymentAuthorized", "PaymentDeclined")
	for id, evs := range got {
		if len(evs) != 1 || evs[0] != "PaymentAuthorized" {
			t.Fatalf("order %s: %v", id, evs)
		}
	}
	assertChargedOnce(t, sim, orders)
	e.waitParked(t, 0)
	if n := metricValue(t, reader, "orders.payments.parked"); n > 0 {
		t.Fatalf("%d jobs parked during the outage", n)
	}
	if n := metricValue(t, reader, "orders.payments.outage_alerts"); n > 0 {
		t.Fatalf("%d outage alerts for an outage shorter than the limit", n)
	}
}

// A job that waits for the store longer than the outage limit raises the
// alert (metric) instead of being parked, and is paid once the store is
// back.
func TestStoreOutageBeyondTheLimitAlerts(t *testing.T) {
	e := startStorage(t, jetstream.FileStorage)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	gw := &gatedGateway{Provider: sim, open: make(chan struct{})}
	reader := sdkmetric.NewManualReader()
	e.run(t, gw, fast(), payments.WithRetry(3, time.Second, time.Millisecond, 5*time.Millisecond), payments.WithWorkers(1),
		payments.WithOutageLimit(100*time.Millisecond), withReader(reader))
	e.place(t, "outage", 300)
	waitUntil(t, "charge in flight", func() bool { return gw.waiting.Load() == 1 })
	restart := estest.Stop(t, e.srv)
	close(gw.open)
	waitUntil(t, "outage alert", func() bool { return metricValue(t, reader, "orders.payments.outage_alerts") > 0 })
	e.srv = restart()
	e.waitFor(t, 1, "PaymentAuthorized")
	assertChargedOnce(t, sim, 1)
	e.waitParked(t, 0)
}

// A manager killed with charges in flight (its NATS connection closed, as
// when its process dies) leaves messages the server counts as delivered.
// A manager started in its place takes the pinned group over at once, and
// the dead one's messages come back after the short AckWait, so with the
// default pin and AckWait every placed order is paid within seconds (the
// deadline here is generous; before, the pin alone held 10 s and the
// AckWait 15 s), each once.
func TestRestartedManagerResumesAtOnce(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{Latency: 20 * time.Millisecond})
	opts := []payments.Option{fast(), payments.WithWorkers(4)}
	c := &crashPoint{at: 6, died: make(chan struct{})}
	e.runOwnConn(t, sim, c, opts...)
	const orders = 20
	for range orders {
		e.place(t, "restart", 250)
	}
	select {
	case <-c.died:
	case <-time.After(30 * time.Second):
		t.Fatal("the crash point was never reached")
	}
	e.runOwnConn(t, sim, nil, opts...)
	got := e.waitForWithin(t, 10*time.Second, orders, "PaymentAuthorized", "PaymentDeclined")
	for id, evs := range got {
		if len(evs) != 1 || evs[0] != "PaymentAuthorized" {
			t.Fatalf("order %s: %v", id, evs)
		}
	}
	assertChargedOnce(t, sim, orders)
}

// waitUntil polls cond until it holds, failing t after 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// outageStore answers every load UNAVAILABLE while down is set.
type outageStore struct {
	payments.Store
	down atomic.Bool
}

func (s *outageStore) LoadLatestAfter(ctx context.Context, orderID string, after uint64) ([]eventstore.Recorded, error) {
	if s.down.Load() {
		return nil, fmt.Errorf("%w: test outage", eventstore.ErrUnavailable)
	}
	return s.Store.LoadLatestAfter(ctx, orderID, after)
}

// A retry of parked jobs that cannot run one to its end (the event store
// away past the outage limit) answers UNAVAILABLE and leaves it parked.
// Before, it answered success with nothing completed and nothing parked
// again.
func TestRetryThatCannotRunAJobIsNotASuccess(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	st := &outageStore{Store: e.store}
	e.runOn(t, st, sim, fast(), payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithOutageLimit(50*time.Millisecond))
	id := e.place(t, "retry-outage", 100)
	e.waitParked(t, 1)
	st.down.Store(true)
	res, err := e.admin.RetryParkedPayment(t.Context(), &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RetryParkedPayment with the event store away = %v, %v; want UNAVAILABLE", res, err)
	}
	if p := e.waitParked(t, 1); p[0].GetOrderId() != id {
		t.Fatalf("parked %v; want %s still", p, id)
	}
}

// A retry waits out an outage of the event store only while its call's
// deadline leaves time to say so: it answers UNAVAILABLE (which ordersctl
// retries) before the deadline, not DEADLINE_EXCEEDED after it, having
// waited for the outage limit (15 minutes by default) as a delivered job
// does, or past the deadline in a wait begun before it.
func TestRetryDuringAnOutageAnswersBeforeItsDeadline(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	st := &outageStore{Store: e.store}
	// Waits of a second or more: one that began just before the time to
	// answer ran out would end past the deadline.
	e.runOn(t, st, sim, fast(), payments.WithRetry(2, time.Second, time.Second, 4*time.Second))
	id := e.place(t, "retry-outage-deadline", 100)
	e.waitParked(t, 1)
	st.down.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: id})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("RetryParkedPayment with the event store away and 3 s to answer = %v, %v; want UNAVAILABLE", res, err)
	}
	st.down.Store(false)
	if p := e.waitParked(t, 1); p[0].GetOrderId() != id {
		t.Fatalf("parked %v; want %s still", p, id)
	}
}

// A list of parked jobs is cut at its limit, oldest first, and says how
// many are parked in all: an outage can park more than one answer should
// carry. A limit outside 0-1000 is INVALID_ARGUMENT.
func TestParkedListIsCutAtItsLimit(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	e.run(t, sim, fast(), payments.WithRetry(1, time.Second, time.Millisecond, time.Millisecond))
	for range 3 {
		e.place(t, "parked-list", 100)
	}
	all := e.waitParked(t, 3)
	if !slices.IsSortedFunc(all, func(a, b *ordersv1.ParkedPayment) int {
		return a.GetParkedAt().AsTime().Compare(b.GetParkedAt().AsTime())
	}) {
		t.Fatalf("parked jobs not oldest first: %v", all)
	}
	res, err := e.admin.ListParkedPayments(t.Context(), &ordersv1.ListParkedPaymentsRequest{Limit: 2})
	if err != nil || res.GetParkedCount() != 3 || len(res.GetParked()) != 2 ||
		res.GetParked()[0].GetOrderId() != all[0].GetOrderId() || res.GetParked()[1].GetOrderId() != all[1].GetOrderId() {
		t.Fatalf("list of 2 = %v, %v; want the 2 oldest of 3", res, err)
	}
	for _, limit := range []int32{-1, 1001} {
		if _, err := e.admin.ListParkedPayments(t.Context(), &ordersv1.ListParkedPaymentsRequest{Limit: limit}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("limit %d = %v; want INVALID_ARGUMENT", limit, err)
		}
	}
}

// refusingCommands answers the first refusals RecordPayment calls with
// err, as the command side does when it sheds a call (busy) or its order's
// log stays contended beyond its own retries (ABORTED), then records.
type refusingCommands struct {
	ordersv1.OrderCommandServiceClient
	err      error
	refusals atomic.Int32
}

func (c *refusingCommands) RecordPayment(ctx context.Context, in *ordersv1.RecordPaymentRequest, opts ...grpc.CallOption) (*ordersv1.RecordPaymentResponse, error) {
	if c.refusals.Add(-1) >= 0 {
		return nil, c.err
	}
	return c.OrderCommandServiceClient.RecordPayment(ctx, in, opts...)
}

// A command side that asks for the recording to be tried again later is
// not a failure of the payment: more such answers than the job has
// attempts park nothing, and the charge is recorded once.
func TestCommandSideAskingForALaterTrySpendsNoAttempts(t *testing.T) {
	for name, err := range map[string]error{
		"busy":      rpcerr.Busy("server busy: too many requests in flight; retry with backoff"),
		"contended": status.Error(codes.Aborted, "the order's log is contended; retry"),
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t)
			sim := payments.NewSimulator(payments.SimulatorConfig{})
			cmds := &refusingCommands{OrderCommandServiceClient: e.cmd, err: err}
			cmds.refusals.Store(5)
			e.runRecording(t, e.store, cmds, sim, fast(), payments.WithRetry(3, time.Second, time.Millisecond, 2*time.Millisecond))
			e.place(t, "later", 800)
			st := e.waitStats(t, "the job settled", func(s payments.Stats) bool { return s.Charged+s.Parked > 0 })
			if st.Parked != 0 || st.Charged != 1 || len(sim.Movements()) != 1 {
				t.Fatalf("after %d refusals of 3 attempts: %+v, %d money movements; want charged once, nothing parked", 5, st, len(sim.Movements()))
			}
		})
	}
}
