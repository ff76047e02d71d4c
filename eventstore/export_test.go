package eventstore

// Remember makes s remember that it saw orderID's event at version and
// position, as an append or a load would: for tests that need a position
// no single server can produce, such as one a newer stream leader
// acknowledged.
func Remember(s *Store, orderID string, version, position uint64) {
	s.versions.remember(orderID, version, position)
}

// Seen returns the highest position of orderID's events that s remembers
// seeing acknowledged or read: what LoadLatest holds a leader's answer to.
func Seen(s *Store, orderID string) uint64 { return s.versions.seen(orderID) }
