// Package telemetry sets up OpenTelemetry tracing and metrics and the slog
// logger for ordersd.
//
// Tracing is configured by the standard OTEL_* variables. With neither
// OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (or
// with OTEL_TRACES_EXPORTER=none) no tracer provider is installed: spans are
// the API's no-ops and cost next to nothing. OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
// else OTEL_EXPORTER_OTLP_PROTOCOL, picks "grpc" (the default here, what
// Jaeger listens for on 4317) or "http/protobuf"; OTEL_TRACES_SAMPLER and
// OTEL_RESOURCE_ATTRIBUTES are read by the SDK itself. The service name is
// chosen as the OpenTelemetry specification orders it: OTEL_SERVICE_NAME,
// else service.name in OTEL_RESOURCE_ATTRIBUTES, else the name the program
// passes to Setup (in place of the SDK's "unknown_service"). The propagator
// is always W3C tracecontext + baggage, so trace context crosses gRPC, HTTP
// and NATS headers even when this process does not export.
//
// Metrics always exist: an OpenTelemetry meter provider feeding a
// Prometheus registry, served by MetricsHandler on /metrics.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Telemetry holds the providers ordersd passes to its components.
type Telemetry struct {
	// Tracer is the provider to instrument with; a no-op when export is off.
	Tracer trace.TracerProvider
	// Meter feeds the Prometheus registry behind MetricsHandler.
	Meter metric.MeterProvider
	// MetricsHandler serves the Prometheus text format.
	MetricsHandler http.Handler
	// Exporting says whether spans leave the process.
	Exporting bool
	// Tracing says whether spans are recorded at all: exported, or handed
	// to a span processor given as an option.
	Tracing bool

	shutdown []func(context.Context) error
}

// Option configures Setup. An option given a value it does not accept
// makes Setup fail with an error wrapping ErrInvalidOption; each option
// says which values those are.
type Option func(*setup) error

// ErrInvalidOption reports an option of Setup given a value it does not
// accept.
var ErrInvalidOption = errors.New("telemetry: invalid option")

type setup struct {
	spanProcessor sdktrace.SpanProcessor
	getenv        func(string) string
	errorLog      *slog.Logger
}

// WithErrorLog sends OpenTelemetry's own errors (a trace export that
// failed: the collector away, say) to log at WARN, as JSON lines like the
// process's others; without it they go to the standard library's log
// package, as plain text without a level. Invalid: nil.
func WithErrorLog(log *slog.Logger) Option {
	return func(s *setup) error {
		if log == nil {
			return fmt.Errorf("%w: WithErrorLog(nil)", ErrInvalidOption)
		}
		s.errorLog = log
		return nil
	}
}

// WithSpanProcessor adds a span processor and turns tracing on regardless of
// the environment; tests use it with tracetest.SpanRecorder. Invalid: nil.
func WithSpanProcessor(p sdktrace.SpanProcessor) Option {
	return func(s *setup) error {
		if p == nil {
			return fmt.Errorf("%w: WithSpanProcessor(nil)", ErrInvalidOption)
		}
		s.spanProcessor = p
		return nil
	}
}

// WithEnv replaces os.Getenv, so tests need not touch the process
// environment. Invalid: nil.
func WithEnv(getenv func(string) string) Option {
	return func(s *setup) error {
		if getenv == nil {
			return fmt.Errorf("%w: WithEnv(nil)", ErrInvalidOption)
		}
		s.getenv = getenv
		return nil
	}
}

