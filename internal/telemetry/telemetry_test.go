package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/telemetry/otlptest"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
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

// envOf is an environment for WithEnv holding only vars.
func envOf(vars map[string]string) telemetry.Option {
	return telemetry.WithEnv(func(k string) string { return vars[k] })
}

// serviceName returns the service.name of the spans Setup's tracer
// provider records, set up with opts.
func serviceName(t *testing.T, opts ...telemetry.Option) string {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(t.Context(), "ordersd", append(opts, telemetry.WithSpanProcessor(rec))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	_, span := tel.Tracer.Tracer("t").Start(t.Context(), "s")
	span.End()
	v, _ := rec.Ended()[0].Resource().Set().Value(semconv.ServiceNameKey)
	return v.AsString()
}

// The service name comes, as the OpenTelemetry specification orders it,
// from OTEL_SERVICE_NAME, else from service.name in
// OTEL_RESOURCE_ATTRIBUTES, else from the program: the program's name
// must not override the operator's.
func TestServiceNameOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"resource attributes", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=orders-gateway-eu,deployment.environment=prod"}, "orders-gateway-eu"},
		{"spaced and percent-encoded", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name = orders%20eu "}, "orders eu"},
		{"OTEL_SERVICE_NAME first", map[string]string{"OTEL_SERVICE_NAME": "orders-named", "OTEL_RESOURCE_ATTRIBUTES": "service.name=orders-gateway-eu"}, "orders-named"},
		{"resource attributes without a name", map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod"}, "ordersd"},
		{"neither", nil, "ordersd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := serviceName(t, envOf(tc.env)); got != tc.want {
				t.Errorf("service.name = %q, want %q (environment %v)", got, tc.want, tc.env)
			}
		})
	}
	// The same from the process environment, which the SDK reads itself.
	t.Run("process environment", func(t *testing.T) {
		t.Setenv("OTEL_SERVICE_NAME", "")
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=orders-gateway-eu")
		if got := serviceName(t); got != "orders-gateway-eu" {
			t.Errorf("service.name = %q, want %q from OTEL_RESOURCE_ATTRIBUTES", got, "orders-gateway-eu")
		}
	})
}

// A protocol this program does not speak is reported under the variable it
// came from, the one the operator has to fix.
func TestBadProtocolNamesItsVariable(t *testing.T) {
	endpoint := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
	with := func(vars map[string]string) map[string]string {
		m := maps.Clone(endpoint)
		maps.Copy(m, vars)
		return m
	}
	for _, tc := range []struct {
		env           map[string]string
		want, notWant string
	}{
		{with(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", ""},
		{with(map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", ""},
		{with(map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}), "OTEL_EXPORTER_OTLP_PROTOCOL", "TRACES"},
	} {
		tel, err := telemetry.Setup(t.Context(), "ordersd", envOf(tc.env))
		if err == nil {
			_ = tel.Shutdown(context.Background())
			t.Errorf("%v: accepted", tc.env)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "http/json") ||
			(tc.notWant != "" && strings.Contains(err.Error(), tc.notWant)) {
			t.Errorf("%v: %v, want an error naming %s and its value", tc.env, err, tc.want)
		}
	}
}

// An endpoint is a URL: "collector:4317", a host and port as other
// settings take them, was taken by the exporters for a URL of scheme
// "collector", whose spans the HTTP exporter sent to localhost and the
// gRPC one over TLS; they were lost, with no word but the export's
// failures. It is refused, naming its variable.
func TestEndpointThatIsNoURLNamesItsVariable(t *testing.T) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		for _, v := range []string{"collector:4317", "127.0.0.1:4317", "grpc://collector:4317", "http://"} {
			tel, err := telemetry.Setup(t.Context(), "ordersd", envOf(map[string]string{name: v}))
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Errorf("%s=%s: accepted", name, v)
				continue
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%s: %v, want an error naming the variable", name, v, err)
			}
		}
	}
	tel, err := telemetry.Setup(t.Context(), "ordersd", envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:4317"}))
	if err != nil {
		t.Fatalf("an https URL: %v", err)
	}
	_ = tel.Shutdown(context.Background())
}

// exportThrough sets the endpoint variable to endpoint, starts telemetry,
// records one span and flushes it; it returns Setup's error.
func exportThrough(t *testing.T, endpoint string) error {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	tel, err := telemetry.Setup(t.Context(), "ordersd")
	if err != nil {
		return err
	}
	_, span := tel.Tracer.Tracer("test").Start(t.Context(), "probe-span")
	span.End()
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	return nil
}

// The OTLP/gRPC exporter takes a unix:// endpoint (a local agent's
// socket) and sends its spans there: the check of the endpoint lets it by.
func TestUnixSocketEndpointExports(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "otlp.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := &otlptest.Collector{}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	if err := exportThrough(t, "unix://"+sock); err != nil {
		t.Fatalf("unix socket endpoint refused: %v", err)
	}
	if got := c.Names(); len(got) != 1 || got[0] != "probe-span" {
		t.Fatalf("collector on the unix socket got %q", got)
	}
}

// The exporters trim the variables (otel's envconfig.GetEnvValue), so an
// endpoint written with a trailing newline (a YAML block scalar, a .env
// file) exports: the check of the endpoint trims it as they do.
func TestEndpointWithSurroundingSpaceExports(t *testing.T) {
	c, endpoint := otlptest.Start(t)
	if err := exportThrough(t, endpoint+"\n"); err != nil {
		t.Fatalf("endpoint with a trailing newline refused: %v", err)
	}
	if got := c.Names(); len(got) != 1 || got[0] != "probe-span" {
		t.Fatalf("collector got %q", got)
	}
}

// An endpoint of blanks is unset, as the exporters read it (trimmed): no
// exporter. It was taken for set, its check skipped once trimmed, and an
// exporter sent to its default endpoint.
func TestBlankEndpointDoesNotExport(t *testing.T) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		tel, err := telemetry.Setup(t.Context(), "ordersd", envOf(map[string]string{name: " \n"}))
		if err != nil {
			t.Fatalf("%s blank: %v", name, err)
		}
		if tel.Exporting {
			t.Errorf("%s blank: exporting, want no exporter", name)
		}
		_ = tel.Shutdown(context.Background())
	}
}
