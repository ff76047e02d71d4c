package app_test

import (
	"context"
	"database/sql"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite" // the read model's driver, to break it
)

// freeAddr returns a loopback address nothing listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A gateway-only node's /readyz includes its connections to the remote
// services it serves: 503 naming the query upstream while that is down,
// 200 once it is up.
func TestGatewayReadyzChecksUpstreams(t *testing.T) {
	ns := estest.StartServer(t)
	commands, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,audit,payments")
	queryAddr := freeAddr(t)
	front, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "gateway",
		"COMMAND_ADDR", commands.GRPC, "QUERY_ADDR", queryAddr, "AUDIT_ADDR", commands.GRPC, "PAYMENTS_ADDR", commands.GRPC)
	url := "http://" + front.HTTP + "/readyz"
	// The background checks see the connections to the live upstreams
	// ready within a moment of start-up.
	var code int
	var body map[string]any
	var checks map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body = getJSON(t, url)
		checks, _ = body["checks"].(map[string]any)
		if checks["upstream_command"] == "ok" && checks["upstream_audit"] == "ok" && checks["upstream_payments"] == "ok" || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusServiceUnavailable || checks["upstream_query"] == "ok" || checks["upstream_query"] == nil ||
		checks["upstream_command"] != "ok" || checks["upstream_audit"] != "ok" || checks["upstream_payments"] != "ok" || checks["nats"] != "ok" {
		t.Fatalf("readyz with the query node down: %d %v", code, body)
	}
	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "query", "GRPC_ADDR", queryAddr)
	waitStatus(t, url, http.StatusOK)
}

// watchUntil reads a health Watch stream until it reports want.
func watchUntil(t *testing.T, w healthpb.Health_WatchClient, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for {
		r, err := w.Recv()
		if err != nil {
			t.Fatalf("watch, waiting for %s: %v", want, err)
		}
		if r.GetStatus() == want {
			return
		}
	}
}

// The gRPC health statuses follow the same checks as /readyz: overall and
// per service NOT_SERVING while NATS is gone, SERVING again once it is
// back, without restarting ordersd.
func TestGRPCHealthFollowsNATS(t *testing.T) {
	ns := estest.StartServer(t)
	addrs, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL())
	hc := healthpb.NewHealthClient(dial(t, addrs.GRPC))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	services := []string{"", "orders.v1.OrderCommandService", "orders.v1.OrderQueryService", "orders.v1.OrderAuditService"}
	watches := make([]healthpb.Health_WatchClient, len(services))
	for i, s := range services {
		w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: s})
		if err != nil {
			t.Fatal(err)
		}
		watches[i] = w
		watchUntil(t, w, healthpb.HealthCheckResponse_SERVING)
	}
	restart := estest.Stop(t, ns)
	for _, w := range watches {
		watchUntil(t, w, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "orders.v1.OrderCommandService"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("check during the outage: %v %v", r, err)
	}
	restart()
	for _, w := range watches {
		watchUntil(t, w, healthpb.HealthCheckResponse_SERVING)
	}
}

// In a process that also serves commands and queries, an open payment
// gateway circuit is shown in /readyz without failing it; a payments-only
// node is unready while its circuit is open.
func TestReadyzShowsPaymentCircuit(t *testing.T) {
	failing := []string{"PAYMENT_SIM_FAILURE_RATE", "1", "PAYMENT_MAX_ATTEMPTS", "50", "PAYMENT_BACKOFF_BASE", "1ms", "PAYMENT_BACKOFF_MAX", "2ms"}
	place := func(grpcAddr, id string) {
		t.Helper()
		cmd := ordersv1.NewOrderCommandServiceClient(dial(t, grpcAddr))
		if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "c", Currency: "EUR",
			Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 5}}, ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.PlaceOrder(t.Context(), &ordersv1.PlaceOrderRequest{RequestId: id + "-place", OrderId: id}); err != nil {
			t.Fatal(err)
		}
	}
	open := func(v any) bool { s, _ := v.(string); return strings.Contains(s, "circuit open") }

	t.Run("combined", func(t *testing.T) {
		addrs, _ := run(t, t.TempDir(), failing...)
		url := "http://" + addrs.HTTP + "/readyz"
		waitStatus(t, url, http.StatusOK)
		_, body := getJSON(t, url)
		if info, _ := body["info"].(map[string]any); info["payment_gateway"] != "ok" {
			t.Fatalf("readyz before any failure: %v", body)
		}
		place(addrs.GRPC, "circuit-1")
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body := getJSON(t, url)
			if code != http.StatusOK {
				t.Fatalf("readyz of a combined process with the provider failing: %d %v", code, body)
			}
			if info, _ := body["info"].(map[string]any); open(info["payment_gateway"]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the open circuit never shows: %v", body)
			}
			time.Sleep(20 * time.Millisecond) // probing, as an operator would
		}
	})
	t.Run("payments only", func(t *testing.T) {
		ns := estest.StartServer(t)
		commands, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command")
		pay, _ := run(t, t.TempDir(), append([]string{"NATS_URL", ns.ClientURL(), "ROLES", "payments", "COMMAND_ADDR", commands.GRPC}, failing...)...)
		url := "http://" + pay.HTTP + "/readyz"
		waitStatus(t, url, http.StatusOK)
		place(commands.GRPC, "circuit-2")
		waitStatus(t, url, http.StatusServiceUnavailable)
		_, body := getJSON(t, url)
		if checks, _ := body["checks"].(map[string]any); !open(checks["payment_gateway"]) {
			t.Fatalf("readyz of a payments-only node: %v", body)
		}
	})
}

