package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/telemetry/otlptest"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func runTraced(t *testing.T, rec *tracetest.SpanRecorder) app.Addrs {
	t.Helper()
	a, _ := apptest.Start(t, nil, app.WithTelemetry(telemetry.WithSpanProcessor(rec), telemetry.WithEnv(func(string) string { return "" })))
	return a
}

// post sends a command over REST with Idempotency-Key key and returns its
// JSON answer; anything but 200 fails the test.
func post(t *testing.T, url, body, key string) map[string]any {
	t.Helper()
	code, b := doWithHeaders(t, "POST", url, body, "Idempotency-Key", key)
	if code != 200 {
		t.Fatalf("POST %s: %d %s", url, code, b)
	}
	var m map[string]any
	if err := jsonUnmarshal([]byte(b), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// One order placed over REST yields one trace from the HTTP request through
// the gRPC call and the append to the payment attempt, and the
// projection's batch span links to it; each carries the order id and the
// log positions it worked on.
func TestOneTraceFromRESTToPayment(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	a := runTraced(t, rec)
	c, placedAt := placeAndAwaitPayment(t, a, "trace")
	id := c["order"].(map[string]any)["orderId"].(string)

	var placeTrace trace.TraceID
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = append(byName[s.Name()], s)
		if s.Name() == "POST /v1/orders/{order_id}:place" {
			placeTrace = s.SpanContext().TraceID()
		}
	}
	if !placeTrace.IsValid() {
		t.Fatalf("no HTTP span for the place request; spans: %v", names(byName))
	}
	inTrace := func(name string, check func(sdktrace.ReadOnlySpan) bool) {
		t.Helper()
		for _, s := range byName[name] {
			if s.SpanContext().TraceID() == placeTrace && (check == nil || check(s)) {
				return
			}
		}
		t.Fatalf("no %q span in the place request's trace; spans: %v", name, names(byName))
	}
	inTrace("orders.v1.OrderCommandService/PlaceOrder", nil)
	inTrace("eventstore.append", func(s sdktrace.ReadOnlySpan) bool {
		v, ok := attr(s, "log.position")
		o, _ := attr(s, "order.id")
		return ok && uint64(v.AsInt64()) == placedAt && o.AsString() == id
	})
	createdAt, _ := strconv.ParseUint(c["position"].(string), 10, 64)
	// PlaceOrder decides on the history this node kept when it created the
	// order: it reads nothing from the log (command.WithHistories).
	for _, s := range byName["eventstore.load"] {
		o, _ := attr(s, "order.id")
		v, ok := attr(s, "log.position.last")
		if s.SpanContext().TraceID() == placeTrace && o.AsString() == id && ok && uint64(v.AsInt64()) == createdAt {
			t.Fatal("PlaceOrder read the order from the log, though this node created it")
		}
	}
	inTrace("payment.charge", func(s sdktrace.ReadOnlySpan) bool {
		o, _ := attr(s, "order.id")
		v, ok := attr(s, "log.position")
		return o.AsString() == id && ok && uint64(v.AsInt64()) == placedAt
	})
	// The batch that applied the placement links to its trace and names
	// the positions it covered.
	linked := false
	for _, s := range byName["projection.apply_batch"] {
		first, ok1 := attr(s, "log.position.first")
		last, ok2 := attr(s, "log.position.last")
		for _, l := range s.Links() {
			linked = linked || (l.SpanContext.TraceID() == placeTrace && ok1 && ok2 &&
				uint64(first.AsInt64()) <= placedAt && placedAt <= uint64(last.AsInt64()))
		}
	}
	if !linked {
		t.Fatal("no projection batch span covering the placement's position links to the place request's trace")
	}
}

// placeAndAwaitPayment creates and places an order over REST with
// idempotency keys keyPrefix-1 and keyPrefix-2, and returns once the
// payments manager has recorded its payment and the read model shows it. It
// returns the creation's answer and the placement's position.
func placeAndAwaitPayment(t *testing.T, a app.Addrs, keyPrefix string) (map[string]any, uint64) {
	t.Helper()
	base := "http://" + a.HTTP
	c := post(t, base+"/v1/orders", `{"customerId":"traced","currency":"EUR","lines":[{"sku":"A","quantity":"1","unitPrice":"700"}],
		"shippingAddress":{"line1":"1","city":"Riga","country":"LV"}}`, keyPrefix+"-1")
	id := c["order"].(map[string]any)["orderId"].(string)
	p := post(t, base+"/v1/orders/"+id+":place", `{}`, keyPrefix+"-2")
	placedAt, _ := strconv.ParseUint(p["position"].(string), 10, 64)
	conn := dial(t, a.GRPC)
	stream, err := ordersv1.NewOrderAuditServiceClient(conn).StreamEvents(t.Context(), &ordersv1.StreamEventsRequest{
		OrderIds: []string{id}, FromPosition: placedAt + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	paid, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(t.Context(), &ordersv1.GetOrderRequest{OrderId: id,
		Consistency: &ordersv1.Consistency{MinPosition: paid.GetEvent().GetPosition()}}); err != nil {
		t.Fatal(err)
	}
	return c, placedAt
}

func names(m map[string][]sdktrace.ReadOnlySpan) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

// /metrics reports appended events exactly, and projection lag back at 0.
func TestMetricsAfterWorkload(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "ROLES", "command,query,audit,gateway")
	conn := dial(t, addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	var last uint64
	for i := range 7 {
		c, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "m-" + strconv.Itoa(i), CustomerId: "m", Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		last = c.GetPosition()
	}
	// A retry appends nothing and is counted as a duplicate, not an append.
	if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "m-0", CustomerId: "m", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ordersv1.NewOrderQueryServiceClient(conn).ListOrders(t.Context(), &ordersv1.ListOrdersRequest{Consistency: &ordersv1.Consistency{MinPosition: last}}); err != nil {
		t.Fatal(err)
	}
	metric := func(body, name string) (float64, bool) {
		m := regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? ([0-9.e+-]+)$`).FindStringSubmatch(body)
		if m == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(m[2], 64)
		return v, err == nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + addrs.HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body := string(b)
		events, ok1 := metric(body, "orders_eventstore_events_appended_total")
		lag, ok2 := metric(body, "orders_projection_lag_events")
		connected, ok4 := metric(body, "orders_nats_connected")
		_, ok3 := metric(body, "rpc_server_call_duration_seconds_count")
		if !ok3 {
			_, ok3 = metric(body, "rpc_server_duration_milliseconds_count")
		}
		if ok1 && ok2 && events == 7 && lag == 0 && ok3 && ok4 && connected == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: events=%v (%v) lag=%v (%v) rpc=%v\n%.3000s", events, ok1, lag, ok2, ok3, body)
		}
		time.Sleep(20 * time.Millisecond) // scraping, as Prometheus would
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// With OTEL_EXPORTER_OTLP_ENDPOINT, ordersd exports its spans over OTLP:
// a receiver on loopback gets the RPC and the append of a command.
func TestOrdersdExportsOverOTLP(t *testing.T) {
	c, endpoint := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	addrs, stop := run(t, t.TempDir(), "ROLES", "command")
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, addrs.GRPC))
	if _, err := cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "otlp-1", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	stop() // shutdown flushes the exporter
	got := map[string]bool{}
	for _, n := range c.Names() {
		got[n] = true
	}
	if !got["orders.v1.OrderCommandService/CreateOrder"] || !got["eventstore.append"] {
		t.Fatalf("the receiver got %v", c.Names())
	}
}
