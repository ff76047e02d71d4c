package loadgen

import (
	"math"
	"testing"
	"time"
)

// A rate past one request a nanosecond (its interval truncated to 0) made
// a run that never reached its end, and NaN and +Inf passed the check: each
// is refused before the run.
func TestRatesARunCannotScheduleAreRefused(t *testing.T) {
	for _, rate := range []float64{2e9, 1e10, math.Inf(1), math.NaN(), 0, -1} {
		if _, err := Run(t.Context(), "peak", instant{}, Config{Rate: rate, Concurrency: 4, Duration: 50 * time.Millisecond, Mix: Mix{Get: 1}, Drop: true}); err == nil {
			t.Errorf("Run at %v/s: no error", rate)
		}
	}
	if _, err := Run(t.Context(), "peak", instant{}, Config{Rate: 1000, Concurrency: 4, Duration: 10 * time.Millisecond, Mix: Mix{Get: 1}}); err != nil {
		t.Errorf("Run at 1000/s: %v", err)
	}
}
