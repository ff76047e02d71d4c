package payments_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/payments"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	nooptrace "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type env struct {
	srv   *server.Server
	js    jetstream.JetStream
	store *eventstore.Store
	cmd   ordersv1.OrderCommandServiceClient
	admin ordersv1.PaymentAdminServiceClient
	mgr   atomic.Pointer[payments.Manager]
}

func start(tb testing.TB) *env { return startStorage(tb, jetstream.MemoryStorage) }

// startStorage is start with the stream on st: file storage survives a
// restart of the server.
func startStorage(tb testing.TB, st jetstream.StorageType) *env {
	tb.Helper()
	srv := estest.StartServer(tb)
	_, js := estest.Connect(tb, srv)
	store, err := eventstore.New(context.Background(), js, eventstore.WithStorage(st))
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{srv: srv, js: js, store: store}
	cmd, err := command.New(store)
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer()
	ordersv1.RegisterOrderCommandServiceServer(gs, cmd)
	ordersv1.RegisterPaymentAdminServiceServer(gs, &adminRef{e: e})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	e.cmd = ordersv1.NewOrderCommandServiceClient(conn)
	e.admin = ordersv1.NewPaymentAdminServiceClient(conn)
	return e
}

// parkedBucket opens the parked-jobs bucket as ordersd does.
func parkedBucket(tb testing.TB, js jetstream.JetStream) *bucket.Bucket {
	tb.Helper()
	b, err := bucket.Open(context.Background(), js, payments.ParkedBucket, bucket.WithDescription(payments.ParkedDescription))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// adminRef serves the admin RPCs of whichever manager runs now.
type adminRef struct {
	ordersv1.UnimplementedPaymentAdminServiceServer
	e *env
}

func (a *adminRef) ListParkedPayments(ctx context.Context, r *ordersv1.ListParkedPaymentsRequest) (*ordersv1.ListParkedPaymentsResponse, error) {
	return payments.NewAdmin(a.e.mgr.Load(), nil).ListParkedPayments(ctx, r)
}

func (a *adminRef) RetryParkedPayment(ctx context.Context, r *ordersv1.RetryParkedPaymentRequest) (*ordersv1.RetryParkedPaymentResponse, error) {
	return payments.NewAdmin(a.e.mgr.Load(), nil).RetryParkedPayment(ctx, r)
}

func (a *adminRef) SettleParkedPayment(ctx context.Context, r *ordersv1.SettleParkedPaymentRequest) (*ordersv1.SettleParkedPaymentResponse, error) {
	return payments.NewAdmin(a.e.mgr.Load(), nil).SettleParkedPayment(ctx, r)
}

// run starts a manager until the returned stop is called.
func (e *env) run(tb testing.TB, gw payments.Provider, opts ...payments.Option) (stop func()) {
	tb.Helper()
	return e.runOn(tb, e.store, gw, opts...)
}

// runOn is run with the manager reading the log through store.
func (e *env) runOn(tb testing.TB, store payments.Store, gw payments.Provider, opts ...payments.Option) (stop func()) {
	tb.Helper()
	return e.runRecording(tb, store, e.cmd, gw, opts...)
}

// runRecording is runOn with the manager recording outcomes through cmds,
// a client that may refuse them.
func (e *env) runRecording(tb testing.TB, store payments.Store, cmds ordersv1.OrderCommandServiceClient, gw payments.Provider, opts ...payments.Option) (stop func()) {
	tb.Helper()
	return e.runParked(tb, store, parkedBucket(tb, e.js), cmds, gw, opts...)
}

// runParked is runRecording with the parked jobs kept in kv, a bucket that
// may fail.
func (e *env) runParked(tb testing.TB, store payments.Store, kv payments.Parked, cmds ordersv1.OrderCommandServiceClient, gw payments.Provider, opts ...payments.Option) (stop func()) {
	tb.Helper()
	m, err := payments.New(context.Background(), store, kv, cmds, gw, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	e.mgr.Store(m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("manager: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

var seq atomic.Int64

// place creates and places an order and returns its id.
func (e *env) place(tb testing.TB, customer string, amount int64) string {
	tb.Helper()
	return e.placeTaxed(tb, customer, amount, 0)
}

// placeTaxed is place with tax on the order.
func (e *env) placeTaxed(tb testing.TB, customer string, amount, tax int64) string {
	tb.Helper()
	ctx := context.Background()
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: fmt.Sprint("c-", seq.Add(1)), CustomerId: customer, Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: amount}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Bern", Country: "CH"}})
	if err != nil {
		tb.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	if _, err := e.cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: fmt.Sprint("p-", seq.Add(1)), OrderId: id, Tax: tax}); err != nil {
		tb.Fatal(err)
	}
	return id
}

// waitFor follows the log until n events of the given types have been
// appended in total, and returns them by order id.
func (e *env) waitFor(tb testing.TB, n int, types ...string) map[string][]string {
	tb.Helper()
	return e.waitForWithin(tb, 60*time.Second, n, types...)
}

// waitForWithin is waitFor with a deadline of its own.
func (e *env) waitForWithin(tb testing.TB, d time.Duration, n int, types ...string) map[string][]string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	want := map[string]bool{}
	for _, t := range types {
		want[t] = true
	}
	got := map[string][]string{}
	count := 0
	for rec, err := range e.store.Follow(ctx, 1) {
		if err != nil {
			tb.Fatal(err)
		}
		if want[rec.Type] {
			got[rec.OrderID] = append(got[rec.OrderID], rec.Type)
			if count++; count == n {
				return got
			}
		}
	}
	tb.Fatalf("only %d of %d %v events arrived", count, n, types)
	return nil
}

// fast retries at once, and keeps the circuit closed unless a test sets
// it: a refused attempt counts, so an open circuit would park jobs of
// tests that are about something else.
func fast() payments.Option {
	retry, circuit := payments.WithRetry(30, time.Second, time.Millisecond, 5*time.Millisecond), payments.WithCircuit(1000, 10*time.Millisecond)
	return func(m *payments.Manager) error { return errors.Join(retry(m), circuit(m)) }
}

// quickFailover shortens how long a crashed manager keeps the consumer.
func quickFailover() payments.Option { return payments.WithPinnedTTL(300 * time.Millisecond) }

// assertChargedOnce checks the simulator's money movements: orders orders
// had money taken, each exactly once, and every order's charge calls all
// carried one idempotency key.
func assertChargedOnce(t *testing.T, sim *payments.Simulator, orders int) {
	t.Helper()
	taken := map[string]int{}
	for _, mv := range sim.Movements() {
		if mv.Kind == "charge" {
			taken[mv.OrderID]++
		}
	}
	if len(taken) != orders {
		t.Fatalf("%d orders charged, want %d", len(taken), orders)
	}
	for id, n := range taken {
		if n != 1 {
			t.Fatalf("order %s: money taken %d times", id, n)
		}
	}
	for id, keys := range sim.ChargeKeys() {
		if len(keys) != 1 {
			t.Fatalf("order %s charged under %d keys: %v", id, len(keys), keys)
		}
	}
}

// withReader sends the manager's metrics to r.
func withReader(r sdkmetric.Reader) payments.Option {
	return payments.WithTelemetry(nooptrace.NewTracerProvider(), sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)))
}

