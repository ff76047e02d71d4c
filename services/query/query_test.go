package query_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"iter"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// store is what the tests use of an event store: what the services and
// the runner need, and appending and reading behind their backs.
type store interface {
	command.Store
	projections.Log
	Read(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error]
	LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error)
}

type env struct {
	cmd    ordersv1.OrderCommandServiceClient
	q      ordersv1.OrderQueryServiceClient
	admin  ordersv1.OrderAdminServiceClient
	store  store
	nstore *eventstore.Store   // startNATS only
	js     jetstream.JetStream // startNATS only
	log    projections.Log     // the runner's log: the store unless a test wraps it
	runner *projections.Runner
	// feed outlives runner restarts, as a query service's does.
	feed *projections.Feed
	stop func()
	dir  string
	// wrapLog, when set, wraps the store as the runners' log, and
	// runnerOpts are the first runner's options: for a test that must hold
	// the runner at a point of its start.
	wrapLog    func(projections.Log) projections.Log
	runnerOpts []projections.Option
	// keys, when set, seals personal data (the command service), opens
	// it (the runner and the query service) and serves ForgetCustomer.
	keys *pii.Keyring
}

func start(t *testing.T) *env { return startWith(t, 0) }

// startWith starts an env on the in-memory event store, which obeys the
// JetStream store's contract (estest.Run), whose query service has opts on
// top of a feed keeping history changes (0: the default) and the log's
// history.
func startWith(t *testing.T, history int, opts ...query.Option) *env {
	return serve(t, &env{store: memstore.New()}, history, opts...)
}

// startWithKeys is startWith with personal data sealed by a keyring of
// its own.
func startWithKeys(t *testing.T, history int) *env {
	t.Helper()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{7}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, &env{store: memstore.New(), keys: pii.NewKeyring(pii.NewMemStore(), master)}, history)
}

// startNATS is startWith on the JetStream store, configured by storeOpts,
// on a memory-backed stream of a new embedded nats-server: for what only
// JetStream holds, such as messages that are not events.
func startNATS(t *testing.T, storeOpts []eventstore.Option, history int, opts ...query.Option) *env {
	t.Helper()
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js, append([]eventstore.Option{eventstore.WithStorage(jetstream.MemoryStorage)}, storeOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, &env{store: store, nstore: store, js: js}, history, opts...)
}

// serve runs the runner and the command, query and admin services of e
// on a real loopback gRPC listener.
func serve(t testing.TB, e *env, history int, opts ...query.Option) *env {
	t.Helper()
	store := e.store
	e.log, e.dir, e.feed = store, t.TempDir(), projections.NewFeed(history)
	if e.wrapLog != nil {
		e.log = e.wrapLog(store)
	}
	var cmdOpts []command.Option
	var adminOpts []query.AdminOption
	if e.keys != nil {
		e.runnerOpts = append(e.runnerOpts, projections.WithKeyring(e.keys))
		cmdOpts = append(cmdOpts, command.WithKeyring(e.keys))
		opts = append(opts, query.WithKeyring(e.keys))
	}
	e.startRunner(t, e.runnerOpts...)
	gs := grpc.NewServer()
	cmd, err := command.New(store, cmdOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if e.keys != nil {
		adminOpts = append(adminOpts, query.WithForgetter(cmd))
	}
	ordersv1.RegisterOrderCommandServiceServer(gs, cmd)
	ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runnerRef{e}, append([]query.Option{query.WithFeed(e.feed), query.WithHistory(store), query.WithHead(store)}, opts...)...))
	admin, err := query.NewAdmin(runnerRef{e}, store, nil, adminOpts...)
	if err != nil {
		t.Fatal(err)
	}
	ordersv1.RegisterOrderAdminServiceServer(gs, admin)
	conn := listen(t, gs)
	e.cmd = ordersv1.NewOrderCommandServiceClient(conn)
	e.q = ordersv1.NewOrderQueryServiceClient(conn)
	e.admin = ordersv1.NewOrderAdminServiceClient(conn)
	return e
}

