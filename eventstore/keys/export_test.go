package keys

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// AfterFirstSecureDelete makes s run f once, right after its next secure
// delete of a revision: what another process does while an erase runs.
func (s *Store) AfterFirstSecureDelete(f func()) {
	s.stream = &afterSecureDelete{Stream: s.stream, after: f}
}

type afterSecureDelete struct {
	jetstream.Stream
	after func()
}

func (h *afterSecureDelete) SecureDeleteMsg(ctx context.Context, seq uint64) error {
	err := h.Stream.SecureDeleteMsg(ctx, seq)
	if f := h.after; f != nil {
		h.after = nil
		f()
	}
	return err
}