// metricValue collects r and returns the int64 counter or gauge named
// name, summed over its attributes; -1 when it is missing.
func metricValue(tb testing.TB, r sdkmetric.Reader, name string) int64 {
	tb.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		tb.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var v int64
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					v += dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					v += dp.Value
				}
			}
			return v
		}
	}
	return -1
}

// outcomes counts the events of the given type in an order's history.
func (e *env) outcomes(tb testing.TB, id, typ string) int {
	tb.Helper()
	recs, err := e.store.Load(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

func TestHappyPathAndDecline(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	e.run(t, sim, fast())
	for i := range 9 {
		e.place(t, fmt.Sprint("cust-", i), 1000+int64(i))
	}
	declined := e.place(t, "cust-decline", 500)
	got := e.waitFor(t, 10, "PaymentAuthorized", "PaymentDeclined")
	for id, evs := range got {
		if len(evs) != 1 {
			t.Fatalf("order %s has outcomes %v", id, evs)
		}
		want := "PaymentAuthorized"
		if id == declined {
			want = "PaymentDeclined"
		}
		if evs[0] != want {
			t.Fatalf("order %s: %v, want %s", id, evs, want)
		}
	}
	assertChargedOnce(t, sim, 9)
}

// TestTaxIsCharged checks that an order placed with tax is charged its
// lines plus the tax, and that the payment is accepted as covering it.
func TestTaxIsCharged(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	e.run(t, sim, fast())
	id := e.placeTaxed(t, "cust-tax", 1000, 190)
	if got := e.waitFor(t, 1, "PaymentAuthorized", "PaymentDeclined"); len(got[id]) != 1 || got[id][0] != "PaymentAuthorized" {
		t.Fatalf("outcomes %v, want one PaymentAuthorized", got)
	}
	for _, mv := range sim.Movements() {
		if mv.Kind == "charge" && mv.Amount != 1190 {
			t.Errorf("charged %d, want the lines (1000) plus tax (190)", mv.Amount)
		}
	}
	assertChargedOnce(t, sim, 1)
}

// Half the calls fail before doing anything, and a third of those that
// get through take the money and then lose the answer: the retries repeat
// the key and get the first charge back instead of a second one.
func TestFlakyGatewayChargesExactlyOnce(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{FailureRate: 0.5, LostAnswerRate: 0.3, Seed: 6})
	e.run(t, sim, fast(), payments.WithWorkers(4))
	const orders = 30
	for i := range orders {
		e.place(t, fmt.Sprint("cust-", i), 100)
	}
	got := e.waitFor(t, orders, "PaymentAuthorized", "PaymentDeclined")
	for id, evs := range got {
		if len(evs) != 1 || evs[0] != "PaymentAuthorized" {
			t.Fatalf("order %s: %v", id, evs)
		}
	}
	assertChargedOnce(t, sim, orders)
	if sim.Attempts() <= orders {
		t.Fatalf("%d gateway calls for %d orders at 50%% failures: the failures were not exercised", sim.Attempts(), orders)
	}
	if sim.LostAnswers() == 0 {
		t.Fatal("no charge lost its answer: the retry of a key that holds a charge was not exercised")
	}
}

func TestCrashesNeverChargeTwice(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{FailureRate: 0.2, Latency: time.Millisecond})
	r := rand.New(rand.NewPCG(9, 9))
	const rounds, perRound = 6, 8
	for round := range rounds {
		stop := e.run(t, sim, fast(), payments.WithWorkers(3), quickFailover())
		for range perRound {
			e.place(t, "crashy", 250)
		}
		// Kill the manager at a random moment: possibly mid-charge,
		// between a charge and its recording, or before the ack.
		deadline := time.Now().Add(time.Duration(r.IntN(20)) * time.Millisecond)
		for time.Now().Before(deadline) && e.mgr.Load().Stats().Charged < (round+1)*perRound/2 {
			time.Sleep(time.Millisecond) // the crash point itself is what is random here
		}
		stop()
	}
	e.run(t, sim, fast(), quickFailover())
	got := e.waitFor(t, rounds*perRound, "PaymentAuthorized", "PaymentDeclined")
	if len(got) != rounds*perRound {
		t.Fatalf("%d orders paid, want %d", len(got), rounds*perRound)
	}
	for id, evs := range got {
		if len(evs) != 1 {
			t.Fatalf("order %s: %v", id, evs)
		}
	}
	assertChargedOnce(t, sim, rounds*perRound)
}

