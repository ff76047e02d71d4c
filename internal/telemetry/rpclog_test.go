package telemetry_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/telemetry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// The RPC line carries its duration as milliseconds (a number), and any
// other duration logged through ReadableDurations as text, never as bare
// nanoseconds.
func TestLoggedDurationsAreReadable(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: telemetry.ReadableDurations}))
	l := telemetry.NewRPCLog(log)
	now := time.Now()
	l.HandleRPC(l.TagRPC(t.Context(), &stats.RPCTagInfo{FullMethodName: "/x.S/M"}), &stats.End{BeginTime: now, EndTime: now.Add(time.Millisecond)})
	log.Info("waited", "backoff", 1500*time.Millisecond)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var rpc, other map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rpc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &other); err != nil {
		t.Fatal(err)
	}
	if _, ok := rpc["duration_ms"].(float64); !ok {
		t.Fatalf("rpc line has no numeric duration_ms: %s", lines[0])
	}
	if _, ok := rpc["duration"]; ok {
		t.Fatalf("rpc line still has a nanosecond duration: %s", lines[0])
	}
	if other["backoff"] != "1.5s" {
		t.Fatalf("a logged duration reads %v, want \"1.5s\"", other["backoff"])
	}
}

// A method name is the client's to choose: the line keeps its first 256
// bytes.
func TestLoggedMethodIsBounded(t *testing.T) {
	var buf bytes.Buffer
	l := telemetry.NewRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	now := time.Now()
	long := "/x.S/" + strings.Repeat("m", 10000)
	l.HandleRPC(l.TagRPC(t.Context(), &stats.RPCTagInfo{FullMethodName: long}), &stats.End{BeginTime: now, EndTime: now})
	var line struct {
		Method string `json:"method"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if want := long[:256] + "…"; line.Method != want {
		t.Fatalf("logged method of %d bytes, want the first 256 and an ellipsis", len(line.Method))
	}
}

// A health check that succeeds, which probes make every few seconds, is
// logged at debug, not info, where it was most of an idle node's log; one
// that fails is logged at info as any call, and so is every other method.
func TestSucceededHealthChecksAreLoggedAtDebug(t *testing.T) {
	for _, tc := range []struct {
		method string
		err    error
		want   int // lines at info
	}{
		{"/grpc.health.v1.Health/Check", nil, 0},
		{"/grpc.health.v1.Health/Check", status.Error(codes.NotFound, "unknown service"), 1},
		{"/orders.v1.OrderQueryService/GetOrder", nil, 1},
	} {
		var buf bytes.Buffer
		l := telemetry.NewRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)))
		now := time.Now()
		l.HandleRPC(l.TagRPC(t.Context(), &stats.RPCTagInfo{FullMethodName: tc.method}), &stats.End{BeginTime: now, EndTime: now, Error: tc.err})
		if got := strings.Count(buf.String(), "\n"); got != tc.want {
			t.Errorf("%s (%v): %d line(s) at info, want %d: %s", tc.method, tc.err, got, tc.want, buf.String())
		}
		buf.Reset()
		l = telemetry.NewRPCLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
		l.HandleRPC(l.TagRPC(t.Context(), &stats.RPCTagInfo{FullMethodName: tc.method}), &stats.End{BeginTime: now, EndTime: now, Error: tc.err})
		if strings.Count(buf.String(), "\n") != 1 {
			t.Errorf("%s (%v) at debug: %q, want one line", tc.method, tc.err, buf.String())
		}
	}
}
