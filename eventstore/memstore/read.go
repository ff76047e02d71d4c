package memstore

import (
	"context"
	"fmt"
	"iter"

	"github.com/orderstream/orderstream/eventstore"
)

// readPage is how many events a Read or Follow copies under the lock at a
// time, so that a long read does not hold up appends.
const readPage = 1000

// Load returns all events of an order, oldest first, or an empty slice when
// the order has none. It is LoadAfter(ctx, orderID, 0).
func (s *Store) Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	return s.LoadAfter(ctx, orderID, 0)
}

// LoadLatest is Load: the store has no replicas, so every read is as
// current as the JetStream store's confirmed one.
func (s *Store) LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error) {
	return s.LoadAfter(ctx, orderID, 0)
}

// LoadLatestAfter is LoadAfter, for the same reason LoadLatest is Load.
func (s *Store) LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error) {
	return s.LoadAfter(ctx, orderID, afterPosition)
}

// LoadAfter returns the order's events with Position > afterPosition, oldest
// first, or an empty slice when there are none. Errors: ErrInvalidOrderID,
// and the ctx error when ctx has ended.
func (s *Store) LoadAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error) {
	if err := eventstore.ValidOrderID(orderID); err != nil {
		return nil, err
	}
	if err := ctxErr(ctx, "load order "+orderID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := []eventstore.Recorded{}
	for _, p := range s.orders[orderID] {
		if p > afterPosition {
			recs = append(recs, s.at(p))
		}
	}
	return recs, nil
}

// at returns a copy of the event at position p, which must exist; s.mu is
// held.
func (s *Store) at(p uint64) eventstore.Recorded {
	r := s.log[p-1]
	r.Data = clone(r.Data)
	return r
}

// Get returns the event at one log position, or an error wrapping
// eventstore.ErrEventNotFound when there is none.
func (s *Store) Get(ctx context.Context, position uint64) (eventstore.Recorded, error) {
	if err := ctxErr(ctx, "get"); err != nil {
		return eventstore.Recorded{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if position == 0 || position > uint64(len(s.log)) {
		return eventstore.Recorded{}, fmt.Errorf("%w: %d", eventstore.ErrEventNotFound, position)
	}
	return s.at(position), nil
}

// Head returns the position of the last event, 0 when the store is empty.
func (s *Store) Head(ctx context.Context) (uint64, error) {
	if err := ctxErr(ctx, "head"); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.log)), nil
}

// page returns copies of the events from position from to position to at
// most, at most readPage of them, and a channel closed by the next append.
func (s *Store) page(from, to uint64) ([]eventstore.Recorded, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	to = min(to, uint64(len(s.log)), from+readPage-1)
	var recs []eventstore.Recorded
	for p := from; p <= to; p++ {
		recs = append(recs, s.at(p))
	}
	return recs, s.appended
}

// Read iterates over the log from position from (0 and 1 both mean the
// beginning) up to the head as of the call, in order, and then ends, as
// eventstore.Store.Read does. When ctx ends before the head is reached it
// yields one (Recorded{}, err) with the ctx error (wrapping ErrUnavailable
// for a deadline) and ends. Stopping the loop early is fine.
func (s *Store) Read(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error] {
	return func(yield func(eventstore.Recorded, error) bool) {
		head, err := s.Head(ctx)
		if err != nil {
			yield(eventstore.Recorded{}, err)
			return
		}
		for next := max(from, 1); next <= head; {
			recs, _ := s.page(next, head)
			for _, r := range recs {
				if err := ctxErr(ctx, fmt.Sprintf("read from position %d", next)); err != nil {
					yield(eventstore.Recorded{}, err)
					return
				}
				if !yield(r, nil) {
					return
				}
				next = r.Position + 1
			}
		}
	}
}

// Follow iterates over the log from position from (0 and 1 both mean the
// beginning), in order, and then keeps delivering events as they are
// appended, until ctx is done, as eventstore.Store.Follow does. When ctx is
// done the iteration ends without yielding an error.
func (s *Store) Follow(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error] {
	return func(yield func(eventstore.Recorded, error) bool) {
		next := max(from, 1)
		for {
			recs, appended := s.page(next, next+readPage-1)
			for _, r := range recs {
				if ctx.Err() != nil || !yield(r, nil) {
					return
				}
				next = r.Position + 1
			}
			if len(recs) > 0 {
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-appended:
			}
		}
	}
}
