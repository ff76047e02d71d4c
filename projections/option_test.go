package projections_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/projections"
)

// An option given a value it does not accept makes NewRunner fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]projections.Option{
		"zero batch":      projections.WithBatch(0, time.Millisecond),
		"negative batch":  projections.WithBatch(-1, time.Millisecond),
		"batch too large": projections.WithBatch(eventstore.MaxBatchSize+1, time.Millisecond),
		"negative wait":   projections.WithBatch(10, -time.Millisecond),
		"nil logger":      projections.WithLogger(nil),
		"nil feed":        projections.WithFeed(nil),
		"nil telemetry":   projections.WithTelemetry(nil, nil),
	} {
		if r, err := projections.NewRunner(nil, nil, opt); !errors.Is(err, projections.ErrInvalidOption) || r != nil {
			t.Errorf("%s: NewRunner = %v, %v; want nil, ErrInvalidOption", name, r, err)
		}
	}
	dir, err := projections.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	if _, err := projections.NewRunner(nil, dir, projections.WithBatch(1, time.Millisecond), projections.WithLogger(slog.Default())); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
