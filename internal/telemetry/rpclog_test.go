package telemetry_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/telemetry"
	"google.golang.org/grpc/stats"
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
