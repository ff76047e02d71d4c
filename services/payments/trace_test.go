package payments_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/otelstore"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/testlog"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/payments"
	noopmetric "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// failFirstCharge fails the first charge transiently, before it reaches
// the provider.
type failFirstCharge struct {
	payments.Provider
	failed atomic.Bool
}

func (g *failFirstCharge) Charge(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	if g.failed.CompareAndSwap(false, true) {
		return payments.ChargeResult{}, errors.New("provider unreachable")
	}
	return g.Provider.Charge(ctx, req)
}

// A failed payment attempt is logged with the job's context: the JSON log
// line carries the trace of the command that placed the order, the trace
// the attempt's span belongs to, and as span_id the span that wrote the
// event, the attempt span's parent.
func TestAttemptFailureLogCarriesTraceID(t *testing.T) {
	e := start(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	traced, err := otelstore.Wrap(e.store, tp, noopmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	// The order is placed through a traced store, so its events carry the
	// trace context, as in ordersd.
	cmd, err := command.New(traced)
	if err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(t.Context(), "place order")
	c, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "trace-c", CustomerId: "c", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 500}},
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Bern", Country: "CH"}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	if _, err := cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "trace-p", OrderId: id}); err != nil {
		t.Fatal(err)
	}
	root.End()

	var out testlog.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&out, nil)))
	gw := &failFirstCharge{Provider: payments.NewSimulator(payments.SimulatorConfig{})}
	e.run(t, gw, fast(), payments.WithLogger(log), payments.WithTelemetry(tp, noopmetric.NewMeterProvider()))
	e.waitFor(t, 1, "PaymentAuthorized")

	var line map[string]any
	for l := range strings.Lines(out.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if m["msg"] == "payments: attempt failed" && m["order"] == id {
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no attempt failure logged:\n%s", out.String())
	}
	var charge sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "payment.charge" {
			charge = s
			break
		}
	}
	if charge == nil {
		t.Fatal("no payment.charge span")
	}
	want := root.SpanContext().TraceID()
	if charge.SpanContext().TraceID() != want {
		t.Fatalf("the charge span is in trace %s, not the placement's %s", charge.SpanContext().TraceID(), want)
	}
	if line["trace_id"] != want.String() {
		t.Fatalf("log line trace_id %v, want the charge span's trace %s: %v", line["trace_id"], want, line)
	}
	if line["span_id"] != charge.Parent().SpanID().String() {
		t.Fatalf("log line span_id %v, want the charge span's parent %s", line["span_id"], charge.Parent().SpanID())
	}
}
