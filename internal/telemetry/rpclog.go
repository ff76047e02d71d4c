package telemetry

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// UnaryLogger logs one line per unary RPC: method, code and duration_ms
// (milliseconds, a number a person and a log query both read). It never
// logs request or response bodies, which hold personal data.
func UnaryLogger(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		res, err := handler(ctx, req)
		logRPC(ctx, log, info.FullMethod, start, err)
		return res, err
	}
}

// StreamLogger is UnaryLogger for streaming RPCs; the line is written when
// the stream ends.
func StreamLogger(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logRPC(ss.Context(), log, info.FullMethod, start, err)
		return err
	}
}

func logRPC(ctx context.Context, log *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelInfo
	if code == codes.Internal || code == codes.Unknown || code == codes.DataLoss {
		level = slog.LevelError
	}
	h := log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	// The record is built here rather than by log.LogAttrs, which would
	// walk the stack for a source position the line does not show; the end
	// time is read once, for both the line's time and its duration.
	end := time.Now()
	r := slog.NewRecord(end, level, "rpc", 0)
	r.AddAttrs(slog.String("method", method), slog.String("code", code.String()), Millis("duration_ms", end.Sub(start)))
	_ = h.Handle(ctx, r) // as slog does: a log line that cannot be written has nowhere to be reported
}

// Millis is d as a number of milliseconds with microsecond precision, the
// form durations take in ordersd's logs.
func Millis(key string, d time.Duration) slog.Attr {
	return slog.Float64(key, float64(d.Microseconds())/1000)
}

// ReadableDurations is a slog.HandlerOptions.ReplaceAttr that writes any
// time.Duration logged as text ("32ms", "1.5s") rather than the JSON
// handler's bare nanoseconds. It also hands the handler the record's level
// as a string: with any ReplaceAttr set, the JSON handler would otherwise
// encode the level through encoding/json (slog.Level is a json.Marshaler),
// the most expensive part of a log line.
func ReadableDurations(groups []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindAny:
		if l, ok := a.Value.Any().(slog.Level); ok && len(groups) == 0 && a.Key == slog.LevelKey {
			a.Value = slog.StringValue(l.String())
		}
	}
	return a
}
