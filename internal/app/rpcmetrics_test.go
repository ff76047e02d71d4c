package app_test

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"
)

const createMethod = "orders.v1.OrderCommandService/CreateOrder"

// createTraced creates an order with a caller's trace context in the
// call's metadata and returns the trace id the log recorded for its event.
func createTraced(t *testing.T, grpcAddr, traceID, requestID string) string {
	t.Helper()
	conn := dial(t, grpcAddr)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	c, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(ctx, &ordersv1.CreateOrderRequest{
		RequestId: requestID, CustomerId: "c", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Riga", Country: "LV"}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := ordersv1.NewOrderAuditServiceClient(conn).GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: c.GetOrder().GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.GetEvents()) != 1 {
		t.Fatalf("history has %d events, want 1", len(h.GetEvents()))
	}
	return h.GetEvents()[0].GetTraceId()
}

// waitCount scrapes /metrics until ordersd's own handler has counted the
// CreateOrder calls answered OK (it records a call once its answer is
// sent), then fails unless that is the count under every scope. A
// handler before it (otelgrpc's, with tracing on) records the same call
// earlier, so by then a second count would show.
func waitCount(t *testing.T, httpAddr string, want float64) {
	t.Helper()
	labels := []string{"rpc_method", createMethod, "rpc_response_status_code", "OK", "rpc_system_name", "grpc"}
	for deadline := time.Now().Add(10 * time.Second); ; {
		ms, body := scrape(t, "http://"+httpAddr)
		own, _ := sum(ms, "rpc_server_call_duration_seconds_count", append(labels, "otel_scope_name", "github.com/orderstream/orderstream/internal/telemetry")...)
		if own >= want || time.Now().After(deadline) {
			if all, _ := sum(ms, "rpc_server_call_duration_seconds_count", labels...); all != want || own != want {
				t.Fatalf("CreateOrder counted %v times (%v by ordersd's handler), want %v\n%.2000s", all, own, want, body)
			}
			return
		}
		time.Sleep(20 * time.Millisecond) // scraping, as Prometheus would
	}
}

// With tracing off, ordersd still takes the caller's trace context from
// the call's metadata, so the event records the caller's trace; and the
// call is counted in the RPC histogram.
func TestCallersTraceReachesTheLogWithoutTracing(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	addrs, _ := run(t, t.TempDir())
	if got := createTraced(t, addrs.GRPC, traceID, "untraced-1"); got != traceID {
		t.Fatalf("event's trace id %q, want the caller's %s", got, traceID)
	}
	waitCount(t, addrs.HTTP, 1)
}

// With tracing on, the server span continues the caller's trace and the
// event records it, and each call is counted once: the span handler adds
// no second count to the histogram.
func TestTracedCallIsCountedOnce(t *testing.T) {
	const traceID = "5bf92f3577b34da6a3ce929d0e0e4737"
	rec := tracetest.NewSpanRecorder()
	addrs := runTraced(t, rec)
	if got := createTraced(t, addrs.GRPC, traceID, "traced-1"); got != traceID {
		t.Fatalf("event's trace id %q, want the caller's %s", got, traceID)
	}
	waitCount(t, addrs.HTTP, 1)
	for deadline := time.Now().Add(5 * time.Second); ; {
		for _, s := range rec.Ended() {
			if s.Name() == createMethod && s.SpanContext().TraceID().String() == traceID {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no server span for CreateOrder in the caller's trace")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
