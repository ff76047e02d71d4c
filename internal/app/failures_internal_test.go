package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// A failure reported before the stop is returned even though the stop
// has come as well: ordersd then exits non-zero, for its supervisor to
// restart it, rather than 0 as for a stop alone. Before, Run's select
// picked either, at random.
func TestFailureBeforeTheStopIsReturned(t *testing.T) {
	broken := errors.New("the projection runner stopped")
	for range 100 {
		f := newFailures(slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx, cancel := context.WithCancel(t.Context())
		f.report(broken)
		cancel()
		if err := f.wait(ctx); !errors.Is(err, broken) {
			t.Fatalf("a failure and a stop both pending: %v, want the failure", err)
		}
	}
	f := newFailures(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := f.wait(ctx); err != nil {
		t.Fatalf("a stop alone: %v, want nil", err)
	}
}