// listen serves gs on a loopback port of its own until t ends, and returns
// a connection to it.
func listen(t testing.TB, gs *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// runnerRef lets a test restart the runner under live services.
type runnerRef struct{ e *env }

func (r runnerRef) ReadModel() *projections.ReadModel { return r.e.runner.ReadModel() }
func (r runnerRef) WaitFor(ctx context.Context, p uint64) error {
	return r.e.runner.WaitFor(ctx, p)
}
func (r runnerRef) WaitForCommitted(ctx context.Context, p uint64) error {
	return r.e.runner.WaitForCommitted(ctx, p)
}
func (r runnerRef) Position() uint64 { return r.e.runner.Position() }
func (r runnerRef) Rebuild(ctx context.Context, f func(projections.Progress)) error {
	return r.e.runner.Rebuild(ctx, f)
}
func (r runnerRef) Rebuilding() bool     { return r.e.runner.Rebuilding() }
func (r runnerRef) DeadLettered() uint64 { return r.e.runner.DeadLettered() }

// projection is one run of a runner on the env's read-model directory.
type projection struct {
	runner *projections.Runner
	dir    *projections.Dir
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// halt stops the run (if it has not stopped by itself), closes its
// read-model directory and returns what Run returned.
func (p *projection) halt() error {
	p.once.Do(func() {
		p.cancel()
		p.err = <-p.done
		_ = p.dir.Close()
	})
	return p.err
}

// runProjection opens the read model directory and runs a projection on it
// until halted (or the test ends); Run's error is left to the caller.
func (e *env) runProjection(t testing.TB, opts ...projections.Option) *projection {
	t.Helper()
	dir, err := projections.Open(t.Context(), e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.runner, err = projections.NewRunner(e.log, dir, append([]projections.Option{projections.WithFeed(e.feed)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &projection{runner: e.runner, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- p.runner.Run(ctx) }()
	t.Cleanup(func() { _ = p.halt() })
	return p
}

// startRunner runs a projection that must stop without error, until the
// returned stop is called (or the test ends).
func (e *env) startRunner(t testing.TB, opts ...projections.Option) (stop func()) {
	t.Helper()
	p := e.runProjection(t, opts...)
	stop = func() {
		if err := p.halt(); err != nil {
			t.Errorf("runner: %v", err)
		}
	}
	t.Cleanup(stop)
	e.stop = stop
	return stop
}

var seq struct {
	sync.Mutex
	n int
}

func rid() string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	return fmt.Sprintf("q-%d-%d", time.Now().UnixNano(), seq.n)
}

func addr() *ordersv1.Address {
	return &ordersv1.Address{Line1: "1 Way", City: "Paris", Country: "FR"}
}

func consistency(p uint64) *ordersv1.Consistency { return &ordersv1.Consistency{MinPosition: p} }

func TestReadYourWrites(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	for i := range 20 {
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "ryw", Currency: "EUR",
			Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: int64(i + 1), UnitPrice: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		g, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(), Consistency: consistency(c.GetPosition())})
		if err != nil {
			t.Fatalf("GetOrder at %d: %v", c.GetPosition(), err)
		}
		if g.GetPosition() < c.GetPosition() || !proto.Equal(g.GetOrder(), c.GetOrder()) {
			t.Fatalf("read model answer differs from the command's:\n%v\n%v", g.GetOrder(), c.GetOrder())
		}
	}
	// No append returned a position past the log's head: not a read
	// model behind, which a retry would mend.
	_, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "x", Consistency: &ordersv1.Consistency{MinPosition: 1 << 40, MaxWait: durationpb.New(50 * time.Millisecond)}})
	if status.Code(err) != codes.OutOfRange {
		t.Fatalf("far-ahead position: %v, want OutOfRange", err)
	}
	if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "no-such-order"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown order: %v", err)
	}
}

