package eventstore

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// Remember makes s remember that it saw orderID's event at version and
// position, as an append or a load would: for tests that need a position
// no single server can produce, such as one a newer stream leader
// acknowledged.
func Remember(s *Store, orderID string, version, position uint64) {
	s.versions.remember(orderID, version, position, s.epoch())
}

// Seen returns the highest position of orderID's events that s remembers
// seeing acknowledged or read: what LoadLatest holds a leader's answer to.
func Seen(s *Store, orderID string) uint64 {
	seen, _ := s.versions.seen(orderID)
	return seen
}

// ReadOnFromLeader is readOnFromLeader, its message gets answered by the
// stream leader, or, when former is set, by a former leader that lacks
// every event (as one that has not stepped down after a partition).
func ReadOnFromLeader(ctx context.Context, s *Store, orderID string, recs []Recorded, afterPosition, last uint64, former bool) ([]Recorded, error) {
	get := messageGet(s.leaderGet)
	if former {
		get = func(context.Context, msgGetRequest) (*jetstream.RawStreamMsg, bool, error) { return nil, false, nil }
	}
	return s.readOnFromLeader(ctx, orderID, recs, afterPosition, last, get, s.epoch())
}

// SetTrail makes s take positions for those of orderID's first events,
// right or wrong.
func SetTrail(s *Store, orderID string, positions []uint64) {
	s.versions.mu.Lock()
	defer s.versions.mu.Unlock()
	e, _ := s.versions.get(orderID)
	e.trail = slices.Clone(positions)
	s.versions.put(orderID, e)
}

// Trail returns the positions s holds for orderID's first events.
func Trail(s *Store, orderID string) []uint64 {
	s.versions.mu.Lock()
	defer s.versions.mu.Unlock()
	e, _ := s.versions.get(orderID)
	return slices.Clone(e.trail)
}

// MaxVersionsKept bounds the version cache (maxVersionsKept).
const MaxVersionsKept = maxVersionsKept
