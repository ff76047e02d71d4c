// Package streamcfg checks the stream settings that the event store and the
// buckets beside it take as options, so that each accepts the same values.
package streamcfg

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// MaxReplicas is the most replicas JetStream allows a stream.
const MaxReplicas = 5

// Replicas returns an error unless n is a replica count JetStream accepts.
func Replicas(n int) error {
	if n < 1 || n > MaxReplicas {
		return fmt.Errorf("replicas %d out of range 1..%d", n, MaxReplicas)
	}
	return nil
}

// Storage returns an error unless st is file or memory storage.
func Storage(st jetstream.StorageType) error {
	if st != jetstream.FileStorage && st != jetstream.MemoryStorage {
		return fmt.Errorf("unknown storage type %v", st)
	}
	return nil
}