// workload drives a random mix of commands through the real command
// service: many orders, every transition, stale revisions and retries.
func workload(t *testing.T, e *env, orders, steps int, r *rand.Rand) (last uint64) {
	t.Helper()
	ids, last := createOrders(t, e, orders)
	l, err := commands(t.Context(), e, ids, steps, r)
	if err != nil {
		t.Fatal(err)
	}
	return max(last, l)
}

// createOrders creates n orders for customers cust-0 to cust-4, in two
// currencies, and returns their ids and the last position.
func createOrders(t *testing.T, e *env, n int) (ids []string, last uint64) {
	t.Helper()
	for i := range n {
		c, err := e.cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: fmt.Sprintf("cust-%d", i%5),
			Currency: []string{"EUR", "USD"}[i%2], Lines: []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: int64(100 + i)}}, ShippingAddress: addr()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.GetOrder().GetOrderId())
		last = max(last, c.GetPosition())
	}
	return ids, last
}

// commands sends steps random commands on the orders ids: every
// transition, payments of the order's total, refunds, stale and current
// expected revisions (which lose races against concurrent callers), and
// retries. It is safe to run from several goroutines on the same orders.
func commands(ctx context.Context, e *env, ids []string, steps int, r *rand.Rand) (last uint64, err error) {
	revs := map[string]uint64{}
	note := func(o *ordersv1.Order, pos uint64) {
		revs[o.GetOrderId()] = o.GetRevision()
		last = max(last, pos)
	}
	type resp interface {
		GetOrder() *ordersv1.Order
		GetPosition() uint64
	}
	for range steps {
		id := ids[r.IntN(len(ids))]
		reqID := rid()
		var expected *uint64
		switch r.IntN(8) {
		case 0: // surely stale: before the order's last event
			if revs[id] > 0 {
				stale := revs[id] - 1
				expected = &stale
			}
		case 1: // current unless another writer got there first
			if revs[id] > 0 {
				cur := revs[id]
				expected = &cur
			}
		}
		// The order as the read model has it, for amounts that match.
		var seen *ordersv1.Order
		if g, gerr := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id, Consistency: consistency(revs[id])}); gerr == nil {
			seen = g.GetOrder()
		}
		var call func() (resp, error)
		switch r.IntN(10) {
		case 0:
			req := &ordersv1.AddItemRequest{RequestId: reqID, OrderId: id, Sku: fmt.Sprintf("S%d", r.IntN(6)), Quantity: int64(1 + r.IntN(5)), UnitPrice: int64(r.IntN(1000)), ExpectedRevision: expected}
			call = func() (resp, error) { return e.cmd.AddItem(ctx, req) }
		case 1:
			req := &ordersv1.ChangeItemQuantityRequest{RequestId: reqID, OrderId: id, Sku: fmt.Sprintf("S%d", r.IntN(6)), Quantity: int64(1 + r.IntN(5)), ExpectedRevision: expected}
			call = func() (resp, error) { return e.cmd.ChangeItemQuantity(ctx, req) }
		case 2:
			req := &ordersv1.RemoveItemRequest{RequestId: reqID, OrderId: id, Sku: fmt.Sprintf("S%d", r.IntN(6))}
			call = func() (resp, error) { return e.cmd.RemoveItem(ctx, req) }
		case 3:
			req := &ordersv1.PlaceOrderRequest{RequestId: reqID, OrderId: id, ExpectedRevision: expected}
			call = func() (resp, error) { return e.cmd.PlaceOrder(ctx, req) }
		case 4:
			outcome := ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED
			if r.IntN(3) == 0 {
				outcome = ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED
			}
			req := &ordersv1.RecordPaymentRequest{RequestId: reqID, OrderId: id, Outcome: outcome, PaymentRef: "p-" + reqID, Amount: seen.GetTotal(), ExpectedRevision: expected}
			call = func() (resp, error) { return e.cmd.RecordPayment(ctx, req) }
		case 5:
			req := &ordersv1.CancelOrderRequest{RequestId: reqID, OrderId: id, ExpectedRevision: expected}
			call = func() (resp, error) { return e.cmd.CancelOrder(ctx, req) }
		case 6:
			req := &ordersv1.ShipOrderRequest{RequestId: reqID, OrderId: id, Carrier: "UPS"}
			call = func() (resp, error) { return e.cmd.ShipOrder(ctx, req) }
		case 7:
			req := &ordersv1.ConfirmDeliveryRequest{RequestId: reqID, OrderId: id}
			call = func() (resp, error) { return e.cmd.ConfirmDelivery(ctx, req) }
		case 8:
			req := &ordersv1.SetShippingAddressRequest{RequestId: reqID, OrderId: id, ShippingAddress: addr()}
			call = func() (resp, error) { return e.cmd.SetShippingAddress(ctx, req) }
		case 9:
			req := &ordersv1.RecordRefundRequest{RequestId: reqID, OrderId: id, RefundRef: "r-" + reqID, Amount: seen.GetPaidAmount()}
			call = func() (resp, error) { return e.cmd.RecordRefund(ctx, req) }
		}
		res, err := call()
		if err == nil && r.IntN(4) == 0 { // a retry returns the original
			again, err2 := call()
			if err2 != nil || again.GetPosition() != res.GetPosition() {
				// A command that decided no events wrote nothing a retry
				// could find: after another writer's change the retry is
				// decided afresh and may act or be refused like any
				// command. One that appended must be answered the same.
				recs, lerr := e.store.Load(ctx, id)
				if lerr != nil {
					return last, lerr
				}
				appended := false
				for _, rec := range recs {
					if rec.Meta.RequestID == reqID && rec.Position <= res.GetPosition() {
						appended = true
					}
				}
				refused := false
				switch status.Code(err2) {
				case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
					refused = true
				}
				if appended || (err2 != nil && !refused) {
					return last, fmt.Errorf("retry of %s answered %v (%v), the original call %v", reqID, again, err2, res)
				}
			}
		}
		switch status.Code(err) {
		case codes.OK:
			note(res.GetOrder(), res.GetPosition())
		case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		default:
			return last, fmt.Errorf("unexpected error: %w", err)
		}
	}
	return last, nil
}

