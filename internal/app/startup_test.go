package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/natsconn/natstest"
	"github.com/orderstream/orderstream/internal/natsembed"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/internal/tcpproxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// startErr runs ordersd with vars over loopback defaults and returns the
// error it stopped with, failing the test if it becomes ready or is still
// starting after 10 s (a start-up that cannot succeed must say so at once).
func startErr(t *testing.T, vars map[string]string) error {
	t.Helper()
	return runErr(t, apptest.Config(t, vars), vars)
}

// runErr is startErr for a configuration already made; vars describe it in
// failures.
func runErr(t *testing.T, cfg config.Config, vars map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(app.Addrs) { cancel() })
	}()
	select {
	case err := <-done:
		if ctx.Err() != nil {
			t.Fatalf("ordersd became ready with %v", vars)
		}
		return err
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("ordersd with %v still starting after 10 s", vars)
		return nil
	}
}

// busy returns an address some other listener holds until the test ends.
func busy(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().String()
}

// A listen address in use stops start-up at once with an error naming the
// variable and the address, for every listener ordersd opens.
func TestBusyListenerNamesItsVariable(t *testing.T) {
	for _, name := range []string{"NATS_LISTEN", "GRPC_ADDR", "HTTP_ADDR", "DEBUG_ADDR"} {
		t.Run(name, func(t *testing.T) {
			addr := busy(t)
			err := startErr(t, map[string]string{name: addr})
			if err == nil || !strings.HasPrefix(err.Error(), name+":") || !strings.Contains(err.Error(), addr) {
				t.Fatalf("%s=%s in use: %v", name, addr, err)
			}
			if name == "NATS_LISTEN" && !errors.Is(err, natsembed.ErrListen) {
				t.Fatalf("NATS_LISTEN in use: %v is not natsembed.ErrListen", err)
			}
		})
	}
}

// A DATA_DIR that cannot be written (here: below a regular file, which no
// user, root included, can create a directory in) stops start-up naming
// DATA_DIR.
func TestUnwritableDataDirNamesItsVariable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, roles := range []string{"command", "query"} {
		err := startErr(t, map[string]string{"DATA_DIR": filepath.Join(file, "data"), "ROLES": roles})
		if err == nil || !strings.HasPrefix(err.Error(), "DATA_DIR:") {
			t.Fatalf("ROLES=%s, DATA_DIR below a file: %v", roles, err)
		}
	}
}

// Two ordersd on one DATA_DIR would each run a nats-server (or a read
// model) on the same files and lose acknowledged orders: the second is
// refused at once, naming DATA_DIR, while the first keeps serving; once the
// first has stopped, the directory starts again, with what it holds. A
// process that does not use DATA_DIR (NATS_URL and no query role) does not
// take it.
func TestDataDirInUseIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, stop := run(t, dir, "ROLES", "command,query,audit")
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, first.GRPC))
	create := func(id string) {
		t.Helper()
		if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "c", Currency: "EUR"}); err != nil {
			t.Fatalf("create %s on the first ordersd: %v", id, err)
		}
	}
	create("held-1")
	natsURL := "nats://" + first.NATS
	for _, vars := range []map[string]string{
		{"DATA_DIR": dir, "ROLES": "command,query,audit"},        // its own embedded server on the store
		{"DATA_DIR": dir, "ROLES": "query", "NATS_URL": natsURL}, // its read model on the first's
	} {
		err := startErr(t, vars)
		if !errors.Is(err, app.ErrDataDirInUse) || !strings.HasPrefix(err.Error(), "DATA_DIR:") || !strings.Contains(err.Error(), dir) {
			t.Errorf("%v while another ordersd holds it: %v, want DATA_DIR: %s ... %v", vars, err, dir, app.ErrDataDirInUse)
		}
	}
	create("held-2")
	run(t, dir, "ROLES", "command", "NATS_URL", natsURL)

	stop()
	again, _ := run(t, dir, "ROLES", "command,query,audit")
	audit := ordersv1.NewOrderAuditServiceClient(dial(t, again.GRPC))
	for _, id := range []string{"held-1", "held-2"} {
		hist, err := audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id})
		if err != nil || len(hist.GetEvents()) != 1 {
			t.Errorf("%s after a restart on the released DATA_DIR: %v %v", id, hist.GetEvents(), err)
		}
	}
}

// A stop asked for while ordersd starts (here before it reached NATS, which
// it would wait NATS_CONNECT_TIMEOUT for) is a clean stop: Run returns nil,
// and ordersd exits 0. It returned the wait's error, which named NATS_URL
// as if it were wrong, and ordersd exited 1.
func TestStopDuringStartUpIsACleanStop(t *testing.T) {
	nowhere := "nats://" + freeAddr(t)
	cfg := apptest.Config(t, map[string]string{"ROLES": "command", "NATS_URL": nowhere, "NATS_CONNECT_TIMEOUT": "30s"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil); err != nil {
		t.Fatalf("stopped during start-up: %v, want a clean stop", err)
	}
}

// The files start-up reads (tokens, the personal data master key) are read
// before NATS is: a wrong path is told at once, not after the wait for an
// unreachable NATS (here 30 s), nor after streams and buckets were made on
// a reachable one.
func TestFilesAreReadBeforeNATS(t *testing.T) {
	nowhere := "nats://" + freeAddr(t)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, name := range []string{"AUTH_TOKENS_FILE", "PII_MASTER_KEY_FILE"} {
		t.Run(name, func(t *testing.T) {
			err := startErr(t, map[string]string{"ROLES": "command", "NATS_URL": nowhere, "NATS_CONNECT_TIMEOUT": "30s", name: missing})
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s of a missing file, NATS unreachable: %v, want the missing file", name, err)
			}
		})
	}
}