func TestParkedJobsSurviveRestartAndRetryOnDemand(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	first := sdkmetric.NewManualReader()
	stop := e.run(t, sim, payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), withReader(first))
	ids := map[string]bool{}
	for range 3 {
		ids[e.place(t, "parked", 300)] = true
	}
	for _, p := range e.waitParked(t, 3) {
		if !ids[p.GetOrderId()] || p.GetKind() != ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_CHARGE || p.GetAttempts() != 2 || p.GetLastError() == "" {
			t.Fatalf("parked job %v", p)
		}
	}
	stop() // the parking jobs have returned
	if parkings, now := metricValue(t, first, "orders.payments.parked"), metricValue(t, first, "orders.payments.parked_jobs"); parkings != 3 || now != 3 {
		t.Fatalf("metrics: %d parkings, %d parked now; want 3 and 3", parkings, now)
	}
	// A new manager (a restarted process) sees the same parked jobs.
	sim.SetDown(false)
	second := sdkmetric.NewManualReader()
	e.run(t, sim, fast(), withReader(second))
	again, err := e.admin.ListParkedPayments(ctx, &ordersv1.ListParkedPaymentsRequest{})
	if err != nil || len(again.GetParked()) != 3 {
		t.Fatalf("after restart: %v %v", again, err)
	}
	if now := metricValue(t, second, "orders.payments.parked_jobs"); now != 3 {
		t.Fatalf("after restart: %d parked now, want 3", now)
	}
	res, err := e.admin.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{})
	if err != nil || res.GetCompleted() != 3 || res.GetParkedAgain() != 0 {
		t.Fatalf("retry: %v %v", res, err)
	}
	got := e.waitFor(t, 3, "PaymentAuthorized")
	for id := range ids {
		if len(got[id]) != 1 {
			t.Fatalf("order %s: %v", id, got[id])
		}
	}
	if left, err := e.admin.ListParkedPayments(ctx, &ordersv1.ListParkedPaymentsRequest{}); err != nil || len(left.GetParked()) != 0 {
		t.Fatalf("jobs still parked: %v, %v", left, err)
	}
	if now := metricValue(t, second, "orders.payments.parked_jobs"); now != 0 {
		t.Fatalf("after the retry: %d parked now, want 0", now)
	}
	assertChargedOnce(t, sim, 3)
}