// sameOrders fails the test unless a rebuilt read model lists exactly the
// orders the incrementally built one does, field for field.
func sameOrders(t *testing.T, rebuilt, incremental []*ordersv1.Order) {
	t.Helper()
	if len(rebuilt) != len(incremental) {
		t.Fatalf("rebuilt read model has %d orders, the incremental one %d", len(rebuilt), len(incremental))
	}
	for i := range rebuilt {
		if !proto.Equal(rebuilt[i], incremental[i]) {
			t.Fatalf("rebuilt order differs from the incremental one:\n%v\n%v", rebuilt[i], incremental[i])
		}
	}
}

// rebuildEqualsIncremental rebuilds the read model through the admin RPC
// and fails the test unless the rebuilt one lists the orders the served
// (incremental) one did, in the same order and field for field, and serves
// want (see checkServed). It returns the rebuild's last progress report.
func rebuildEqualsIncremental(t *testing.T, e *env, want expected) *ordersv1.RebuildReadModelResponse {
	t.Helper()
	incremental := listAll(t, e, &ordersv1.ListOrdersRequest{PageSize: 7})
	p, err := rebuildRPC(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := listAll(t, e, &ordersv1.ListOrdersRequest{PageSize: 500})
	sameOrders(t, rebuilt, incremental)
	checkServed(t, e, want, customers...)
	return p
}

// listAll walks every page of the read model.
func listAll(t *testing.T, e *env, req *ordersv1.ListOrdersRequest) []*ordersv1.Order {
	t.Helper()
	var out []*ordersv1.Order
	for {
		res, err := e.q.ListOrders(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.GetOrders()...)
		if res.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = res.GetNextPageToken()
	}
}

var seedFlag = flag.Uint64("seed", 0, "seed of the property tests; 0 runs several random seeds")

// propertySeeds returns the seeds a property test runs: the -seed flag's,
// or a few fresh random ones, each logged so that a failure names it.
func propertySeeds() []uint64 {
	if *seedFlag != 0 {
		return []uint64{*seedFlag}
	}
	return []uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()}
}

