package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// flaky answers the first fail calls of each method with code, as a node
// answers UNAVAILABLE while the log elects a leader, and the later ones as
// a server would. It records each call's request id (the order id for
// queries).
type flaky struct {
	fail  int
	code  codes.Code
	mu    sync.Mutex
	calls map[string][]string
}

func (f *flaky) answer(method, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method] = append(f.calls[method], id)
	if len(f.calls[method]) <= f.fail {
		return status.Error(f.code, "no stream leader")
	}
	return nil
}

func (f *flaky) made(method string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls[method]...)
}

func flakyOrder(id string, st ordersv1.OrderStatus) *ordersv1.Order {
	return &ordersv1.Order{OrderId: id, CustomerId: "c", Status: st, Currency: "EUR", Total: 500, Revision: 2}
}

type flakyCommands struct {
	ordersv1.UnimplementedOrderCommandServiceServer
	*flaky
}

func (f flakyCommands) PlaceOrder(_ context.Context, req *ordersv1.PlaceOrderRequest) (*ordersv1.PlaceOrderResponse, error) {
	if err := f.answer("PlaceOrder", req.GetRequestId()); err != nil {
		return nil, err
	}
	return &ordersv1.PlaceOrderResponse{Order: flakyOrder(req.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_PLACED), Position: 7}, nil
}

func (f flakyCommands) CancelOrder(_ context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	if err := f.answer("CancelOrder", req.GetRequestId()); err != nil {
		return nil, err
	}
	return &ordersv1.CancelOrderResponse{Order: flakyOrder(req.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_CANCELLED), Position: 7}, nil
}

func (f flakyCommands) AddItem(_ context.Context, req *ordersv1.AddItemRequest) (*ordersv1.AddItemResponse, error) {
	if err := f.answer("AddItem", req.GetRequestId()); err != nil {
		return nil, err
	}
	return &ordersv1.AddItemResponse{Order: flakyOrder(req.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_DRAFT), Position: 7}, nil
}

type flakyQueries struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	*flaky
}

func (f flakyQueries) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	if err := f.answer("GetOrder", req.GetOrderId()); err != nil {
		return nil, err
	}
	return &ordersv1.GetOrderResponse{Order: flakyOrder(req.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_DRAFT)}, nil
}

func (f flakyQueries) ListOrders(_ context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	if err := f.answer("ListOrders", req.GetCustomerId()); err != nil {
		return nil, err
	}
	return &ordersv1.ListOrdersResponse{Orders: []*ordersv1.Order{flakyOrder("fl-1", ordersv1.OrderStatus_ORDER_STATUS_DRAFT)}}, nil
}

// serve serves the services register registers on a loopback port until
// the test ends, and returns its address.
func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func startFlaky(t *testing.T, fail int, code codes.Code) (*flaky, string) {
	t.Helper()
	f := &flaky{fail: fail, code: code, calls: map[string][]string{}}
	return f, serve(t, func(gs *grpc.Server) {
		ordersv1.RegisterOrderCommandServiceServer(gs, flakyCommands{flaky: f})
		ordersv1.RegisterOrderQueryServiceServer(gs, flakyQueries{flaky: f})
	})
}

// sameID checks that every call sent one request id, and returns it.
func sameID(t *testing.T, ids []string) string {
	t.Helper()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("the tries sent request ids %q, not one and the same", ids)
		}
	}
	return ids[0]
}

