package audit_test

import (
	"errors"
	"testing"

	"github.com/orderstream/orderstream/services/audit"
)

// An option given a value it does not accept makes New fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	if s, err := audit.New(nil, nil, audit.WithKeyring(nil)); !errors.Is(err, audit.ErrInvalidOption) || s != nil {
		t.Errorf("New(WithKeyring(nil)) = %v, %v; want nil, ErrInvalidOption", s, err)
	}
}
