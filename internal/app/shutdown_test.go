package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rpcRecorder is a slog handler that keeps what ordersd's RPC log says
// about CreateOrder (one line per call, with its code) and every record
// logged at ERROR, so a test sees the server's side of each answer.
type rpcRecorder struct {
	mu     sync.Mutex
	codes  map[string]int
	errors []string
	// last is the code of each method's last RPC line.
	last map[string]string
}

func (r *rpcRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *rpcRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *rpcRecorder) WithGroup(string) slog.Handler            { return r }

func (r *rpcRecorder) Handle(_ context.Context, rec slog.Record) error {
	var method, code string
	var attrs []string
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			method = a.Value.String()
		case "code":
			code = a.Value.String()
		}
		attrs = append(attrs, a.String())
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.Message == "rpc" && strings.HasSuffix(method, "/CreateOrder") {
		r.codes[code]++
	}
	if rec.Message == "rpc" {
		if r.last == nil {
			r.last = map[string]string{}
		}
		r.last[method] = code
	}
	if rec.Level >= slog.LevelError {
		r.errors = append(r.errors, rec.Message+" "+strings.Join(attrs, " "))
	}
	return nil
}

// lastCode returns the code of method's last RPC line, "" when none.
func (r *rpcRecorder) lastCode(method string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[method]
}

// logged returns how many RPC lines for CreateOrder said code.
func (r *rpcRecorder) logged(code string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.codes[code]
}

// shutdownCall is one CreateOrder as its client saw it.
type shutdownCall struct {
	id       string
	code     codes.Code
	err      error
	position uint64
	inFlight bool // sent before the cancel, answered after it
}

// Cancelling Run's context while CreateOrder calls are in flight: Run
// returns nil; every call answered OK is in the log, read back after a
// restart on the same data directory; every other call failed with
// UNAVAILABLE or CANCELED, never INTERNAL, on the client's side and in the
// server's RPC log; and a failed call retried with its request id after
// the restart leaves exactly one creation in the order's history. With the
// default SHUTDOWN_TIMEOUT the calls the server took are drained, each
// answered OK; with a tiny one they are cut short.
func TestShutdownWithCallsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout string
		drained bool
	}{
		{"drained", "15s", true},
		{"timeout cuts calls", "1ns", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg, err := config.FromMap(map[string]string{"DATA_DIR": dir, "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
				"NATS_LISTEN": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			rec := &rpcRecorder{codes: map[string]int{}}
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan app.Addrs, 1)
			finished := make(chan struct{})
			var runErr error
			go func() {
				defer close(finished)
				runErr = app.Run(ctx, cfg, slog.New(rec), func(a app.Addrs) { ready <- a })
			}()
			t.Cleanup(func() { cancel(); <-finished })
			var addrs app.Addrs
			select {
			case addrs = <-ready:
			case <-finished:
				t.Fatalf("ordersd stopped before it was ready: %v", runErr)
			}
			cmd := ordersv1.NewOrderCommandServiceClient(dial(t, addrs.GRPC))

			// Workers create orders back to back until a call fails after
			// the cancel; the cancel comes once enough were answered.
			const workers, before = 16, 60
			var cancelled atomic.Bool
			var okCount atomic.Int64
			enough := make(chan struct{})
			var enoughOnce sync.Once
			var mu sync.Mutex
			var calls []shutdownCall
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for n := 0; ; n++ {
						c := shutdownCall{id: fmt.Sprintf("sd-%d-%d", w, n)}
						sentBefore := !cancelled.Load()
						cctx, ccancel := context.WithTimeout(t.Context(), 20*time.Second)
						res, err := cmd.CreateOrder(cctx, &ordersv1.CreateOrderRequest{RequestId: c.id, OrderId: c.id, CustomerId: "c", Currency: "EUR"})
						ccancel()
						after := cancelled.Load()
						c.code, c.err, c.position, c.inFlight = status.Code(err), err, res.GetPosition(), sentBefore && after
						mu.Lock()
						calls = append(calls, c)
						mu.Unlock()
						if err == nil && okCount.Add(1) >= before {
							enoughOnce.Do(func() { close(enough) })
						}
						if err != nil {
							if !after {
								t.Errorf("call %s before the cancel: %v", c.id, err)
							}
							return
						}
					}
				})
			}
			select {
			case <-enough:
			case <-finished:
				t.Fatalf("ordersd stopped under load: %v", runErr)
			case <-time.After(60 * time.Second):
				t.Fatalf("only %d calls answered OK before the cancel", okCount.Load())
			}
			cancelled.Store(true)
			cancel()
			select {
			case <-finished:
			case <-time.After(60 * time.Second):
				t.Fatal("Run did not return after its context was cancelled")
			}
			if runErr != nil {
				t.Fatalf("Run after cancel: %v", runErr)
			}
			wg.Wait()

			var acked, failed []shutdownCall
			inFlight := 0
			for _, c := range calls {
				if c.inFlight {
					inFlight++
				}
				switch c.code {
				case codes.OK:
					acked = append(acked, c)
				case codes.Unavailable, codes.Canceled:
					failed = append(failed, c)
				default:
					t.Errorf("call %s during shutdown: %v", c.id, c.err)
				}
			}
			if inFlight == 0 {
				t.Fatal("no call was in flight when the context was cancelled")
			}
			rec.mu.Lock()
			serverCodes := fmt.Sprint(rec.codes)
			serverOK := rec.codes[codes.OK.String()]
			for code, n := range rec.codes {
				switch code {
				case codes.OK.String(), codes.Unavailable.String(), codes.Canceled.String():
				default:
					t.Errorf("the server answered %d CreateOrder calls with %s", n, code)
				}
			}
			for _, e := range rec.errors {
				t.Errorf("logged during shutdown: %s", e)
			}
			rec.mu.Unlock()
			if serverOK < len(acked) {
				t.Fatalf("clients got %d OK answers, the server logged %d", len(acked), serverOK)
			}
			if tc.drained && serverOK != len(acked) {
				// Draining lets every call the server took finish and
				// deliver its answer.
				t.Fatalf("server answered OK %d times while draining, clients received %d (server codes %s)", serverOK, len(acked), serverCodes)
			}
			t.Logf("%d answered OK, %d failed, %d in flight at the cancel; server codes %s", len(acked), len(failed), inFlight, serverCodes)

			// The same data directory, restarted: the log holds every
			// acknowledged creation at its position, and a failed call
			// retried with its request id creates its order once.
			addrs, _ = run(t, dir)
			conn := dial(t, addrs.GRPC)
			cmd = ordersv1.NewOrderCommandServiceClient(conn)
			audit := ordersv1.NewOrderAuditServiceClient(conn)
			history := func(id string) []*ordersv1.RecordedEvent {
				t.Helper()
				h, err := audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id})
				if err != nil {
					t.Fatalf("history of %s: %v", id, err)
				}
				return h.GetEvents()
			}
			for _, c := range acked {
				if h := history(c.id); len(h) != 1 || h[0].GetType() != "OrderCreated" || h[0].GetPosition() != c.position {
					t.Fatalf("acknowledged order %s (position %d) after the restart: %v", c.id, c.position, h)
				}
			}
			for _, c := range failed {
				res, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: c.id, OrderId: c.id, CustomerId: "c", Currency: "EUR"})
				if err != nil {
					t.Fatalf("retry of %s, which failed with %v: %v", c.id, c.err, err)
				}
				if h := history(c.id); len(h) != 1 || h[0].GetPosition() != res.GetPosition() {
					t.Fatalf("order %s after its retry: %v, retry answered position %d", c.id, h, res.GetPosition())
				}
			}
		})
	}
}

