package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// BenchmarkUnaryLogger is the per-RPC log line as ordersd writes it (JSON,
// readable durations, trace ids), to io.Discard: the cost of the line
// itself, not of the file it goes to. "off" is a level that drops it.
func BenchmarkUnaryLogger(b *testing.B) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	info := &grpc.UnaryServerInfo{FullMethod: "/orders.v1.OrderCommandService/CreateOrder"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, c := range []struct {
		name  string
		level slog.Level
		ctx   context.Context
	}{
		{"info", slog.LevelInfo, context.Background()},
		{"info traced", slog.LevelInfo, trace.ContextWithSpanContext(context.Background(), sc)},
		{"off", slog.LevelWarn, context.Background()},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: c.level, ReplaceAttr: telemetry.ReadableDurations})
			interceptor := telemetry.UnaryLogger(slog.New(telemetry.NewLogHandler(h)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := interceptor(c.ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