// Setup builds the providers and installs them as the globals, with the
// tracecontext + baggage propagator. serviceName is used when neither
// OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES names the service. Call
// Shutdown to flush exports. It fails with an error wrapping
// ErrInvalidOption when an option is invalid, before installing anything.
func Setup(ctx context.Context, serviceName string, opts ...Option) (*Telemetry, error) {
	s := setup{getenv: os.Getenv}
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if log := s.errorLog; log != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			log.Warn("telemetry: an export or an instrument failed", "err", err)
		}))
	}

	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(resolveServiceName(s.getenv, serviceName))))
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	t := &Telemetry{Tracer: noop.NewTracerProvider()}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := promexporter.New(promexporter.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.Meter = mp
	t.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	t.shutdown = append(t.shutdown, mp.Shutdown)
	otel.SetMeterProvider(mp)

	var tpOpts []sdktrace.TracerProviderOption
	if s.spanProcessor != nil {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(s.spanProcessor))
	}
	if exporterWanted(s.getenv) {
		sp, err := newExporter(ctx, s.getenv)
		if err != nil {
			return nil, err
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(sp))
		t.Exporting = true
	}
	if len(tpOpts) > 0 {
		tp := sdktrace.NewTracerProvider(append(tpOpts, sdktrace.WithResource(res))...)
		t.Tracer = tp
		t.Tracing = true
		t.shutdown = append(t.shutdown, tp.Shutdown)
		otel.SetTracerProvider(tp)
	}
	return t, nil
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		errs = append(errs, t.shutdown[i](ctx))
	}
	return errors.Join(errs...)
}

// resolveServiceName returns the service name as the OpenTelemetry
// specification orders its sources: OTEL_SERVICE_NAME, then service.name in
// OTEL_RESOURCE_ATTRIBUTES, then def. Setup merges the result over the
// SDK's default resource, so def must not win over the operator's
// service.name there, as it did. The variables are read through getenv,
// so that WithEnv decides the name entirely; OTEL_RESOURCE_ATTRIBUTES is
// read as the SDK reads it (pairs split at ',' and '=', the key trimmed,
// the value trimmed and percent-decoded, the last pair of a key winning).
func resolveServiceName(getenv func(string) string, def string) string {
	if v := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); v != "" {
		return v
	}
	name := ""
	for _, pair := range strings.Split(getenv("OTEL_RESOURCE_ATTRIBUTES"), ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.TrimSpace(k) != string(semconv.ServiceNameKey) {
			continue
		}
		v = strings.TrimSpace(v)
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		name = v
	}
	if name != "" {
		return name
	}
	return def
}

// traceSetting is the value of the traces' own variable OTEL_EXPORTER_OTLP_TRACES_<key>
// if set, else the general OTEL_EXPORTER_OTLP_<key>, trimmed as the
// exporters trim them, with the name of the variable it came from: an
// error names that one, as the operator who set the traces' own would look
// for the general one in vain.
func traceSetting(getenv func(string) string, key string) (name, value string) {
	name = "OTEL_EXPORTER_OTLP_TRACES_" + key
	if value = strings.TrimSpace(getenv(name)); value == "" {
		name = "OTEL_EXPORTER_OTLP_" + key
		value = strings.TrimSpace(getenv(name))
	}
	return name, value
}

// checkEndpoint refuses an OTLP endpoint that is no http or https URL with
// a host, or for gRPC a unix socket's (the variables are URLs): the
// exporters take "collector:4317" for a URL of scheme "collector", which
// the HTTP exporter sends to localhost and the gRPC one over TLS, so spans
// were lost with no word but the export's failures.
func checkEndpoint(name, v string, grpc bool) error {
	u, err := url.Parse(v)
	switch {
	case err != nil:
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		return nil
	case grpc && u.Scheme == "unix" && (u.Path != "" || u.Opaque != ""):
		return nil
	}
	return fmt.Errorf("%s: %q is not an http:// or https:// URL with a host (http://collector:4317, say), or for grpc a unix:// socket", name, v)
}

func exporterWanted(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	_, endpoint := traceSetting(getenv, "ENDPOINT")
	return endpoint != ""
}

// newExporter builds the OTLP exporter; the exporters read the endpoint,
// headers, timeout and TLS settings from the OTEL_EXPORTER_OTLP_* variables
// themselves.
func newExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	protoVar, proto := traceSetting(getenv, "PROTOCOL")
	// Called only with an endpoint set (exporterWanted).
	name, endpoint := traceSetting(getenv, "ENDPOINT")
	if err := checkEndpoint(name, endpoint, proto == "" || proto == "grpc"); err != nil {
		return nil, err
	}
	switch proto {
	case "", "grpc":
		e, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP/gRPC exporter: %w", err)
		}
		return e, nil
	case "http/protobuf":
		e, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP/HTTP exporter: %w", err)
		}
		return e, nil
	default:
		return nil, fmt.Errorf("%s: %q is not grpc or http/protobuf", protoVar, proto)
	}
}
