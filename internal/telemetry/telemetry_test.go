package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/telemetry/otlptest"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestOTLPExporterSendsSpans(t *testing.T) {
	c, endpoint := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_SERVICE_NAME", "ordersd-test")
	tel, err := telemetry.Setup(t.Context(), "ordersd")
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Exporting {
		t.Fatal("exporter not enabled by OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	_, span := tel.Tracer.Tracer("test").Start(t.Context(), "probe-span")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil { // flushes the batcher
		t.Fatal(err)
	}
	if got := c.Names(); len(got) != 1 || got[0] != "probe-span" {
		t.Fatalf("collector got %q after shutdown flushed the exporter", got)
	}
}

func TestNoExporterWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tel, err := telemetry.Setup(t.Context(), "ordersd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	if tel.Exporting {
		t.Fatal("exporting without an endpoint")
	}
	_, span := tel.Tracer.Tracer("x").Start(t.Context(), "free")
	if span.SpanContext().IsValid() {
		t.Fatal("spans are recorded although tracing is off")
	}
	// The propagator is still W3C tracecontext, so context passes through.
	if f := otel.GetTextMapPropagator().Fields(); !strings.Contains(strings.Join(f, ","), "traceparent") {
		t.Fatalf("propagator fields %v", f)
	}
}

func TestLogLinesCarryTraceIDs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(t.Context(), "ordersd", telemetry.WithSpanProcessor(rec), telemetry.WithEnv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil)))
	ctx, span := tel.Tracer.Tracer("x").Start(t.Context(), "op")
	log.InfoContext(ctx, "inside")
	span.End()
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var in, out map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &out); err != nil {
		t.Fatal(err)
	}
	if in["trace_id"] != span.SpanContext().TraceID().String() || in["span_id"] != span.SpanContext().SpanID().String() {
		t.Fatalf("inside a span: %v", in)
	}
	if _, ok := out["trace_id"]; ok {
		t.Fatalf("outside a span: %v", out)
	}
}

func TestMetricsHandlerServesPrometheusText(t *testing.T) {
	tel, err := telemetry.Setup(t.Context(), "ordersd", telemetry.WithEnv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	c, err := tel.Meter.Meter("t").Int64Counter("orders.test.things")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(t.Context(), 3)
	srv := httptest.NewServer(tel.MetricsHandler)
	t.Cleanup(srv.Close)
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if !regexp.MustCompile(`(?m)^orders_test_things_total(\{[^}]*\})? 3$`).Match(body) || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("metrics body lacks the counter or runtime metrics:\n%.2000s", body)
	}
}