// A call answered UNAVAILABLE (the log electing a leader, a node
// restarting) is made again with the same request, request id included,
// until it lands; a command retried so is idempotent by the request-id rule.
func TestUnavailableIsRetried(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fail   int
		args   []string
		method string
		want   string // in stdout
	}{
		{"place", 1, []string{"orders", "place", "fl-1"}, "PlaceOrder", "placed"},
		// The request is built inside the call: each try must still
		// send the one request id made for the run.
		{"cancel", 2, []string{"orders", "cancel", "fl-1", "--reason", "dup"}, "CancelOrder", "cancelled"},
		{"given request id", 1, []string{"orders", "place", "fl-1", "--request-id", "place-fl-1"}, "PlaceOrder", "placed"},
		{"query", 1, []string{"orders", "get", "fl-1"}, "GetOrder", "fl-1"},
		{"list", 1, []string{"orders", "list", "--customer", "cust-fl", "-o", "json"}, "ListOrders", `"orderId":"fl-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, addr := startFlaky(t, tc.fail, codes.Unavailable)
			r := ok(t, run(t, addr, tc.args...))
			calls := f.made(tc.method)
			if len(calls) != tc.fail+1 {
				t.Fatalf("%d call(s) for %d UNAVAILABLE answer(s): %q", len(calls), tc.fail, calls)
			}
			id := sameID(t, calls)
			if tc.name == "given request id" && id != "place-fl-1" {
				t.Fatalf("sent request id %q, not --request-id", id)
			}
			if !strings.Contains(r.stdout, tc.want) || r.stderr != "" {
				t.Fatalf("stdout %q, stderr %q", r.stdout, r.stderr)
			}
		})
	}

	// add-item looks the currency up first: both calls are retried.
	t.Run("add-item", func(t *testing.T) {
		f, addr := startFlaky(t, 1, codes.Unavailable)
		ok(t, run(t, addr, "orders", "add-item", "fl-1", "PEN-9", "1", "1.99"))
		if n := len(f.made("GetOrder")); n != 2 {
			t.Fatalf("the currency lookup was made %d time(s)", n)
		}
		if calls := f.made("AddItem"); len(calls) != 2 {
			t.Fatalf("AddItem made %d time(s)", len(calls))
		} else {
			sameID(t, calls)
		}
	})

	// A person watching stderr is told; the answer still lands on stdout.
	t.Run("terminal", func(t *testing.T) {
		_, addr := startFlaky(t, 1, codes.Unavailable)
		r := ok(t, call{addr: addr, errTerm: true}.run(t, "orders", "place", "fl-1"))
		if !strings.HasPrefix(r.stderr, "ordersctl: unavailable: no stream leader; retrying in ") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("stderr %q", r.stderr)
		}
		if !strings.Contains(r.stdout, "placed") {
			t.Fatalf("stdout %q", r.stdout)
		}
	})
}

// Only UNAVAILABLE is retried; a server that stays unavailable fails the
// command with it once --timeout has passed, exit 4.
func TestOtherCodesAreNotRetried(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		exit int
	}{
		{codes.ResourceExhausted, cli.ExitUnavailable},
		{codes.DeadlineExceeded, cli.ExitUnavailable},
		{codes.FailedPrecondition, cli.ExitConflict},
		{codes.Internal, cli.ExitOther},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			f, addr := startFlaky(t, 1, tc.code)
			fails(t, run(t, addr, "orders", "place", "fl-1"), tc.exit)
			if n := len(f.made("PlaceOrder")); n != 1 {
				t.Fatalf("%v answered once: %d call(s)", tc.code, n)
			}
		})
	}
	t.Run("unavailable throughout", func(t *testing.T) {
		f, addr := startFlaky(t, 1<<30, codes.Unavailable)
		r := fails(t, run(t, addr, "orders", "place", "fl-1", "--timeout", "1s"), cli.ExitUnavailable)
		calls := f.made("PlaceOrder")
		if len(calls) < 2 {
			t.Fatalf("%d call(s) within --timeout", len(calls))
		}
		// One line, the last answer and the request id to retry under.
		id := sameID(t, calls)
		if !strings.HasPrefix(r.stderr, "ordersctl: unavailable: no stream leader;") || !strings.HasSuffix(r.stderr, "--request-id "+id+"\n") ||
			strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("stderr %q", r.stderr)
		}
	})
}

// restarting is a query service whose first WatchOrder sends the order's
// current state and then ends UNAVAILABLE, as a node shutting down ends its
// streams; later ones send the next change and run until the client goes.
type restarting struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	mu   sync.Mutex
	from []uint64
}

func (r *restarting) WatchOrder(req *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	r.mu.Lock()
	r.from = append(r.from, req.GetFromPosition())
	first := len(r.from) == 1
	r.mu.Unlock()
	o := flakyOrder(req.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_DRAFT)
	if first {
		if err := s.Send(&ordersv1.WatchOrderResponse{Order: o, Position: 5, Revision: 1}); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "server shutting down")
	}
	o.Status = ordersv1.OrderStatus_ORDER_STATUS_PLACED
	if err := s.Send(&ordersv1.WatchOrderResponse{Order: o, Position: 6, Revision: 2, EventType: "OrderPlaced", Actor: "bob"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// A watch whose server goes away reconnects and resumes after the last
// position it printed: nothing is missed or printed twice, and it still
// ends at Ctrl-C with exit 0.
func TestWatchResumesAfterUnavailable(t *testing.T) {
	srv := &restarting{}
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
	w := startWatch(t, call{addr: addr}, "orders", "watch", "fl-1")
	if f := strings.Split(w.next(t), "\t"); len(f) != 6 || f[0] != "5" || f[2] != "draft" || f[4] != "current" {
		t.Fatalf("first line: %q", f)
	}
	if f := strings.Split(w.next(t), "\t"); len(f) != 6 || f[0] != "6" || f[2] != "placed" || f[4] != "OrderPlaced" {
		t.Fatalf("line after the server came back: %q", f)
	}
	w.end(t)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.from) != 2 || srv.from[0] != 0 || srv.from[1] != 5 {
		t.Fatalf("watches from positions %v, want [0 5]", srv.from)
	}

	// A server that does not come back: exit 4 once --timeout has passed.
	fails(t, run(t, closedAddr(t), "orders", "watch", "fl-1", "--timeout", "1s"), cli.ExitUnavailable)
}

// full is a query service that sends one change of a watch of every order
// and cuts it off for falling behind; then its streams are all taken, and
// it refuses every watch with RESOURCE_EXHAUSTED.
type full struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	calls atomic.Int32
}

func (f *full) WatchOrders(_ *ordersv1.WatchOrdersRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	if f.calls.Add(1) == 1 {
		if err := s.Send(&ordersv1.WatchOrdersResponse{Position: 4}); err != nil {
			return err
		}
		return status.Error(codes.ResourceExhausted, "watcher fell behind the changes; resume from position 4")
	}
	return status.Error(codes.ResourceExhausted, "too many streams")
}

// A watch the server keeps refusing (its streams all taken) gives up with
// exit 4 once --timeout has passed, as one whose server went away does. It
// asked again for as long as the server stayed full, printing nothing.
func TestWatchRefusedByAFullServerGivesUp(t *testing.T) {
	srv := &full{}
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderQueryServiceServer(gs, srv) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if r := (call{addr: addr, ctx: ctx}).run(t, "orders", "watch", "--customer", "c", "--timeout", "1s"); r.code != cli.ExitUnavailable {
		t.Fatalf("exit %d, want %d (the test's context ended it, or it ended otherwise): %s", r.code, cli.ExitUnavailable, r.stderr)
	}
	if n := srv.calls.Load(); n < 2 {
		t.Fatalf("%d watches, want the first and at least one refused try", n)
	}
}

// cutAudit streams n events, then fails the stream UNAVAILABLE, as a node
// shutting down mid-export does.
type cutAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
	n int
}

func (c cutAudit) StreamEvents(_ *ordersv1.StreamEventsRequest, st grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	for i := 1; i <= c.n; i++ {
		ev := &ordersv1.RecordedEvent{Position: uint64(i), OrderId: fmt.Sprintf("order-with-a-long-enough-id-%04d", i), Type: "OrderCreated"}
		if err := st.Send(&ordersv1.StreamEventsResponse{Event: ev}); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "node shutting down")
}

// An export cut off by the server ends with whole lines, every event it
// received among them, so that one resumed after the last position
// written adds to a valid file. Before, the buffered tail was dropped and
// the last line written was cut in the middle.
func TestExportCutOffEndsWithWholeLines(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, cutAudit{n: 100}) })
	r := run(t, addr, "audit", "export")
	if r.code == 0 {
		t.Fatalf("an export the server cut off exited 0")
	}
	if !strings.HasSuffix(r.stdout, "\n") {
		t.Fatalf("the export ends in the middle of a line: …%q", r.stdout[max(0, len(r.stdout)-80):])
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("line %d is not JSON: %q", i+1, l)
		}
	}
	if len(lines) != 100 {
		t.Fatalf("%d lines; want all 100 events received", len(lines))
	}
}

// refusingAudit answers every export UNAVAILABLE before any event.
type refusingAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (refusingAudit) StreamEvents(*ordersv1.StreamEventsRequest, grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	return status.Error(codes.Unavailable, "node shutting down")
}

// An export the server refuses leaves --file as it was. Before, the file
// was emptied before the server had answered, so a retried export to the
// same file lost the one written before.
func TestRefusedExportKeepsTheFile(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, refusingAudit{}) })
	file := filepath.Join(t.TempDir(), "events.jsonl")
	const earlier = `{"position":"1"}` + "\n"
	if err := os.WriteFile(file, []byte(earlier), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := run(t, addr, "audit", "export", "--file", file); r.code == 0 {
		t.Fatal("a refused export exited 0")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != earlier {
		t.Fatalf("the file after a refused export: %q, %v; want it as it was", b, err)
	}
}

// silentAudit answers an export with nothing until its caller goes away,
// saying on entered that the call reached it.
type silentAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
	entered chan struct{}
}

func (a silentAudit) StreamEvents(_ *ordersv1.StreamEventsRequest, s grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	a.entered <- struct{}{}
	<-s.Context().Done()
	return s.Context().Err()
}

// A follow the user stops before any event came leaves --file as it was,
// and exits 0 as any stopped follow does. Before, the file was emptied.
func TestFollowStoppedBeforeAnyEventKeepsTheFile(t *testing.T) {
	a := silentAudit{entered: make(chan struct{}, 1)}
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, a) })
	file := filepath.Join(t.TempDir(), "events.jsonl")
	const earlier = `{"position":"1"}` + "\n"
	if err := os.WriteFile(file, []byte(earlier), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan result, 1)
	go func() { done <- call{ctx: ctx, addr: addr}.run(t, "audit", "export", "--follow", "--file", file) }()
	<-a.entered
	stop()
	if r := <-done; r.code != cli.ExitOK {
		t.Fatalf("a stopped follow: exit %d, stderr %q", r.code, r.stderr)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != earlier {
		t.Fatalf("the file after a follow stopped before any event: %q, %v; want it as it was", b, err)
	}
}

// lostRetryAnswer answers the first retry of parked jobs UNAVAILABLE (as
// one cut short after running some), and the next with what it ran.
type lostRetryAnswer struct {
	ordersv1.UnimplementedPaymentAdminServiceServer
	calls *atomic.Int32
}

func (l lostRetryAnswer) RetryParkedPayment(context.Context, *ordersv1.RetryParkedPaymentRequest) (*ordersv1.RetryParkedPaymentResponse, error) {
	if l.calls.Add(1) == 1 {
		return nil, status.Error(codes.Unavailable, "the event store is away")
	}
	return &ordersv1.RetryParkedPaymentResponse{Completed: 1}, nil
}

// A retry of parked jobs tried again after an answer was lost says that
// the counts it prints are the last try's only: the lost one may have run
// jobs. Before, it printed them as all that was done.
func TestParkedRetryTriedAgainSaysTheCountsAreTheLastTrys(t *testing.T) {
	var calls atomic.Int32
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterPaymentAdminServiceServer(gs, lostRetryAnswer{calls: &calls}) })
	r := ok(t, run(t, addr, "admin", "parked", "retry"))
	if calls.Load() != 2 || r.stderr == "" {
		t.Fatalf("%d tries, stderr %q; want 2 and a note that the first may have run jobs", calls.Load(), r.stderr)
	}
}

// threeEvents exports the log's three events from the position asked.
type threeEvents struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (threeEvents) StreamEvents(req *ordersv1.StreamEventsRequest, s grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	for p := max(req.GetFromPosition(), 1); p <= 3; p++ {
		if err := s.Send(&ordersv1.StreamEventsResponse{Event: &ordersv1.RecordedEvent{Position: p, Type: "OrderCreated", OrderId: "o"}}); err != nil {
			return err
		}
	}
	return nil
}

// An export resumed with --from and --append adds to --file what the cut
// one did not write, as the help says to resume one; without --append the
// file starts afresh. Before, a resumed export emptied the file first.
func TestExportResumedWithAppendAddsToTheFile(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, threeEvents{}) })
	file := filepath.Join(t.TempDir(), "events.jsonl")
	positions := func() []string {
		var ps []string
		for _, l := range strings.Split(strings.TrimSpace(readFile(t, file)), "\n") {
			ps = append(ps, fmt.Sprint(jsonOf(t, l)["position"]))
		}
		return ps
	}
	ok(t, run(t, addr, "audit", "export", "--file", file, "--from", "1"))
	if err := os.Truncate(file, int64(len(strings.SplitAfter(readFile(t, file), "\n")[0]))); err != nil { // cut after the first event
		t.Fatal(err)
	}
	ok(t, run(t, addr, "audit", "export", "--file", file, "--from", "2", "--append"))
	if got := positions(); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Fatalf("resumed with --append: positions %v, want 1 2 3", got)
	}
	ok(t, run(t, addr, "audit", "export", "--file", file, "--from", "3"))
	if got := positions(); !slices.Equal(got, []string{"3"}) {
		t.Fatalf("without --append: positions %v, want 3 alone", got)
	}
	fails(t, run(t, addr, "audit", "export", "--from", "3", "--append"), cli.ExitUsage)
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A command that fails while ordersctl looks up the order's currency (for
// place's --tax, pay's --amount) was never sent, so its error gives no
// request id to run it again under, as add-item's, which looks up the
// same way, never did. Both said the command "may have been applied".
func TestFailedCurrencyLookupGivesNoRequestIDToRetryUnder(t *testing.T) {
	f, addr := startFlaky(t, 1<<30, codes.Unavailable) // every call answers UNAVAILABLE
	for _, args := range [][]string{
		{"orders", "add-item", "o-1", "A", "1", "1.00"},
		{"orders", "place", "o-1", "--tax", "1.00"},
		{"orders", "pay", "o-1", "--ref", "psp-1", "--amount", "1.00"},
	} {
		r := fails(t, run(t, addr, append([]string{"--timeout", "600ms"}, args...)...), cli.ExitUnavailable)
		if strings.Contains(r.stderr, "--request-id") {
			t.Errorf("%v: no command was sent, yet the error names a request id to retry under: %s", args, strings.TrimSpace(r.stderr))
		}
	}
	for _, m := range []string{"AddItem", "PlaceOrder", "RecordPayment"} {
		if n := len(f.made(m)); n != 0 {
			t.Fatalf("%d %s call(s) sent", n, m)
		}
	}
}

// brokenThenCut verifies one order as broken, then fails the stream
// UNAVAILABLE, as a node shutting down mid-verification does.
type brokenThenCut struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (brokenThenCut) VerifyLog(_ *ordersv1.VerifyLogRequest, st grpc.ServerStreamingServer[ordersv1.VerifyLogResponse]) error {
	err := st.Send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Broken{Broken: &ordersv1.VerifyOrderResponse{
		OrderId: "o-1", EventsChecked: 2, FirstBreak: &ordersv1.ChainBreak{Position: 7, Version: 2}}}})
	if err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "node shutting down")
}

// A verification of the whole log that found a broken chain exits 6
// (broken) even when the stream is cut off after it: what was verified is
// broken, whatever the rest is, and the error says why the rest was not
// verified. It exited 4, as a verification that had found nothing.
func TestVerifyAllThatFoundABreakThenWasCutOffExitsBroken(t *testing.T) {
	addr := serve(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, brokenThenCut{}) })
	r := run(t, addr, "audit", "verify", "--all")
	if r.code != cli.ExitBrokenChain || !strings.Contains(r.stdout, "o-1") {
		t.Fatalf("exit %d, want %d, with the broken order printed: %s%s", r.code, cli.ExitBrokenChain, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "node shutting down") {
		t.Fatalf("the error does not say why the verification stopped: %s", r.stderr)
	}
}

// lagging is an ordersd whose read model does not have order o-1 yet
// (created in EUR, as its log says), and that counts the items added.
type lagging struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	ordersv1.UnimplementedOrderAuditServiceServer
	ordersv1.UnimplementedOrderCommandServiceServer
	added *atomic.Int32
}

func (lagging) GetOrder(context.Context, *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	return nil, status.Error(codes.NotFound, "order not found")
}

func (lagging) GetOrderHistory(_ context.Context, req *ordersv1.GetOrderHistoryRequest) (*ordersv1.GetOrderHistoryResponse, error) {
	return &ordersv1.GetOrderHistoryResponse{Events: []*ordersv1.RecordedEvent{{OrderId: req.GetOrderId(), Position: 1, Type: "OrderCreated",
		Event: &ordersv1.Event{Event: &ordersv1.Event_OrderCreated{OrderCreated: &ordersv1.OrderCreated{CustomerId: "c-1", Currency: "EUR"}}}}}}, nil
}

func (l lagging) AddItem(context.Context, *ordersv1.AddItemRequest) (*ordersv1.AddItemResponse, error) {
	l.added.Add(1)
	return &ordersv1.AddItemResponse{}, nil
}

// add-item --currency naming another currency than the order's is refused
// even while the read model does not have the order yet: the log is asked.
// The stated currency was trusted then, and the price read in its decimals
// (1200 JPY, 12.00 EUR for an order in euros) was recorded in the order's.
func TestStatedCurrencyIsCheckedAgainstTheLogOfAnOrderNotYetRead(t *testing.T) {
	var added atomic.Int32
	addr := serve(t, func(gs *grpc.Server) {
		l := lagging{added: &added}
		ordersv1.RegisterOrderQueryServiceServer(gs, l)
		ordersv1.RegisterOrderAuditServiceServer(gs, l)
		ordersv1.RegisterOrderCommandServiceServer(gs, l)
	})
	fails(t, run(t, addr, "orders", "add-item", "o-1", "TEA", "2", "1200", "--currency", "JPY"), cli.ExitUsage)
	if n := added.Load(); n != 0 {
		t.Fatalf("%d item(s) added in another currency than the order's", n)
	}
}