var customers = []string{"cust-0", "cust-1", "cust-2", "cust-3", "cust-4", "nobody"}

// Concurrent writers send random commands on shared orders; the read model
// built as they go must equal the domain's fold of the log (orders and
// customer summaries), and so must one rebuilt from scratch. The
// interleaving of the writers is up to the scheduler: a seed reproduces
// the commands each writer sends, not their order in the log.
func TestReadModelEqualsFoldAndRebuild(t *testing.T) {
	for _, seed := range propertySeeds() {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("reproduce with: go test -race -run 'TestReadModelEqualsFoldAndRebuild' ./services/query/ -args -seed=%d", seed)
			e := start(t)
			ctx := t.Context()
			ids, last := createOrders(t, e, 30)
			const writers = 3
			errs := make([]error, writers)
			lasts := make([]uint64, writers)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					lasts[w], errs[w] = commands(ctx, e, ids, 150, rand.New(rand.NewPCG(seed, uint64(w))))
				})
			}
			wg.Wait()
			for w := range writers {
				if errs[w] != nil {
					t.Fatalf("writer %d: %v", w, errs[w])
				}
				last = max(last, lasts[w])
			}
			if err := e.runner.WaitForCommitted(ctx, last); err != nil {
				t.Fatal(err)
			}
			want := expectFromLog(t, e, last)
			if len(want.skipped) != 0 {
				t.Fatalf("the command side wrote events the fold refuses at %v", want.skipped)
			}
			checkServed(t, e, want, customers...)
			if p := rebuildEqualsIncremental(t, e, want); p.GetPosition() < last {
				t.Fatalf("rebuild ended with %v", p)
			}
		})
	}
}

// Restarts between small batches: the checkpoint never goes back, and the
// orders and the full customer summaries (counts and spend, compared both
// ways) equal the fold of the log: nothing counted twice or missed.
func TestCrashResumeCountsNothingTwice(t *testing.T) {
	e := start(t)
	r := rand.New(rand.NewPCG(3, 4))
	var last uint64
	stop := e.stop
	var checkpoints []uint64
	for range 4 {
		// Stop the runner wherever it is (typically mid-stream, between
		// small batches), then restart it on the same files.
		stop()
		checkpoints = append(checkpoints, e.runner.Position())
		stop = e.startRunner(t, projections.WithBatch(3, time.Millisecond))
		if p, err := e.runner.ReadModel().Position(t.Context()); err != nil || p < checkpoints[len(checkpoints)-1] {
			t.Fatalf("checkpoint went back from %d to %d", checkpoints[len(checkpoints)-1], p)
		}
		last = max(last, workload(t, e, 10, 120, r))
	}
	if err := e.runner.WaitForCommitted(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	checkServed(t, e, expectFromLog(t, e, last), customers...)
}

func TestPaginationWhileCreating(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	var last uint64
	for range 45 {
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "pager", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		last = c.GetPosition()
	}
	req := &ordersv1.ListOrdersRequest{CustomerId: "pager", PageSize: 10, Consistency: consistency(last)}
	seen := map[string]int{}
	pages := 0
	for {
		res, err := e.q.ListOrders(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range res.GetOrders() {
			seen[o.GetOrderId()]++
		}
		// New orders arrive between pages; they are newer than the
		// cursor, so they never shift what remains.
		if _, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "pager", Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		if res.GetNextPageToken() == "" {
			break
		}
		req.PageToken = res.GetNextPageToken()
		req.Consistency = nil
	}
	if len(seen) != 45 || pages != 5 {
		t.Fatalf("saw %d distinct orders in %d pages, want 45 in 5", len(seen), pages)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("order %s listed %d times", id, n)
		}
	}
	bad := []*ordersv1.ListOrdersRequest{
		{PageSize: -1},
		{PageSize: 501},
		{PageToken: "!!!not-base64"},
		{PageToken: "eyJjIjoxfQ"}, // decodes, but no id
		{Status: ordersv1.OrderStatus(99)},
		{CustomerId: "two words"},
		{CustomerId: "caf\u00e9"},
		{CustomerId: strings.Repeat("c", 65)},
	}
	if req.PageToken != "" {
		bad = append(bad, &ordersv1.ListOrdersRequest{CustomerId: "other", PageToken: req.PageToken}) // token of other filters
	}
	for _, b := range bad {
		if _, err := e.q.ListOrders(ctx, b); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("ListOrders(%v): %v, want InvalidArgument", b, err)
		}
	}
	// Ids no command could have accepted are the caller's mistake, not
	// orders that are merely absent.
	for _, id := range []string{"", "two words", "caf\u00e9", "tab\there", strings.Repeat("o", 65)} {
		if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GetOrder(%q): %v, want InvalidArgument", id, err)
		}
		if _, err := e.q.GetCustomerSummary(ctx, &ordersv1.GetCustomerSummaryRequest{CustomerId: id}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GetCustomerSummary(%q): %v, want InvalidArgument", id, err)
		}
	}
}

