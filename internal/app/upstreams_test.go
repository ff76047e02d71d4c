package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// blackHole accepts TCP connections and never speaks: a gRPC client to it
// stays CONNECTING, so a readiness check of that connection takes the
// whole evaluation timeout and then fails.
func blackHole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

// A gateway-only node whose upstreams never answer is never ready: its
// /readyz says "starting" and then 503. Its overall gRPC health never says
// SERVING either, from the moment its gRPC listener serves: grpc-go's
// health server started SERVING, until the first evaluation, which such
// upstreams make last a second.
func TestGRPCHealthNotServingBeforeTheFirstEvaluation(t *testing.T) {
	ns := estest.StartServer(t)
	hole := blackHole(t)
	grpcAddr := freeAddr(t)
	cfg := apptest.Config(t, map[string]string{"NATS_URL": ns.ClientURL(), "ROLES": "gateway", "GRPC_ADDR": grpcAddr,
		"COMMAND_ADDR": hole, "QUERY_ADDR": hole, "AUDIT_ADDR": hole, "PAYMENTS_ADDR": hole})

	hc := healthpb.NewHealthClient(dial(t, grpcAddr))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(app.Addrs) { close(ready) })
	}()
	defer func() { cancel(); <-done }()

	serving := 0
	answers := 0
	deadline := time.After(20 * time.Second)
	var readyAt time.Time
	for {
		cctx, ccancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: ""})
		ccancel()
		if err == nil {
			answers++
			if r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				serving++
			}
		}
		select {
		case <-ready:
			if readyAt.IsZero() {
				readyAt = time.Now()
			}
		case err := <-done:
			t.Fatalf("ordersd stopped: %v", err)
		case <-deadline:
			t.Fatal("ordersd not started within 20 s")
		default:
		}
		if !readyAt.IsZero() && time.Since(readyAt) > 500*time.Millisecond {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	if answers == 0 {
		t.Fatal("no health answer at all")
	}
	if serving > 0 {
		t.Fatalf("overall gRPC health answered SERVING %d times (of %d answers) while every upstream was unreachable (/readyz never ready)", serving, answers)
	}
}

// A console-only node calls the command, query, audit and payments roles
// at their addresses, as a gateway-only node does; with none of them
// reachable it cannot serve a page, and does not say it is ready (it
// checked nothing of them).
func TestConsoleOnlyNodeChecksItsUpstreams(t *testing.T) {
	ns := estest.StartServer(t)
	down := freeAddr(t)
	addrs, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "console",
		"COMMAND_ADDR", down, "QUERY_ADDR", down, "AUDIT_ADDR", down, "PAYMENTS_ADDR", down)
	url := "http://" + addrs.HTTP + "/readyz"
	var code int
	var body map[string]any
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		code, body = getJSON(t, url)
		if code == 200 {
			break
		}
	}
	if code == 200 {
		t.Fatalf("console-only node with every upstream down: /readyz %d %v", code, body)
	}
}

// A gateway-only node (its query role elsewhere) ends its REST streams at
// shutdown by itself: nothing in this process ends the RPCs they hold. An
// order id holding '/' travels escaped in its one path segment ("w%2F2"),
// which the decoded path split in two, so its watch held shutdown for
// SHUTDOWN_TIMEOUT.
func TestGatewayOnlyShutdownEndsAWatchOfAnEscapedID(t *testing.T) {
	for _, id := range []string{"w1", "w/2"} {
		t.Run(strings.ReplaceAll(id, "/", "_"), func(t *testing.T) {
			const shutdownTimeout = time.Minute
			ns := estest.StartServer(t)
			core, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,query,audit")
			r := startRunning(t, map[string]string{"NATS_URL": ns.ClientURL(), "ROLES": "gateway", "SHUTDOWN_TIMEOUT": shutdownTimeout.String(),
				"COMMAND_ADDR": core.GRPC, "QUERY_ADDR": core.GRPC, "AUDIT_ADDR": core.GRPC, "PAYMENTS_ADDR": core.GRPC})
			base := "http://" + r.addrs.HTTP
			if code, body := doWithHeaders(t, "POST", base+"/v1/orders", `{"requestId":"`+id+`","orderId":"`+id+`","customerId":"c","currency":"EUR"}`); code != http.StatusOK {
				t.Fatalf("create %s: %d %s", id, code, body)
			}
			openStream(t, base+"/v1/orders/"+url.PathEscape(id)+":watch?consistency.minPosition=1", "")
			start := time.Now()
			r.cancel()
			select {
			case <-r.finished:
				t.Logf("shutdown took %v", time.Since(start))
			case <-time.After(shutdownTimeout / 4):
				t.Fatalf("gateway-only node still shutting down %v after the cancel with a REST watch of %q open (SHUTDOWN_TIMEOUT %v)", shutdownTimeout/4, id, shutdownTimeout)
			}
		})
	}
}
