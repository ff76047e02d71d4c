package keys_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/keys"
)

// An option given a value it does not accept makes Open fail with
// ErrInvalidOption before anything is created.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]keys.Option{
		"empty bucket":    keys.WithBucket(""),
		"dotted bucket":   keys.WithBucket("A.B"),
		"zero replicas":   keys.WithReplicas(0),
		"six replicas":    keys.WithReplicas(6),
		"unknown storage": keys.WithStorage(jetstream.StorageType(7)),
	} {
		if s, err := keys.Open(t.Context(), nil, opt); !errors.Is(err, keys.ErrInvalidOption) || s != nil {
			t.Errorf("%s: Open = %v, %v; want nil, ErrInvalidOption", name, s, err)
		}
	}
}