// keyFile writes a master key file of KeySize bytes b and returns its path.
func keyFile(t *testing.T, b byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(p, []byte(strings.Repeat(fmt.Sprintf("%02x", b), pii.KeySize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A process whose master key is not the one the personal data keys were
// wrapped under (another PII_MASTER_KEY_FILE, or none: the development
// key) stops at start-up, naming the variable, at once. It started, and
// took every sealed event for altered: its reads answered DATA_LOSS, and
// its projection dead-lettered every order with an address, for good.
func TestAnotherMasterKeyStopsStartUp(t *testing.T) {
	ns := estest.StartServer(t)
	first := keyFile(t, 1)
	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command", "PII_MASTER_KEY_FILE", first)
	for name, file := range map[string]string{"another key": keyFile(t, 2), "no key": ""} {
		t.Run(name, func(t *testing.T) {
			err := startErr(t, map[string]string{"ROLES": "query", "NATS_URL": ns.ClientURL(), "PII_MASTER_KEY_FILE": file})
			if !errors.Is(err, pii.ErrWrongMasterKey) {
				t.Fatalf("a second process with %s: %v, want ErrWrongMasterKey", name, err)
			}
		})
	}
	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "query", "PII_MASTER_KEY_FILE", first)
}

// A node still starting (here waiting for a NATS server that takes the
// connection and never speaks) is alive: from its first phase on, GET
// /healthz answers 200, GET /readyz 503 "starting" and an API route 503
// UNAVAILABLE with Retry-After (and over gRPC, health NOT_SERVING and a
// call UNAVAILABLE), so a liveness probe does not restart a
// node through a long start-up (a wait for NATS, a read model's
// migration). The stop it is given then ends it without an error.
func TestStartingNodeAnswersLiveness(t *testing.T) {
	// The kernel takes the connection into the listener's backlog, and
	// nothing ever speaks.
	mute := busy(t)
	cfg := apptest.Config(t, map[string]string{"NATS_URL": "nats://" + mute, "NATS_CONNECT_TIMEOUT": "10m", "ROLES": "command,query,audit,payments,gateway"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	listening := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(app.Addrs) { t.Error("ordersd became ready without NATS") },
			app.WithListening(func(a app.Addrs) { listening <- a }))
	}()
	var addrs app.Addrs
	select {
	case addrs = <-listening:
	case err := <-done:
		t.Fatalf("ordersd stopped while waiting for NATS: %v", err)
	}
	// A bound, not a timing: the old build accepted and never answered.
	hc := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (int, http.Header, map[string]any) {
		t.Helper()
		res, err := hc.Get("http://" + addrs.HTTP + path)
		if err != nil {
			t.Fatalf("GET %s while starting: %v", path, err)
		}
		defer res.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s while starting: body: %v", path, err)
		}
		return res.StatusCode, res.Header, body
	}
	if code, _, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while starting: %d, want 200", code)
	}
	if code, _, body := get("/readyz"); code != http.StatusServiceUnavailable || body["status"] != "starting" {
		t.Fatalf("/readyz while starting: %d %v, want 503 starting", code, body)
	}
	code, header, body := get("/v1/orders/o-1")
	if code != http.StatusServiceUnavailable || body["code"] != float64(codes.Unavailable) || header.Get("Retry-After") == "" {
		t.Fatalf("an API route while starting: %d %v (Retry-After %q), want 503 UNAVAILABLE with Retry-After", code, body, header.Get("Retry-After"))
	}
	// gRPC likewise: a health check is NOT_SERVING and a call UNAVAILABLE.
	// The listener was bound but not served: a call heard nothing until
	// its own deadline.
	cctx, ccancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer ccancel()
	conn := dial(t, addrs.GRPC)
	if res, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health while starting: %v (code %v), want NOT_SERVING", res, status.Code(err))
	}
	if _, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(cctx, &ordersv1.GetOrderRequest{OrderId: "o-1"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("a gRPC call while starting: %v, want UNAVAILABLE", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stopped while starting: %v", err)
	}
	if res, err := hc.Get("http://" + addrs.HTTP + "/healthz"); err == nil {
		res.Body.Close()
		t.Fatal("/healthz still answered after Run returned")
	}
}

// A client connected while ordersd started (to the server that answers
// NOT_SERVING meanwhile) reaches the roles once start-up is over, on the
// same connection: the listener is handed over, not closed, and the
// client connects again.
func TestClientConnectedWhileStartingIsServedOnceStarted(t *testing.T) {
	srv := natstest.StartServer(t, func(o *server.Options) { o.JetStream = true })
	proxy, err := tcpproxy.Start(tcpproxy.To(srv.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.SetMode(tcpproxy.Refuse) // NATS down until the client has connected
	cfg := apptest.Config(t, map[string]string{"NATS_URL": "nats://" + proxy.Addr(), "NATS_CONNECT_TIMEOUT": "10m", "ROLES": "command,query"})
	ctx, cancel := context.WithCancel(t.Context())
	listening, ready := make(chan app.Addrs, 1), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(app.Addrs) { close(ready) },
			app.WithListening(func(a app.Addrs) { listening <- a }))
	}()
	t.Cleanup(func() { cancel(); <-done })
	var addrs app.Addrs
	select {
	case addrs = <-listening:
	case err := <-done:
		t.Fatalf("ordersd stopped while waiting for NATS: %v", err)
	}
	conn := dial(t, addrs.GRPC)
	cctx, ccancel := context.WithTimeout(t.Context(), time.Minute) // a bound, not a timing
	defer ccancel()
	if res, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health while starting: %v (code %v), want NOT_SERVING", res, status.Code(err))
	}
	proxy.SetMode(tcpproxy.Forward)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("ordersd stopped: %v", err)
	case <-cctx.Done():
		t.Fatal("ordersd not ready a minute after NATS came up")
	}
	if _, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(cctx,
		&ordersv1.CreateOrderRequest{RequestId: "started-1", CustomerId: "c-1", Currency: "EUR"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("CreateOrder on the connection made while starting: %v", err)
	}
}

// A client that opened a TCP connection to the gRPC port while ordersd was
// starting and sent nothing (a load balancer's TCP check that keeps its
// connection, a stuck client, a port scanner) does not hold start-up. The
// start-up server's Stop (handOver) waited for its connections'
// handshakes, which grpc-go bounds only by its connection timeout (120 s).
func TestIdleConnectionWhileStartingDoesNotHoldReadiness(t *testing.T) {
	cfg := apptest.Config(t, map[string]string{"ROLES": "command,query"})
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	idle := make(chan net.Conn, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.DiscardHandler), func(app.Addrs) { close(ready) },
			app.WithListening(func(a app.Addrs) {
				// Called before start-up's long phases: the start-up
				// gRPC server serves the listener now.
				c, err := net.Dial("tcp", a.GRPC)
				if err != nil {
					t.Error(err)
					return
				}
				// Its SETTINGS frame: it took the connection and now
				// waits for the client's preface, which never comes.
				if _, err := io.ReadFull(c, make([]byte, 9)); err != nil {
					t.Error(err)
				}
				idle <- c
			}))
	}()
	t.Cleanup(func() { cancel(); <-done })
	var c net.Conn
	select {
	case c = <-idle:
	case err := <-done:
		t.Fatalf("ordersd stopped: %v", err)
	}
	defer c.Close()
	select {
	case <-ready:
		return
	case err := <-done:
		t.Fatalf("ordersd stopped: %v", err)
	case <-time.After(30 * time.Second): // a bound, far above a start-up on embedded NATS
	}
	// Proof of the cause: let the idle client go, and ordersd is ready at once.
	c.Close()
	select {
	case <-ready:
		t.Fatal("ordersd was not ready 30 s into start-up while one client held an idle connection to the gRPC port; it became ready as soon as that connection closed (the start-up server's Stop waited for its handshake)")
	case <-time.After(30 * time.Second):
		t.Fatal("ordersd not ready after 60 s, even once the idle connection closed")
	}
}

