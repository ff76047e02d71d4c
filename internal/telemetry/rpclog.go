package telemetry

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// RPCLog is a gRPC stats handler that logs one line per RPC, unary or
// streaming, when it ends: method, code and duration_ms (milliseconds, a
// number a person and a log query both read). It never logs request or
// response bodies, which hold personal data.
//
// Why a stats handler rather than an interceptor: grpc-go refuses some
// calls before any interceptor runs (a request over the server's receive
// limit, one that cannot be decompressed), and an interceptor never
// learns of them. The handler sees every call of a method the server
// has; a call of a method it does not have is answered UNIMPLEMENTED by
// grpc-go without telling any stats handler, unless the server has an
// unknown-service handler (ordersd has). Such a method name is the
// client's: the line keeps at most its first maxLoggedMethod bytes.
type RPCLog struct {
	log *slog.Logger
}

// NewRPCLog returns the handler writing to log.
func NewRPCLog(log *slog.Logger) *RPCLog { return &RPCLog{log: log} }

type rpcLogKey struct{}

// maxLoggedMethod bounds the method a line names: a client may send any
// name, up to the server's metadata limit.
const maxLoggedMethod = 256

// TagRPC implements stats.Handler: it keeps the method for the line.
func (l *RPCLog) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	m := info.FullMethodName
	if len(m) > maxLoggedMethod {
		m = m[:maxLoggedMethod] + "…"
	}
	return context.WithValue(ctx, rpcLogKey{}, m)
}

// HandleRPC implements stats.Handler: it logs a call when it ends.
func (l *RPCLog) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok {
		return
	}
	method, _ := ctx.Value(rpcLogKey{}).(string)
	logRPC(ctx, l.log, method, end.BeginTime, end.EndTime, end.Error)
}

// TagConn implements stats.Handler.
func (*RPCLog) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn implements stats.Handler.
func (*RPCLog) HandleConn(context.Context, stats.ConnStats) {}

func logRPC(ctx context.Context, log *slog.Logger, method string, start, end time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch {
	case code == codes.Internal || code == codes.Unknown || code == codes.DataLoss:
		level = slog.LevelError
	case code == codes.OK && method == healthpb.Health_Check_FullMethodName:
		// A probe's answer, every few seconds from each prober: at
		// info it would be most of an idle node's log. A check that
		// fails is logged at info as any call.
		level = slog.LevelDebug
	}
	h := log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	// The record is built here rather than by log.LogAttrs, which would
	// walk the stack for a source position the line does not show.
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
