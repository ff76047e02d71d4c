// Package streamcfg checks the stream settings that the event store and the
// streams and buckets beside it take as options, so that each accepts the
// same values and says so the same way, and holds the one request they all
// make of a stream beyond nats.go's: a message get only its leader answers
// (LeaderGet).
package streamcfg

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxReplicas is the most replicas JetStream allows a stream.
const MaxReplicas = 5

// SetReplicas stores n in *dst when it is a replica count JetStream
// accepts (1..MaxReplicas), and otherwise returns an error wrapping
// invalid, the caller's ErrInvalidOption, naming WithReplicas.
func SetReplicas(dst *int, n int, invalid error) error {
	if n < 1 || n > MaxReplicas {
		return fmt.Errorf("%w: WithReplicas(%d): out of range 1..%d", invalid, n, MaxReplicas)
	}
	*dst = n
	return nil
}

// SetStorage stores st in *dst when it is file or memory storage, and
// otherwise returns an error wrapping invalid, naming WithStorage.
func SetStorage(dst *jetstream.StorageType, st jetstream.StorageType, invalid error) error {
	if st != jetstream.FileStorage && st != jetstream.MemoryStorage {
		return fmt.Errorf("%w: WithStorage(%v): unknown storage type", invalid, st)
	}
	*dst = st
	return nil
}
