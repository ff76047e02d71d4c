package schedule_test

import (
	"errors"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore/schedule"
)

// An option given a value it does not accept makes New fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]schedule.Option{
		"zero replicas":   schedule.WithReplicas(0),
		"six replicas":    schedule.WithReplicas(6),
		"short fired TTL": schedule.WithFiredTTL(time.Millisecond),
	} {
		if s, err := schedule.New(nil, "TIMERS", "timers", opt); !errors.Is(err, schedule.ErrInvalidOption) || s != nil {
			t.Errorf("%s: New = %v, %v; want nil, ErrInvalidOption", name, s, err)
		}
	}
}
