package streamcfg

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

var errInvalid = errors.New("invalid option")

func TestSetReplicas(t *testing.T) {
	for n := -1; n <= MaxReplicas+1; n++ {
		got := 7
		err := SetReplicas(&got, n, errInvalid)
		if ok := n >= 1 && n <= MaxReplicas; ok {
			if err != nil || got != n {
				t.Errorf("SetReplicas(%d) = %v, stored %d", n, err, got)
			}
		} else if !errors.Is(err, errInvalid) || got != 7 {
			t.Errorf("SetReplicas(%d) = %v, stored %d; want the caller's sentinel, nothing stored", n, err, got)
		}
	}
}

func TestSetStorage(t *testing.T) {
	for st, ok := range map[jetstream.StorageType]bool{jetstream.FileStorage: true, jetstream.MemoryStorage: true, jetstream.StorageType(7): false} {
		got := jetstream.StorageType(9)
		err := SetStorage(&got, st, errInvalid)
		if ok && (err != nil || got != st) || !ok && (!errors.Is(err, errInvalid) || got != 9) {
			t.Errorf("SetStorage(%v) = %v, stored %v", st, err, got)
		}
	}
}
