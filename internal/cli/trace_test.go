package cli_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/internal/cli"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Each ordersctl call is a client span whose W3C trace context reaches the
// server, so the server's spans join ordersctl's trace.
func TestCallsCarryTraceContext(t *testing.T) {
	var mu sync.Mutex
	var got []string
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		got = append(got, md.Get("traceparent")...)
		mu.Unlock()
		return h(ctx, req)
	}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cli.Run(t.Context(), []string{"admin", "health", "--addr", lis.Addr().String()},
		cli.IO{Out: io.Discard, Err: io.Discard, TracerProvider: tp})

	sent := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient && s.Name() == "grpc.health.v1.Health/Check" {
			sent["00-"+s.SpanContext().TraceID().String()+"-"+s.SpanContext().SpanID().String()+"-01"] = true
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || len(sent) != len(got) {
		t.Fatalf("the server got trace context %v for client spans %v", got, sent)
	}
	for _, tp := range got {
		if !sent[tp] {
			t.Fatalf("the server got traceparent %s, not that of a client span (%v)", tp, sent)
		}
	}
}
