package app_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// series counts the series of a scrape: its sample lines.
func series(body string) int {
	n := 0
	for _, l := range strings.Split(body, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// REST metrics are labelled with the route template and this listener's
// address, never with what a client sends: 1,000 requests with distinct
// Host headers and order ids add no series to /metrics.
func TestRESTMetricsAddNoSeriesPerHostOrID(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	base := "http://" + addrs.HTTP
	// Ready first: a 503 of a node catching up is a series of its own.
	waitStatus(t, base+"/readyz", http.StatusOK)
	get := func(host, id string) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/orders/"+id, nil)
		if err != nil {
			t.Error(err)
			return
		}
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET /v1/orders/%s: %d", id, res.StatusCode)
		}
	}
	get("warm-up.example:1", "warm-up") // the series of a 404 on this route
	_, before := scrape(t, base)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 1000; i += 8 {
				get(fmt.Sprintf("h%d.example:%d", i, 2000+i), fmt.Sprintf("id-%d", i))
			}
		})
	}
	wg.Wait()
	_, body := scrape(t, base)
	if b, a := series(before), series(body); a != b {
		t.Fatalf("1,000 requests with distinct Host headers and ids added %d series:\n%s", a-b, grep(body, "http_server"))
	}
	host, port, _ := strings.Cut(addrs.HTTP, ":")
	labels := []string{`http_route="/v1/orders/{order_id}"`, `server_address="` + host + `"`, `server_port="` + port + `"`}
	if !containsAll(grep(body, "http_server_request_duration_seconds_count"), labels...) {
		t.Fatalf("no REST series labelled with the route template and the listener's address:\n%s", grep(body, "http_server"))
	}
	if strings.Contains(body, "example") || strings.Contains(body, "id-1") {
		t.Fatalf("a client-sent value is a label:\n%s", grep(body, "example", "id-1"))
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// With authentication on, /metrics needs a token with the admin role.
func TestMetricsNeedAdminWithAuthentication(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("admin-token-0123456789 ops admin\nclerk-token-0123456789 alice clerk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "AUTH_TOKENS_FILE", tokens, "ROLES", "command")
	for token, want := range map[string]int{"": 401, "wrong": 401, "clerk-token-0123456789": 403, "admin-token-0123456789": 200} {
		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+addrs.HTTP+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("/metrics with token %q: %d, want %d", token, res.StatusCode, want)
		}
	}
}

// Health checks and reflection make no spans: a probe every few seconds
// would otherwise fill the trace store with root traces of its own.
func TestHealthAndReflectionAreNotTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	a := runTraced(t, rec)
	conn := dial(t, a.GRPC)
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	assertReflection(t, conn)
	if _, err := ordersv1.NewOrderQueryServiceClient(conn).ListOrders(t.Context(), &ordersv1.ListOrdersRequest{}); err != nil {
		t.Fatal(err)
	}
	// The server ends its span after the answer is sent: wait for the
	// ListOrders span, after which the health and reflection spans would
	// have ended too.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		traced := false
		for _, s := range rec.Ended() {
			if strings.HasPrefix(s.Name(), "grpc.health.") || strings.HasPrefix(s.Name(), "grpc.reflection.") {
				t.Fatalf("span %q", s.Name())
			}
			traced = traced || s.Name() == "orders.v1.OrderQueryService/ListOrders"
		}
		if traced {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the ListOrders call made no span either")
		}
	}
}

// Span names are bounded as metric names are: a call of a method this
// server does not have, or a REST request with a method token of the
// client's own, is named "_OTHER" or "HTTP", not after what the client
// sent (a span name per order id, say, in every trace backend).
func TestSpanNamesAreNotTheClients(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	a := runTraced(t, rec)
	conn := dial(t, a.GRPC)
	chosen := []string{"client.chosen.Svc/order-123", "CUST-0001"}
	err := conn.Invoke(t.Context(), "/"+chosen[0], &ordersv1.GetOrderRequest{OrderId: "x"}, &ordersv1.GetOrderResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("a method the server does not have: %v", err)
	}
	req, err := http.NewRequestWithContext(t.Context(), chosen[1], "http://"+a.HTTP+"/v1/orders/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// A call made after both, whose span ends after theirs did.
	if _, err := ordersv1.NewOrderQueryServiceClient(conn).ListOrders(t.Context(), &ordersv1.ListOrdersRequest{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		names := map[string]bool{}
		for _, s := range rec.Ended() {
			names[s.Name()] = true
		}
		for _, c := range chosen {
			if names[c] {
				t.Fatalf("a span is named %q, after the client's own method", c)
			}
		}
		if names["orders.v1.OrderQueryService/ListOrders"] && names["_OTHER"] && names["HTTP"] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans %v: want _OTHER, HTTP and the ListOrders call's", names)
		}
	}
}