// running is ordersd run in-process by a test that starts its shutdown
// and reads Run's error.
type running struct {
	addrs    app.Addrs
	cancel   context.CancelFunc
	finished chan struct{} // closed once Run has returned
	err      error         // Run's error, once finished
}

// startRunning runs ordersd configured as apptest.Config does; the test's
// end cancels it and waits for Run.
func startRunning(t *testing.T, vars map[string]string) *running {
	t.Helper()
	return startLogged(t, vars, slog.DiscardHandler)
}

// startLogged is startRunning with ordersd logging to h.
func startLogged(t *testing.T, vars map[string]string, h slog.Handler) *running {
	t.Helper()
	cfg := apptest.Config(t, vars)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, finished: make(chan struct{})}
	ready := make(chan app.Addrs, 1)
	go func() {
		defer close(r.finished)
		r.err = app.Run(ctx, cfg, slog.New(h), func(a app.Addrs) { ready <- a })
	}()
	t.Cleanup(func() { cancel(); <-r.finished })
	select {
	case r.addrs = <-ready:
	case <-r.finished:
		t.Fatalf("ordersd stopped before it was ready: %v", r.err)
	}
	return r
}

// openStream sends a GET for a REST stream and reads its first line, so
// the request is known to be in flight, and returns the rest of the body;
// the body is closed when t ends.
func openStream(t *testing.T, url, accept string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	body := bufio.NewReader(res.Body)
	line, err := body.ReadString('\n')
	if res.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET %s (Accept %q): %d %q %v", url, accept, res.StatusCode, line, err)
	}
	return body
}

// lastStatus returns the status a REST stream's body ends with: its last
// line, {"error": status} as newline-delimited JSON, or the data of its
// last event, an "error" event, as Server-Sent Events; code -1 when it
// ends with neither.
func lastStatus(t *testing.T, body *bufio.Reader, sse bool) float64 {
	t.Helper()
	rest, _ := io.ReadAll(body)
	lines := strings.Split(strings.TrimRight(string(rest), "\n"), "\n")
	last := lines[len(lines)-1]
	var st struct {
		Code  *float64 `json:"code"`
		Error struct {
			Code *float64 `json:"code"`
		} `json:"error"`
	}
	var code *float64
	if sse {
		data, ok := strings.CutPrefix(last, "data: ")
		if len(lines) < 2 || lines[len(lines)-2] != "event: error" || !ok || json.Unmarshal([]byte(data), &st) != nil {
			return -1
		}
		code = st.Code
	} else if json.Unmarshal([]byte(last), &st) != nil {
		return -1
	} else {
		code = st.Error.Code
	}
	if code == nil {
		return -1
	}
	return *code
}

