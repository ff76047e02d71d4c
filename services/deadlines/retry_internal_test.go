package deadlines

import (
	"testing"
	"time"
)

// A firing that could not be enforced is tried again a second later at
// first, then at growing intervals up to a minute: a cancel the command
// side keeps refusing (a token without the clerk role) was tried, and
// warned of, every second for each such order, for ever.
func TestFailedEnforcementIsTriedLessAndLessOften(t *testing.T) {
	for _, n := range []uint64{0, 1} {
		if d := retryWait(n); d <= 0 || d > time.Second {
			t.Errorf("after delivery %d: waits %v, want at most a second", n, d)
		}
	}
	for _, n := range []uint64{8, 100, 1 << 40} {
		if d := retryWait(n); d < 30*time.Second || d > time.Minute {
			t.Errorf("after delivery %d: waits %v, want between 30 s and a minute", n, d)
		}
	}
	for n := uint64(1); n < 6; n++ {
		// Equal jitter: the shortest wait two deliveries on (half of
		// four times the bound) is the longest one now.
		if retryWait(n+2) < retryWait(n) {
			t.Errorf("the wait after delivery %d is shorter than that after %d", n+2, n)
		}
	}
}