func TestPoisonEventIsDeadLettered(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	poison := eventstore.EventData{Type: "OrderTeleported", Data: []byte("\x00garbage")}
	if _, err := e.store.Append(ctx, "poison-1", 0, []eventstore.EventData{poison}); err != nil {
		t.Fatal(err)
	}
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "after-poison", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(), Consistency: consistency(c.GetPosition())}); err != nil {
		t.Fatalf("projection did not continue past the poison event: %v", err)
	}
	// The dead letters are read from the file.
	if err := e.runner.WaitForCommitted(ctx, c.GetPosition()); err != nil {
		t.Fatal(err)
	}
	dl, err := e.runner.ReadModel().DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Position != 1 || dl[0].Type != "OrderTeleported" || dl[0].OrderID != "poison-1" {
		t.Fatalf("dead letters: %+v", dl)
	}
	st, err := e.admin.GetProjectionStatus(ctx, &ordersv1.GetProjectionStatusRequest{})
	if err != nil || st.GetDeadLettered() != 1 || st.GetPosition() < c.GetPosition() {
		t.Fatalf("status %v %v", st, err)
	}
}

func TestRebuildUnderLoad(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	last := workload(t, e, 20, 100, rand.New(rand.NewPCG(5, 6)))
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []*ordersv1.CreateOrderResponse
	var failures []error
	wg.Go(func() {
		for loadCtx.Err() == nil {
			c, err := e.cmd.CreateOrder(loadCtx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "load", Currency: "EUR"})
			if loadCtx.Err() != nil {
				return
			}
			mu.Lock()
			if err != nil {
				failures = append(failures, err)
			} else {
				acked = append(acked, c)
			}
			mu.Unlock()
		}
	})
	wg.Go(func() {
		for loadCtx.Err() == nil {
			_, err := e.q.ListOrders(loadCtx, &ordersv1.ListOrdersRequest{PageSize: 20})
			if loadCtx.Err() != nil {
				return
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("query during rebuild: %w", err))
				mu.Unlock()
			}
		}
	})
	stream, err := e.admin.RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	for !first.GetSwapped() {
		if first, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	stopLoad()
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	for _, c := range acked {
		g, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(), Consistency: consistency(c.GetPosition())})
		if err != nil || g.GetOrder().GetRevision() != c.GetOrder().GetRevision() {
			t.Fatalf("order created during the rebuild missing after the swap: %v %v", g, err)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no command ran during the rebuild")
	}
}

