package command_test

import (
	"errors"
	"testing"
	"time"

	"github.com/orderstream/orderstream/services/command"
)

// newService returns a command service on store, failing the test when New
// refuses opts.
func newService(t testing.TB, store command.Store, opts ...command.Option) *command.Service {
	t.Helper()
	svc, err := command.New(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// An option given a value it does not accept makes New fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]command.Option{
		"zero attempts":      command.WithMaxAttempts(0),
		"negative attempts":  command.WithMaxAttempts(-1),
		"nil logger":         command.WithLogger(nil),
		"nil clock":          command.WithClock(nil),
		"negative histories": command.WithHistories(-1),
	} {
		if svc, err := command.New(nil, opt); !errors.Is(err, command.ErrInvalidOption) || svc != nil {
			t.Errorf("%s: New = %v, %v; want nil, ErrInvalidOption", name, svc, err)
		}
	}
	if _, err := command.New(nil, command.WithMaxAttempts(1), command.WithClock(time.Now)); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
