package telemetry_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/testlog"
	"go.opentelemetry.io/otel"
)

// OpenTelemetry's own errors (a failed trace export, reported through
// otel.Handle) reach the process's JSON log at WARN with WithErrorLog, not
// the standard library's log as a plain-text line without a level.
func TestOpenTelemetryErrorsGoToTheJSONLog(t *testing.T) {
	var buf testlog.Buffer
	tel, err := telemetry.Setup(t.Context(), "ordersd", telemetry.WithErrorLog(slog.New(slog.NewJSONHandler(&buf, nil))),
		telemetry.WithEnv(func(string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(t.Context()) })
	otel.Handle(errors.New("traces export: collector unreachable"))
	var line struct{ Level, Err string }
	if err := json.Unmarshal([]byte(buf.String()), &line); err != nil || line.Level != "WARN" || line.Err == "" {
		t.Fatalf("the log got %q (%v); want one JSON line at WARN carrying the error", buf.String(), err)
	}
	if _, err := telemetry.Setup(t.Context(), "ordersd", telemetry.WithErrorLog(nil)); !errors.Is(err, telemetry.ErrInvalidOption) {
		t.Fatalf("WithErrorLog(nil): %v, want ErrInvalidOption", err)
	}
}
