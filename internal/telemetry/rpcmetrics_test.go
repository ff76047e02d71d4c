package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testService answers UnaryCall with the status the request asks for, and
// remembers the span context EmptyCall's context carried.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	seen chan trace.SpanContext
}

func (s *testService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	select {
	case s.seen <- trace.SpanContextFromContext(ctx):
	default:
	}
	return &testgrpc.Empty{}, nil
}

func (*testService) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if c := req.GetResponseStatus().GetCode(); c != 0 {
		return nil, status.Error(codes.Code(c), "asked for")
	}
	return &testgrpc.SimpleResponse{}, nil
}

func (*testService) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, s testgrpc.TestService_StreamingOutputCallServer) error {
	return s.Send(&testgrpc.StreamingOutputCallResponse{})
}

// rpcServer serves the test service and health with m as the stats
// handler, recognising the registered methods when recognize is set. stop
// drains the server: every call's end has been recorded once it returns.
func rpcServer(t *testing.T, m *telemetry.RPCMetrics, recognize bool) (conn *grpc.ClientConn, svc *testService, stop func()) {
	t.Helper()
	// Calls of other methods go to a handler of their own, as a proxy's
	// would, which answers UNIMPLEMENTED.
	srv := grpc.NewServer(grpc.StatsHandler(m), grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unimplemented, "no such method")
	}))
	svc = &testService{seen: make(chan trace.SpanContext, 1)}
	testgrpc.RegisterTestServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	if recognize {
		m.Recognize(srv.GetServiceInfo())
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stop = func() {
		_ = conn.Close()
		srv.GracefulStop()
		<-served
	}
	t.Cleanup(stop)
	return conn, svc, stop
}

// newRPCMetrics returns RPCMetrics with prop on a meter provider read by
// the returned reader.
func newRPCMetrics(t *testing.T, prop propagation.TextMapPropagator) (*telemetry.RPCMetrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := telemetry.NewRPCMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), prop)
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// durations collects the histogram's data points as counts by method,
// status code and error type; it fails on any point without the system
// name.
func durations(t *testing.T, r *sdkmetric.ManualReader) map[[3]string]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[[3]string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "rpc.server.call.duration" {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("unit %q, want s", m.Unit)
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				get := func(k string) string { v, _ := dp.Attributes.Value(attribute.Key(k)); return v.AsString() }
				if get("rpc.system.name") != "grpc" {
					t.Errorf("point without rpc.system.name=grpc: %v", dp.Attributes.ToSlice())
				}
				got[[3]string{get("rpc.method"), get("rpc.response.status_code"), get("error.type")}] += dp.Count
			}
		}
	}
	return got
}

// Every call of the server is counted once it ends, by method and code;
// the codes that are the server's fault carry error.type; a method that
// is not registered (served by the unknown-service handler) is "_OTHER";
// health checks are not counted.
func TestRPCMetricsCountCallsByMethodAndCode(t *testing.T) {
	m, reader := newRPCMetrics(t, nil)
	conn, _, stop := rpcServer(t, m, true)
	c := testgrpc.NewTestServiceClient(conn)
	ctx := t.Context()
	for range 2 {
		if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, code := range []codes.Code{codes.Internal, codes.InvalidArgument} {
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(code)}})
		if status.Code(err) != code {
			t.Fatalf("UnaryCall: %v, want %v", err, code)
		}
	}
	s, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := s.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.Invoke(ctx, "/no.such.Service/Method", &testgrpc.Empty{}, &testgrpc.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("unknown method: %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	stop()

	want := map[[3]string]uint64{
		{"grpc.testing.TestService/EmptyCall", "OK", ""}:               2,
		{"grpc.testing.TestService/UnaryCall", "INTERNAL", "INTERNAL"}: 1,
		{"grpc.testing.TestService/UnaryCall", "INVALID_ARGUMENT", ""}: 1,
		{"grpc.testing.TestService/StreamingOutputCall", "OK", ""}:     1,
		{"_OTHER", "UNIMPLEMENTED", "UNIMPLEMENTED"}:                   1,
	}
	got := durations(t, reader)
	if len(got) != len(want) {
		t.Errorf("got %d series, want %d: %v", len(got), len(want), got)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%v: %d calls, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

// Until the server's methods are recognised, every call is "_OTHER": a
// method name a client sends is never a series of its own.
func TestRPCMetricsNameOnlyRecognisedMethods(t *testing.T) {
	m, reader := newRPCMetrics(t, nil)
	conn, _, stop := rpcServer(t, m, false)
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(t.Context(), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	stop()
	got := durations(t, reader)
	if n := got[[3]string{"_OTHER", "OK", ""}]; n != 1 || len(got) != 1 {
		t.Fatalf("got %v, want one _OTHER call", got)
	}
}

// Given a propagator, the handler puts the caller's trace context into the
// call's context (as otelgrpc would with tracing off); without one it
// leaves the context alone.
func TestRPCMetricsExtractTraceContext(t *testing.T) {
	const traceID, spanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		name string
		prop propagation.TextMapPropagator
	}{{"propagator", propagation.TraceContext{}}, {"none", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newRPCMetrics(t, tc.prop)
			conn, svc, _ := rpcServer(t, m, true)
			ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-"+spanID+"-01")
			if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
				t.Fatal(err)
			}
			sc := <-svc.seen
			if tc.prop == nil {
				if sc.IsValid() {
					t.Fatalf("extracted %v without a propagator", sc)
				}
				return
			}
			if sc.TraceID().String() != traceID || sc.SpanID().String() != spanID || !sc.IsRemote() || !sc.IsSampled() {
				t.Fatalf("span context %v, want the caller's %s/%s, remote and sampled", sc, traceID, spanID)
			}
		})
	}
}