// Two replicas: one active worker group at a time, the other takes over
// when the first stops, and nothing is charged twice.
func TestOneActiveReplicaWithFailover(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	first, err := payments.New(context.Background(), e.store, parkedBucket(t, e.js), e.cmd, sim, fast(), payments.WithPinnedTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	second, err := payments.New(context.Background(), e.store, parkedBucket(t, e.js), e.cmd, sim, fast(), payments.WithPinnedTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	ctx2, stop2 := context.WithCancel(context.Background())
	done1, done2 := make(chan error, 1), make(chan error, 1)
	go func() { done1 <- first.Run(ctx1) }()
	go func() { done2 <- second.Run(ctx2) }()
	t.Cleanup(func() { stop1(); stop2(); <-done1; <-done2 })
	// A manager that starts takes the group over (WithTakeOver), so one
	// that starts while the other already charges splits the work for a
	// moment, as designed. Orders come once both are consuming, each
	// having taken over at its start.
	waitUntil(t, "both managers consuming", func() bool { return first.Consuming() && second.Consuming() })
	for range 10 {
		e.place(t, "replicas", 100)
	}
	e.waitFor(t, 10, "PaymentAuthorized")
	// A manager counts a charge just after its recording reaches the log.
	settled := func(want int) (int, int) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			a, b := first.Stats().Charged, second.Stats().Charged
			if a+b >= want || time.Now().After(deadline) {
				return a, b
			}
			time.Sleep(time.Millisecond)
		}
	}
	a, b := settled(10)
	if a+b != 10 || (a != 0 && b != 0) {
		t.Fatalf("charges split %d/%d: want one active replica", a, b)
	}
	active, standby := stop1, second
	if b > 0 {
		active, standby = stop2, first
	}
	active()
	for range 5 {
		e.place(t, "replicas", 100)
	}
	e.waitFor(t, 15, "PaymentAuthorized")
	settled(15)
	if standby.Stats().Charged != 5 {
		t.Fatalf("the standby charged %d after failover, want 5 (first %+v, second %+v)", standby.Stats().Charged, first.Stats(), second.Stats())
	}
	assertChargedOnce(t, sim, 15)
}

