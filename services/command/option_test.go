package command_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/pii"
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

// testMaster is the master key the keyed services' keyrings wrap with:
// the same on every call, so that a second keyring on the same keys reads
// what the first sealed.
func testMaster(t *testing.T) *pii.MasterKey {
	t.Helper()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{9}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return master
}

// newKeyedService is a service on store that seals personal data, so that
// ForgetCustomer works.
func newKeyedService(t *testing.T, store command.Store) *command.Service {
	t.Helper()
	svc, err := command.New(store, command.WithKeyring(pii.NewKeyring(pii.NewMemStore(), testMaster(t))))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}
