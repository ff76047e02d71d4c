package eventstore

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A server without room for the stream (its or the account's storage
// limit) refuses to create it: a refusal of the options, as before a full
// store was classified unavailable for appends, not ErrUnavailable, which
// start-up would try again until NATS_CONNECT_TIMEOUT. An append to a full
// store stays unavailable.
func TestStreamRefusedForWantOfRoomIsNoOutage(t *testing.T) {
	for _, code := range []jetstream.ErrorCode{codeInsufficientResources, codeMemoryResourcesExceeded, codeStorageResourcesExceeded, codeStreamStoreFailed} {
		err := &jetstream.APIError{Code: 503, ErrorCode: code, Description: "insufficient resources"}
		if got := refused("create stream ORDERS", err); errors.Is(got, ErrUnavailable) || !errors.Is(got, ErrInvalidOption) {
			t.Errorf("stream refused with %d: %v, want ErrInvalidOption, not ErrUnavailable", code, got)
		}
		if got := classify("append", err); !errors.Is(got, ErrUnavailable) {
			t.Errorf("append refused with %d: %v, want ErrUnavailable", code, got)
		}
	}
}
