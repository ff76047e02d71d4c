// Package otlptest is a fake OTLP/gRPC trace receiver on a loopback port,
// for tests that prove spans leave the process through the real exporter.
package otlptest

import (
	"context"
	"net"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// Collector records the spans it is sent.
type Collector struct {
	collectorpb.UnimplementedTraceServiceServer

	mu    sync.Mutex
	spans []*tracepb.Span
}

// Start runs a Collector on 127.0.0.1:0 until tb ends and returns it with
// the endpoint to put in OTEL_EXPORTER_OTLP_ENDPOINT ("http://host:port";
// the receiver speaks plaintext, so set OTEL_EXPORTER_OTLP_INSECURE=true
// too). It fails tb when it cannot listen.
func Start(tb testing.TB) (*Collector, string) {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &Collector{}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, c)
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	return c, "http://" + lis.Addr().String()
}

// Export records the spans in req.
func (c *Collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// Names returns the names of the spans received so far, in arrival order.
func (c *Collector) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.spans))
	for i, s := range c.spans {
		names[i] = s.GetName()
	}
	return names
}

// Spans returns the spans received so far, in arrival order.
func (c *Collector) Spans() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}
