package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrEventNotFound reports that no event is stored at a position (never
// written, or not an order event).
var ErrEventNotFound = errors.New("eventstore: no event at that position")

// Get returns the event at one log position. A direct get, which any
// replica may answer, is tried first; a position it does not find is asked
// of the stream leader before Get concludes there is none, so a lagging
// replica never makes an appended event look missing. It returns
// ErrEventNotFound when there is none and ErrUnavailable when JetStream
// cannot be reached.
func (s *Store) Get(ctx context.Context, position uint64) (Recorded, error) {
	if position == 0 { // the server refuses it as an empty request
		return Recorded{}, fmt.Errorf("%w: %d", ErrEventNotFound, position)
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	raw, err := s.stream.GetMsg(ctx, position)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		var found bool
		raw, found, err = s.leaderGet(ctx, msgGetRequest{Seq: position})
		if err == nil && !found {
			return Recorded{}, fmt.Errorf("%w: %d", ErrEventNotFound, position)
		}
	}
	if err != nil {
		return Recorded{}, classify("get", err)
	}
	rec, err := DecodeRawMsg(raw, s.cfg.prefix)
	if err != nil {
		return Recorded{}, fmt.Errorf("%w: %d: %v", ErrEventNotFound, position, err)
	}
	return rec, nil
}