// An order cancelled while its payment job waits on a failing provider is
// never charged: the job sees the cancellation and is dropped.
func TestCancelledOrderPendingJobIsDropped(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	e.run(t, sim, payments.WithRetry(1000, time.Second, 5*time.Millisecond, 20*time.Millisecond), payments.WithCircuit(1000, time.Millisecond))
	id := e.place(t, "changed-mind", 700)
	deadline := time.Now().Add(10 * time.Second)
	for sim.Attempts() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // until the job is retrying against the failing provider
	}
	if sim.Attempts() == 0 {
		t.Fatal("the job never tried the failing provider: nothing is cancelled while it retries")
	}
	if _, err := e.cmd.CancelOrder(t.Context(), &ordersv1.CancelOrderRequest{RequestId: "cancel-pending", OrderId: id}); err != nil {
		t.Fatal(err)
	}
	sim.SetDown(false)
	for e.mgr.Load().Stats().Dropped == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pending job was not dropped")
		}
		time.Sleep(time.Millisecond)
	}
	// A charge already on its way when the cancellation landed is
	// voided; otherwise nothing was charged at all.
	if len(sim.Charged()) != len(sim.Voided()) {
		t.Fatalf("a cancelled order was charged and not voided: %v %v", sim.Charged(), sim.Voided())
	}
}

// With the provider down for good, the circuit opens after a few calls and
// spares it from then on; the jobs still spend their attempts, refused ones
// included, and are parked within their retry budget rather than once the
// circuit lets each of them probe in turn.
func TestGatewayDownParksJobsWithinTheirBudget(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	const jobs, workers, threshold, attempts = 6, 6, 2, 4
	// The circuit stays open for the whole test once it opens.
	e.run(t, sim, payments.WithRetry(attempts, time.Second, time.Millisecond, 5*time.Millisecond), payments.WithWorkers(workers), payments.WithCircuit(threshold, time.Hour))
	ids := map[string]bool{}
	for range jobs {
		ids[e.place(t, "outage", 100)] = true
	}
	for _, p := range e.waitParked(t, jobs) {
		if !ids[p.GetOrderId()] || p.GetAttempts() != attempts || p.GetLastError() == "" {
			t.Fatalf("parked job %v", p)
		}
	}
	if !e.mgr.Load().CircuitOpen() {
		t.Fatal("circuit closed with the provider down")
	}
	// Calls are let through until threshold failures are recorded; at
	// most one call per worker can be in flight when that happens.
	if calls := sim.Attempts(); calls < threshold || calls > threshold+workers-1 {
		t.Fatalf("provider called %d times, want %d to %d", calls, threshold, threshold+workers-1)
	}
	if len(sim.Movements()) != 0 {
		t.Fatalf("money moved while the provider was down: %v", sim.Movements())
	}
}

// A job that meets a circuit just opened waits for its next probe before
// spending its attempts: with the provider back by then, the order is
// charged. Before, a cool-down longer than the job's whole retry budget
// parked it without the provider ever being asked.
func TestJobWaitsForTheCircuitsProbe(t *testing.T) {
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{})
	sim.SetDown(true)
	// Three attempts with backoffs of a few milliseconds at first: a
	// budget well under the 1 s cool-down, while the longest backoff
	// (2 s) covers it.
	e.run(t, sim, payments.WithRetry(3, time.Second, time.Millisecond, 2*time.Second), payments.WithCircuit(2, time.Second))
	first := e.place(t, "circuit", 100)
	if p := e.waitParked(t, 1); p[0].GetOrderId() != first {
		t.Fatalf("parked %v; want %s", p, first)
	}
	if !e.mgr.Load().CircuitOpen() {
		t.Fatal("the circuit is closed after the provider failed every call")
	}
	sim.SetDown(false)
	second := e.place(t, "circuit", 100)
	got := e.waitFor(t, 1, "PaymentAuthorized")
	if len(got[second]) != 1 {
		t.Fatalf("authorized %v; want the order placed after the provider came back, %s", got, second)
	}
	if c := sim.Charged(); len(c) != 1 {
		t.Fatalf("money taken %v; want once, for %s", c, second)
	}
}