func TestCancelledRebuildLeavesLiveIntact(t *testing.T) {
	e := start(t)
	last := workload(t, e, 5, 30, rand.New(rand.NewPCG(7, 8)))
	if err := e.runner.WaitForCommitted(t.Context(), last); err != nil {
		t.Fatal(err)
	}
	live := e.runner.ReadModel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := e.runner.Rebuild(ctx, nil); err == nil {
		t.Fatal("cancelled rebuild reported success")
	}
	if e.runner.ReadModel() != live {
		t.Fatal("cancelled rebuild swapped the read model")
	}
	if _, err := e.q.ListOrders(t.Context(), &ordersv1.ListOrdersRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestSecondRebuildIsRefused(t *testing.T) {
	e := start(t)
	workload(t, e, 3, 10, rand.New(rand.NewPCG(11, 12)))
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	go func() {
		done <- e.runner.Rebuild(t.Context(), func(projections.Progress) {
			once.Do(func() { close(started) })
			<-release
		})
	}()
	<-started
	stream, err := e.admin.RebuildReadModel(t.Context(), &ordersv1.RebuildReadModelRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second rebuild: %v, want FailedPrecondition", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCreatedTimeBoundsBeyondNanoseconds checks created-time filters
// outside what int64 Unix nanoseconds hold (1677-2262): they must neither
// overflow nor wrap, in either direction.
func TestCreatedTimeBoundsBeyondNanoseconds(t *testing.T) {
	e := start(t)
	createCommitted(t, e, "far", 3)
	ts := func(year int) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	cases := []struct {
		name          string
		after, before *timestamppb.Timestamp
		want          int
	}{
		{"before 9999", nil, ts(9999), 3},
		{"before 2263", nil, ts(2263), 3},
		{"after year 1", ts(1), nil, 3},
		{"after 1600, before 9999", ts(1600), ts(9999), 3},
		{"after 9000", ts(9000), nil, 0},
		{"after 9000, before 9999", ts(9000), ts(9999), 0},
		{"before 1600", nil, ts(1600), 0},
		{"after year 1, before 1600", ts(1), ts(1600), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &ordersv1.ListOrdersRequest{CustomerId: "far", CreatedAfter: tc.after, CreatedBefore: tc.before, PageSize: 1}
			if got := listAll(t, e, req); len(got) != tc.want {
				t.Fatalf("%d orders, want %d", len(got), tc.want)
			}
		})
	}
}

// TestRebuildDeadLettersPoisonAppendedDuringIt appends a message that is
// not an event between the rebuild's replay and its catch-up: the rebuild
// must dead-letter it, as the live projection does, and still swap.
func TestRebuildDeadLettersPoisonAppendedDuringIt(t *testing.T) {
	e := startNATS(t, nil, 0) // a message that is not an event: only JetStream holds one
	ctx := t.Context()
	for range 5 {
		if _, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "rb", Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	var once sync.Once
	var poison uint64
	var after *ordersv1.CreateOrderResponse
	var injectErr error
	err := e.runner.Rebuild(ctx, func(p projections.Progress) {
		if p.Swapped || p.Position < p.Target {
			return
		}
		// The replay reached its target; the catch-up with the live read
		// model comes next. The live projection takes in a poison message
		// and an order meanwhile.
		once.Do(func() {
			ack, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: e.nstore.Subject("poison-rb"), Data: []byte("no headers")})
			if err != nil {
				injectErr = err
				return
			}
			poison = ack.Sequence
			if after, err = e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "rb", Currency: "EUR"}); err != nil {
				injectErr = err
				return
			}
			injectErr = e.runner.WaitForCommitted(ctx, after.GetPosition())
		})
	})
	if injectErr != nil {
		t.Fatal(injectErr)
	}
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if poison == 0 {
		t.Fatal("the rebuild reported no progress at its target")
	}
	dl, err := e.runner.ReadModel().DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dl) != 1 || dl[0].Position != poison {
		t.Fatalf("dead letters of the rebuilt read model: %+v, want position %d", dl, poison)
	}
	if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: after.GetOrder().GetOrderId(), Consistency: consistency(after.GetPosition())}); err != nil {
		t.Fatalf("order applied after the poison message: %v", err)
	}
}
