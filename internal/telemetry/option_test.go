package telemetry_test

import (
	"errors"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry"
)

// An option given a value it does not accept makes Setup fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]telemetry.Option{
		"nil span processor": telemetry.WithSpanProcessor(nil),
		"nil env":            telemetry.WithEnv(nil),
	} {
		if tel, err := telemetry.Setup(t.Context(), "ordersd", opt); !errors.Is(err, telemetry.ErrInvalidOption) || tel != nil {
			t.Errorf("%s: Setup = %v, %v; want nil, ErrInvalidOption", name, tel, err)
		}
	}
}
