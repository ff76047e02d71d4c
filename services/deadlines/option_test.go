package deadlines_test

import (
	"errors"
	"testing"
	"time"

	"github.com/orderstream/orderstream/services/deadlines"
)

// An option given a value it does not accept makes New fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]deadlines.Option{
		"zero payment timeout":  deadlines.WithTimeouts(0, time.Hour),
		"negative shipping SLA": deadlines.WithTimeouts(time.Hour, -time.Second),
		// Past 2262 the server's timers wrap into the past and fire at once.
		"payment timeout past the bound": deadlines.WithTimeouts(deadlines.MaxTimeout+time.Second, time.Hour),
		"shipping SLA past the bound":    deadlines.WithTimeouts(time.Hour, 2_562_047*time.Hour),
		"nil logger":                     deadlines.WithLogger(nil),
		"nil meter":                      deadlines.WithMeter(nil),
		"zero handle timeout":            deadlines.WithHandleTimeout(0),
	} {
		if m, err := deadlines.New(t.Context(), nil, nil, nil, opt); !errors.Is(err, deadlines.ErrInvalidOption) || m != nil {
			t.Errorf("%s: New = %v, %v; want nil, ErrInvalidOption", name, m, err)
		}
	}
}
