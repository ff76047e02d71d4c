package memstore

import (
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/orderstream/orderstream/eventstore"
)

// ReadBatches reads the log from position from (0 and 1 both mean the
// beginning) in batches, in order, up to the head as of the call (or the
// UpTo position), and then ends, as eventstore.Store.ReadBatches does, with
// the same options. Every entry is an event: the store holds nothing else.
// On error it yields one (Batch{}, err) and ends: ErrInvalidOption or
// ErrInvalidOrderID for an option, the ctx error when ctx ends before the
// read does (wrapping ErrUnavailable for a deadline). Stopping the loop
// early is fine.
func (s *Store) ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		cfg, err := eventstore.NewReadConfig(from, false, opts...)
		if err != nil {
			yield(eventstore.Batch{}, err)
			return
		}
		if !cfg.Bounded {
			if cfg.UpTo, err = s.Head(ctx); err != nil {
				yield(eventstore.Batch{}, err)
				return
			}
		}
		next := s.start(from, cfg)
		var b eventstore.Batch
		for next <= cfg.UpTo {
			if err := ctxErr(ctx, fmt.Sprintf("read from position %d", next)); err != nil {
				yield(eventstore.Batch{}, err)
				return
			}
			b, next = s.batch(b.Entries[:0], next, cfg.UpTo, cfg)
			if len(b.Entries) == 0 || !yield(b, nil) {
				return
			}
		}
	}
}

// FollowBatches reads the log from position from (0 and 1 both mean the
// beginning) in batches, in order, and then keeps delivering events as
// they are appended, until ctx is done, as eventstore.Store.FollowBatches
// does, with the same options: when there is nothing to deliver at the
// start, the first batch is empty with Pending 0. A batch holds what has
// been appended, up to BatchSize entries: everything appended has arrived.
// When ctx is done the iteration ends without an error; an invalid option
// is yielded as an error.
func (s *Store) FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error] {
	return func(yield func(eventstore.Batch, error) bool) {
		cfg, err := eventstore.NewReadConfig(from, true, opts...)
		if err != nil {
			yield(eventstore.Batch{}, err)
			return
		}
		next := s.start(from, cfg)
		var b eventstore.Batch
		reached := cfg.StartTime.IsZero()
		for first := true; ctx.Err() == nil; first = false {
			s.mu.Lock()
			appended := s.appended
			s.mu.Unlock()
			b, next = s.batch(b.Entries[:0], next, ^uint64(0), cfg)
			if !reached {
				// Appended after the follow started at a time it had
				// not reached yet, but stored before it: as the
				// JetStream store, events are taken from the first
				// stored at or after the time on.
				i := slices.IndexFunc(b.Entries, func(e eventstore.Entry) bool { return !e.Time.Before(cfg.StartTime) })
				if reached = i >= 0; !reached {
					i = len(b.Entries)
				}
				b.Entries = b.Entries[i:]
			}
			if (len(b.Entries) > 0 || first) && !yield(b, nil) {
				return
			}
			if len(b.Entries) > 0 {
				continue
			}
			select {
			case <-ctx.Done():
			case <-appended:
			}
		}
	}
}

// start returns the first position a read with cfg from from looks at.
func (s *Store) start(from uint64, cfg eventstore.ReadConfig) uint64 {
	next := max(from, 1)
	if cfg.StartTime.IsZero() {
		return next
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.log, func(r eventstore.Recorded) bool { return !r.Time.Before(cfg.StartTime) })
	if i < 0 {
		return uint64(len(s.log)) + 1
	}
	return max(uint64(i)+1, next)
}

// batch appends to dst the events selected by cfg from position next to
// position upTo, at most cfg.BatchSize of them, and returns them as a
// batch with the number of selected events after them, and the position
// to go on from.
func (s *Store) batch(dst []eventstore.Entry, next, upTo uint64, cfg eventstore.ReadConfig) (eventstore.Batch, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	head := uint64(len(s.log))
	selected := func(p uint64) bool {
		return len(cfg.Orders) == 0 || slices.Contains(cfg.Orders, s.log[p-1].OrderID)
	}
	for ; next <= min(upTo, head) && len(dst) < cfg.BatchSize; next++ {
		if selected(next) {
			dst = append(dst, eventstore.Entry{Recorded: s.at(next)})
		}
	}
	b := eventstore.Batch{Entries: dst}
	for p := next; p <= head; p++ {
		if selected(p) {
			b.Pending++
		}
	}
	return b, next
}