// Shutting down while REST streams are open (a watch as Server-Sent Events
// and as newline-delimited JSON, the followed event stream) ends them at
// once, so Run returns long before SHUTDOWN_TIMEOUT. The HTTP server's
// shutdown used to wait the whole timeout for such a request, then the
// gRPC server's drain waited another for the RPC it still held open.
func TestShutdownEndsRESTStreams(t *testing.T) {
	const shutdownTimeout = time.Minute
	r := startRunning(t, map[string]string{"ROLES": "command,query,audit,gateway", "SHUTDOWN_TIMEOUT": shutdownTimeout.String()})
	base := "http://" + r.addrs.HTTP
	for _, id := range []string{"w1", "w/2"} {
		if code, body := doWithHeaders(t, "POST", base+"/v1/orders", `{"requestId":"`+id+`","orderId":"`+id+`","customerId":"c","currency":"EUR"}`); code != http.StatusOK {
			t.Fatalf("create %s: %d %s", id, code, body)
		}
	}
	sse := openStream(t, base+"/v1/orders/w1:watch?consistency.minPosition=1", "text/event-stream")
	ndjson := map[string]*bufio.Reader{
		"watch": openStream(t, base+"/v1/orders/w1:watch?consistency.minPosition=1", ""),
		// An order id holding '/' travels escaped in its one path segment.
		"watch of an escaped id": openStream(t, base+"/v1/orders/w%2F2:watch?consistency.minPosition=2", ""),
		"followed events":        openStream(t, base+"/v1/events?follow=true", ""),
	}

	r.cancel()
	// Half the timeout: a bound the code enforces by ending the streams,
	// which waiting for them (even once) cannot meet.
	bound, cancel := context.WithTimeout(t.Context(), shutdownTimeout/2)
	defer cancel()
	select {
	case <-r.finished:
	case <-bound.Done():
		t.Fatalf("Run still shutting down %v after the cancel, with REST streams open (SHUTDOWN_TIMEOUT %v)", shutdownTimeout/2, shutdownTimeout)
	}
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	// Each ends saying why, UNAVAILABLE (14), which clients retry, as the
	// gRPC streams do: not CANCELLED, as if the client had left, nor
	// without a word.
	if code := lastStatus(t, sse, true); code != float64(codes.Unavailable) {
		t.Errorf("the Server-Sent Events watch ended with code %v, want an error event of UNAVAILABLE", code)
	}
	for name, body := range ndjson {
		if code := lastStatus(t, body, false); code != float64(codes.Unavailable) {
			t.Errorf("the %s ended with code %v, want an error line of UNAVAILABLE", name, code)
		}
	}
}

// Shutting down while gRPC server streams are open (a watch of one order,
// a watch of all, the followed event stream) ends them with UNAVAILABLE,
// which clients retry elsewhere, so Run returns long before
// SHUTDOWN_TIMEOUT: GracefulStop used to wait the whole timeout for them.
func TestShutdownEndsGRPCStreams(t *testing.T) {
	const shutdownTimeout = time.Minute
	r := startRunning(t, map[string]string{"ROLES": "command,query,audit", "SHUTDOWN_TIMEOUT": shutdownTimeout.String()})
	conn := dial(t, r.addrs.GRPC)
	ctx := t.Context()
	created, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "gw-1", OrderId: "gw1", CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	query := ordersv1.NewOrderQueryServiceClient(conn)
	consistency := &ordersv1.Consistency{MinPosition: created.GetPosition()}
	one, err := query.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "gw1", Consistency: consistency})
	if err != nil {
		t.Fatal(err)
	}
	all, err := query.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{Consistency: consistency})
	if err != nil {
		t.Fatal(err)
	}
	events, err := ordersv1.NewOrderAuditServiceClient(conn).StreamEvents(ctx, &ordersv1.StreamEventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	// Each stream has answered, so each is open on the server.
	if _, err := one.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := all.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Recv(); err != nil {
		t.Fatal(err)
	}

	r.cancel()
	// Half the timeout: a bound the code enforces by ending the streams,
	// which waiting for them cannot meet.
	bound, cancel := context.WithTimeout(ctx, shutdownTimeout/2)
	defer cancel()
	select {
	case <-r.finished:
	case <-bound.Done():
		t.Fatalf("Run still shutting down %v after the cancel, with gRPC streams open (SHUTDOWN_TIMEOUT %v)", shutdownTimeout/2, shutdownTimeout)
	}
	if r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	for name, recv := range map[string]func() error{
		"WatchOrder":   func() error { _, err := one.Recv(); return err },
		"WatchOrders":  func() error { _, err := all.Recv(); return err },
		"StreamEvents": func() error { _, err := events.Recv(); return err },
	} {
		err := recv()
		for err == nil {
			err = recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s at shutdown: %v, want UNAVAILABLE", name, err)
		}
	}
}