// A log the server will not make immutable still serves, and /readyz says
// so under info; an immutable one shows "ok" there.
func TestReadyzReportsAMutableLog(t *testing.T) {
	ns := estest.StartServer(t)
	_, js := estest.Connect(t, ns)
	estest.MutableStream(t, js, "ORDERS", "orders.*")
	for name, url := range map[string]string{"mutable": ns.ClientURL(), "immutable": ""} {
		vars := []string{}
		if url != "" {
			vars = append(vars, "NATS_URL", url)
		}
		addrs, _ := run(t, t.TempDir(), vars...)
		ready := "http://" + addrs.HTTP + "/readyz"
		waitStatus(t, ready, http.StatusOK)
		_, body := getJSON(t, ready)
		info, _ := body["info"].(map[string]any)
		if got, _ := info["stream_immutable"].(string); (got == "ok") != (name == "immutable") || got == "" {
			t.Errorf("%s log: readyz = %v", name, body)
		}
	}
}

// Long-lived streams have their own bound (MAX_STREAMS): follow exports
// open up to it leave unary capacity (MAX_IN_FLIGHT) untouched, and one
// more stream is refused with RESOURCE_EXHAUSTED.
func TestStreamsHaveTheirOwnLimit(t *testing.T) {
	addrs, _ := apptest.Start(t, map[string]string{"ROLES": "command,audit", "MAX_IN_FLIGHT": "1", "MAX_STREAMS": "2"})
	conn := dial(t, addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "s-0", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	follow := func(ctx context.Context) (ordersv1.OrderAuditService_StreamEventsClient, error) {
		s, err := audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{FromPosition: 1, Follow: true})
		if err != nil {
			return nil, err
		}
		// The first event proves the server is running the stream.
		_, err = s.Recv()
		return s, err
	}
	var cancels []context.CancelFunc
	for range 2 {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cancels = append(cancels, cancel)
		if _, err := follow(ctx); err != nil {
			t.Fatalf("stream within the bound: %v", err)
		}
	}
	for i := range 3 {
		if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "s-" + string(rune('a'+i)), CustomerId: "c", Currency: "EUR"}); err != nil {
			t.Fatalf("unary call with every stream slot taken: %v", err)
		}
	}
	if _, err := follow(t.Context()); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a stream over the bound: %v", err)
	}
	// A closed stream frees its slot once the server sees it gone.
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := follow(t.Context())
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("a stream after one closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // retrying with backoff, as a client would
	}
}

// execSQL runs statements on a SQLite file through a connection of its own.
func execSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
}

// breakReadModel makes every write of the read model at path fail, as a
// full disk or a broken file would: the next apply, which moves the
// checkpoint, fails.
func breakReadModel(t *testing.T, path string) {
	t.Helper()
	execSQL(t, path, `CREATE TRIGGER test_unwritable BEFORE UPDATE ON checkpoint BEGIN SELECT RAISE(ABORT, 'injected: the read model cannot be written'); END`)
}

// A projection runner that stops for good (its read model cannot be
// written) stops ordersd: the query service's health turns NOT_SERVING and
// Run returns the runner's error, so ordersd exits non-zero for its
// supervisor to restart it. It used to go on serving, ready by /readyz and
// SERVING by gRPC health, while every read at a position past the failure
// answered UNAVAILABLE.
func TestProjectionStoppedStopsOrdersd(t *testing.T) {
	dir := t.TempDir()
	r := startRunning(t, map[string]string{"DATA_DIR": dir, "ROLES": "command,query"})
	conn := dial(t, r.addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	create := func(id string) uint64 {
		t.Helper()
		res, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "c", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetPosition()
	}
	pos := create("p-1")
	if _, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(t.Context(), &ordersv1.GetOrderRequest{OrderId: "p-1", Consistency: &ordersv1.Consistency{MinPosition: pos}}); err != nil {
		t.Fatal(err)
	}
	// Bounds the wait for what the old code never did.
	bound, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	wctx, stopWatch := context.WithCancel(bound)
	w, err := healthpb.NewHealthClient(conn).Watch(wctx, &healthpb.HealthCheckRequest{Service: "orders.v1.OrderQueryService"})
	if err != nil {
		t.Fatal(err)
	}
	watchUntil(t, w, healthpb.HealthCheckResponse_SERVING)

	breakReadModel(t, filepath.Join(dir, "readmodel", "orders.db"))
	create("p-2")
	for {
		h, err := w.Recv()
		if err != nil {
			code, body := getJSON(t, "http://"+r.addrs.HTTP+"/readyz")
			t.Fatalf("the query service's health, waiting for NOT_SERVING once the read model cannot be written: %v; /readyz %d %v", err, code, body)
		}
		if h.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
	}
	stopWatch() // the gRPC server's drain waits for open streams
	select {
	case <-r.finished:
	case <-bound.Done():
		t.Fatal("Run did not return after the projection stopped")
	}
	if r.err == nil || !strings.Contains(r.err.Error(), "projection stopped") || !strings.Contains(r.err.Error(), "injected") {
		t.Fatalf("Run: %v, want the projection's error", r.err)
	}
}