// STREAM_REPLICAS above 1 against a NATS server that is not clustered
// stops start-up naming the variable, as the README says a bad value
// does: the server's refusal ("replicas > 1 not supported in
// non-clustered mode") came as an invalid option of the event store.
func TestStreamReplicasOnAServerNotClusteredNamesTheVariable(t *testing.T) {
	ns := estest.StartServer(t)
	vars := map[string]string{"NATS_URL": ns.ClientURL(), "STREAM_REPLICAS": "3", "ROLES": "command"}
	if err := runErr(t, apptest.Config(t, vars), vars); err == nil || !strings.HasPrefix(err.Error(), "STREAM_REPLICAS:") {
		t.Fatalf("start-up: %v, want an error naming STREAM_REPLICAS", err)
	}
	// A node without the command role keeps the log's settings, which
	// it opens, and is refused the replicas by the parked payments'
	// bucket: it retried that until NATS_CONNECT_TIMEOUT, then failed
	// without naming the variable.
	_, js := estest.Connect(t, ns)
	if _, err := eventstore.New(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	vars = map[string]string{"NATS_URL": ns.ClientURL(), "STREAM_REPLICAS": "3", "ROLES": "payments", "COMMAND_ADDR": "127.0.0.1:1",
		"NATS_CONNECT_TIMEOUT": "5s"}
	if err := runErr(t, apptest.Config(t, vars), vars); err == nil || !strings.Contains(err.Error(), "STREAM_REPLICAS:") {
		t.Fatalf("start-up of a payments node: %v, want an error naming STREAM_REPLICAS", err)
	}
}
