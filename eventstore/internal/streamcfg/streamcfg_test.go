package streamcfg

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestReplicas(t *testing.T) {
	for n := -1; n <= MaxReplicas+1; n++ {
		if got, want := Replicas(n) == nil, n >= 1 && n <= MaxReplicas; got != want {
			t.Errorf("Replicas(%d) accepted = %v, want %v", n, got, want)
		}
	}
}

func TestStorage(t *testing.T) {
	for st, want := range map[jetstream.StorageType]bool{jetstream.FileStorage: true, jetstream.MemoryStorage: true, jetstream.StorageType(7): false} {
		if got := Storage(st) == nil; got != want {
			t.Errorf("Storage(%v) accepted = %v, want %v", st, got, want)
		}
	}
}
