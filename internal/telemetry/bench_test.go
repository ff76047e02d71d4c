package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/telemetry"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// BenchmarkRPCLog is the per-RPC log line as ordersd writes it (JSON,
// readable durations, trace ids), to io.Discard: the cost of the line
// itself and of tagging the call, not of the file it goes to. "off" is a
// level that drops it.
func BenchmarkRPCLog(b *testing.B) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5}, TraceFlags: trace.FlagsSampled})
	info := &stats.RPCTagInfo{FullMethodName: "/orders.v1.OrderCommandService/CreateOrder"}
	now := time.Now()
	end := &stats.End{BeginTime: now, EndTime: now.Add(time.Millisecond)}
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
			l := telemetry.NewRPCLog(slog.New(telemetry.NewLogHandler(h)))
			b.ReportAllocs()
			for b.Loop() {
				l.HandleRPC(l.TagRPC(c.ctx, info), end)
			}
		})
	}
}

// BenchmarkRPCLogToFile is the per-RPC log line written to a file from
// every processor at once, as ordersd's handlers write theirs to stderr:
// a write per line ("each line"), or batched by a LogWriter ("batched").
func BenchmarkRPCLogToFile(b *testing.B) {
	info := &stats.RPCTagInfo{FullMethodName: "/orders.v1.OrderQueryService/GetOrder"}
	now := time.Now()
	end := &stats.End{BeginTime: now, EndTime: now.Add(time.Millisecond)}
	opts := &slog.HandlerOptions{ReplaceAttr: telemetry.ReadableDurations}
	for _, batched := range []bool{false, true} {
		name := "each line"
		if batched {
			name = "batched"
		}
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = f.Close() })
			var h slog.Handler = slog.NewJSONHandler(f, opts)
			if batched {
				w := telemetry.NewLogWriter(f, 100*time.Millisecond)
				b.Cleanup(func() { _ = w.Close() })
				h = telemetry.FlushOn(slog.NewJSONHandler(w, opts), w, slog.LevelWarn)
			}
			l := telemetry.NewRPCLog(slog.New(telemetry.NewLogHandler(h)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.HandleRPC(l.TagRPC(context.Background(), info), end)
				}
			})
		})
	}
}
