package deadlines_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/deadlines"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// env is a nats-server on file storage that a test can restart on the same
// store (a crash of ordersd with its embedded server), the event store,
// and the command service on a real gRPC listener that follows the
// current store.
type env struct {
	opts  *server.Options
	srv   *server.Server
	js    jetstream.JetStream
	store atomic.Pointer[eventstore.Store]
	cmd   ordersv1.OrderCommandServiceClient
}

func startNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

func (e *env) connect(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	st, err := eventstore.New(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	e.store.Store(st)
}

// restart stops the nats-server and starts it again on the same store.
func (e *env) restart(t *testing.T) {
	t.Helper()
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.srv = startNATS(t, e.opts)
	e.connect(t)
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{opts: &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	e.srv = startNATS(t, e.opts)
	e.connect(t)
	e.cmd = serveCommands(t, &commandRef{e: e})
	return e
}

// commandRef serves commands on the current store.
type commandRef struct {
	ordersv1.UnimplementedOrderCommandServiceServer
	e *env
}

func (c *commandRef) svc() *command.Service {
	svc, err := command.New(c.e.store.Load())
	if err != nil {
		panic(err) // New without options does not fail
	}
	return svc
}
func (c *commandRef) CreateOrder(ctx context.Context, r *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	return c.svc().CreateOrder(ctx, r)
}
func (c *commandRef) PlaceOrder(ctx context.Context, r *ordersv1.PlaceOrderRequest) (*ordersv1.PlaceOrderResponse, error) {
	return c.svc().PlaceOrder(ctx, r)
}
func (c *commandRef) RecordPayment(ctx context.Context, r *ordersv1.RecordPaymentRequest) (*ordersv1.RecordPaymentResponse, error) {
	return c.svc().RecordPayment(ctx, r)
}
func (c *commandRef) CancelOrder(ctx context.Context, r *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	return c.svc().CancelOrder(ctx, r)
}
func (c *commandRef) RecordRefund(ctx context.Context, r *ordersv1.RecordRefundRequest) (*ordersv1.RecordRefundResponse, error) {
	return c.svc().RecordRefund(ctx, r)
}
func (c *commandRef) ShipOrder(ctx context.Context, r *ordersv1.ShipOrderRequest) (*ordersv1.ShipOrderResponse, error) {
	return c.svc().ShipOrder(ctx, r)
}

// run starts a deadline manager until the returned stop is called.
func (e *env) run(t *testing.T, payment, shipping time.Duration, opts ...deadlines.Option) (*deadlines.Manager, func()) {
	t.Helper()
	return e.runTimers(t, e.timers(t), payment, shipping, opts...)
}

// timers returns the DEADLINES stream as ordersd configures it.
func (e *env) timers(t *testing.T) *schedule.Stream {
	t.Helper()
	timers, err := schedule.New(e.js, deadlines.StreamName, deadlines.SubjectRoot, schedule.WithDescription(deadlines.StreamDescription), schedule.WithFiredKept())
	if err != nil {
		t.Fatal(err)
	}
	return timers
}

// runTimers is run with the given timers, for a test that steps in
// between the manager and the DEADLINES stream.
func (e *env) runTimers(t *testing.T, timers deadlines.Timers, payment, shipping time.Duration, opts ...deadlines.Option) (*deadlines.Manager, func()) {
	t.Helper()
	m, err := deadlines.New(t.Context(), e.store.Load(), timers, e.cmd, append([]deadlines.Option{deadlines.WithTimeouts(payment, shipping)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return m, stop
}

var seq atomic.Int64

func (e *env) place(t *testing.T, customer string) string {
	t.Helper()
	c, err := e.cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: fmt.Sprint("c-", seq.Add(1)), CustomerId: customer, Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 500}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Bern", Country: "CH"}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	if _, err := e.cmd.PlaceOrder(t.Context(), &ordersv1.PlaceOrderRequest{RequestId: fmt.Sprint("p-", seq.Add(1)), OrderId: id}); err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *env) pay(t *testing.T, id string) {
	t.Helper()
	if err := e.recordPayment(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

// recordPayment records an authorised payment of the order, from any
// goroutine.
func (e *env) recordPayment(ctx context.Context, id string) error {
	_, err := e.cmd.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: fmt.Sprint("pay-", seq.Add(1)), OrderId: id,
		Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "psp-1", Amount: 500})
	return err
}

// events returns the order's history as recorded.
func (e *env) events(t *testing.T, id string) []eventstore.Recorded {
	t.Helper()
	recs, err := e.store.Load().Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// waitEvent polls the order's history until it holds an event of type typ
// and returns the history.
func (e *env) waitEvent(t *testing.T, id, typ string) []eventstore.Recorded {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs := e.events(t, id)
		for _, r := range recs {
			if r.Type == typ {
				return recs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s: no %s in %d events", id, typ, len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cancelledOnce checks that the history holds one OrderCancelled, by the
// system actor.
func cancelledOnce(t *testing.T, recs []eventstore.Recorded) {
	t.Helper()
	n := 0
	for _, r := range recs {
		if r.Type == "OrderCancelled" {
			n++
			if r.Meta.Actor != deadlines.Actor {
				t.Fatalf("cancelled by %q, want %q", r.Meta.Actor, deadlines.Actor)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d OrderCancelled events, want 1", n)
	}
}

// listed waits until the manager lists exactly the given kinds for id.
func listed(t *testing.T, m *deadlines.Manager, id string, kinds ...string) []deadlines.Deadline {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds, _, err := m.List(t.Context(), id, 100)
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, d := range ds {
			got = append(got, d.Kind)
		}
		if fmt.Sprint(got) == fmt.Sprint(append([]string{}, kinds...)) {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s: deadlines %v, want %v", id, got, kinds)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPaymentTimeoutCancelsOnceAndSparesPaidOrders(t *testing.T) {
	e := start(t)
	m, _ := e.run(t, time.Second, time.Hour)
	paid := e.place(t, "on-time")
	e.pay(t, paid)
	late := e.place(t, "late")
	listed(t, m, late, "payment_timeout")
	// The paid order's timeout was replaced by its shipping SLA.
	if ds := listed(t, m, paid, "shipping_sla"); ds[0].Due.Before(time.Now().Add(50 * time.Minute)) {
		t.Fatalf("shipping SLA due %v", ds[0].Due)
	}
	recs := e.waitEvent(t, late, "OrderCancelled")
	cancelledOnce(t, recs)
	if ev := recs[len(recs)-1]; ev.Type != "OrderCancelled" {
		t.Fatalf("last event %s", ev.Type)
	}
	listed(t, m, late)
	// The late order's timeout fired after the paid one's would have.
	for _, r := range e.events(t, paid) {
		if r.Type == "OrderCancelled" {
			t.Fatal("an order paid in time was cancelled")
		}
	}
	if _, err := deadlines.NewAdmin(m, nil).ListDeadlines(t.Context(), &ordersv1.ListDeadlinesRequest{OrderId: "a*"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("wildcard order id: %v", err)
	}
}

// TestDeadlineSurvivesCrash: the process (manager and its embedded
// nats-server) dies between scheduling and firing; after the restart the
// deadline fires, once.
func TestDeadlineSurvivesCrash(t *testing.T) {
	e := start(t)
	m, stop := e.run(t, 2*time.Second, time.Hour)
	id := e.place(t, "crash")
	listed(t, m, id, "payment_timeout")
	stop()
	e.restart(t)
	e.run(t, 2*time.Second, time.Hour)
	cancelledOnce(t, e.waitEvent(t, id, "OrderCancelled"))
}

// TestShippingSLA: a paid order not shipped in time is listed overdue until
// it ships.
func TestShippingSLA(t *testing.T) {
	e := start(t)
	m, _ := e.run(t, time.Hour, time.Second)
	id := e.place(t, "slow-ship")
	e.pay(t, id)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ds := listed(t, m, id, "shipping_sla")
		if ds[0].Overdue {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never overdue")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.cmd.ShipOrder(t.Context(), &ordersv1.ShipOrderRequest{RequestId: "ship-1", OrderId: id}); err != nil {
		t.Fatal(err)
	}
	listed(t, m, id)
}

// slowCharges holds every charge until its order is cancelled, so the
// charge lands after the payment timeout.
type slowCharges struct {
	*payments.Simulator
	e *env
}

func (s slowCharges) Charge(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	for {
		recs, err := s.e.store.Load().Load(ctx, req.OrderID)
		if err != nil {
			return payments.ChargeResult{}, err
		}
		if recs[len(recs)-1].Type == "OrderCancelled" {
			return s.Simulator.Charge(ctx, req)
		}
		select {
		case <-ctx.Done():
			return payments.ChargeResult{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestChargeAfterTimeoutIsVoided: the provider's charge completes after the
// order was cancelled for want of payment; the payments manager cannot
// record it and voids it.
func TestChargeAfterTimeoutIsVoided(t *testing.T) {
	e := start(t)
	e.run(t, time.Second, time.Hour)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	parked, err := bucket.Open(t.Context(), e.js, payments.ParkedBucket)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := payments.New(t.Context(), e.store.Load(), parked, e.cmd, slowCharges{sim, e},
		payments.WithRetry(5, 20*time.Second, 10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pm.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	id := e.place(t, "late-charge")
	cancelledOnce(t, e.waitEvent(t, id, "OrderCancelled"))
	deadline := time.Now().Add(30 * time.Second)
	for pm.Stats().Voided == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the late charge was never voided: %+v", pm.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := sim.Voided(); len(v) != 1 {
		t.Fatalf("voided at the provider: %v", v)
	}
	for _, r := range e.events(t, id) {
		if r.Type == "PaymentAuthorized" {
			t.Fatal("a charge after the timeout was recorded as a payment")
		}
	}
}

// A short page of a long list is its soonest deadlines, in due order, and
// says that more matched. With 150 deadlines and a page of 3 the list
// cuts what it keeps while it reads, more than once.
func TestListPageIsTheSoonest(t *testing.T) {
	e := start(t)
	m, _ := e.run(t, time.Hour, time.Hour)
	const orders = 150
	for i := range orders {
		e.place(t, fmt.Sprintf("page-%d", i))
	}
	var all []deadlines.Deadline
	for wait := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polling the list
		var truncated bool
		var err error
		if all, truncated, err = m.List(t.Context(), "", 1000); err != nil || truncated {
			t.Fatalf("List of all: truncated %v, %v", truncated, err)
		}
		if len(all) == orders {
			break
		}
		if time.Now().After(wait) {
			t.Fatalf("%d deadlines listed; want %d", len(all), orders)
		}
	}
	page, truncated, err := m.List(t.Context(), "", 3)
	if err != nil || !truncated {
		t.Fatalf("List of 3 = truncated %v, %v; want truncated", truncated, err)
	}
	if !slices.IsSortedFunc(all, func(a, b deadlines.Deadline) int {
		return cmp.Or(a.Due.Compare(b.Due), strings.Compare(a.OrderID, b.OrderID))
	}) {
		t.Fatalf("the whole list is not soonest first: %v", all)
	}
	if fmt.Sprint(page) != fmt.Sprint(all[:3]) {
		t.Fatalf("page of 3 %v; want the soonest %v", page, all[:3])
	}
}
