package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
)

// LoadLatest returns all events of an order, oldest first, as the stream
// leader has them when it answers: the history every acknowledged append
// is part of. It is Load, confirmed. The stream leader is asked for the
// order's last position with the non-direct message get, which only the
// leader answers, and then the events are read with the same fast direct
// gets as Load, which any replica may answer. When the replica's copy ends
// before that position, the missing events are read from the leader one by
// one. On a single replica, or when the replica was current, the cost is
// one extra round trip to the leader; an order without events costs only
// that one.
//
// Use it for every answer drawn from the history without an append to
// back it: rejecting a command because of the order's state, reporting the
// order's history to an auditor. Load is enough where an append with the
// loaded revision follows, since the append's expected revision catches a
// stale read.
//
// Errors: those of LoadAfter, and ErrUnavailable when the stream has no
// leader (an election is running) or it does not answer in time.
func (s *Store) LoadLatest(ctx context.Context, orderID string) ([]Recorded, error) {
	return s.LoadLatestAfter(ctx, orderID, 0)
}

// LoadLatestAfter is LoadLatest for the order's events with Position >
// afterPosition. A reader that already holds an order's history up to a
// position it knows asks for the rest with it. When afterPosition is the
// order's last event its cost does not grow with what the log holds
// between the order's events: the leader's answer shows that nothing
// follows, and nothing more is read. (A load from the start makes the
// server walk every message stored between the order's events.) An event
// written before versions were recorded has Version 0 here unless
// afterPosition is 0.
//
// Errors: those of LoadLatest.
func (s *Store) LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]Recorded, error) {
	if err := validateOrderID(orderID); err != nil {
		return nil, err
	}
	if err := s.connected(); err != nil {
		return nil, err
	}
	ep := s.epoch() // before anything is asked: see versionMark.epoch
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	subject := s.Subject(orderID)
	// What was acknowledged before the question is asked: an append
	// acknowledged while it is on its way may or may not be in the answer.
	seen, seenAt := s.versions.seen(orderID)
	lastMsg, found, err := s.leaderGet(ctx, msgGetRequest{LastFor: subject, NoHeaders: true})
	if err != nil {
		return nil, classify("confirm order "+orderID+" with the stream leader", err)
	}
	var leaderLast uint64
	if found {
		leaderLast = lastMsg.Sequence
	}
	if leaderLast < seen && s.mutable == nil {
		// A leader cut off from its peers keeps answering as leader
		// until it notices it lost its quorum (nats-server: up to 10 s),
		// and when the partition heals its answer can beat the new
		// leader's. Its log lacks what the new leader acknowledged
		// meanwhile: this process saw the order at a later position
		// before it asked, and the stream (immutable) never removes an
		// event. Seen longer ago than a leader takes to step down, the
		// log itself went back (a server restarted without its last
		// events): refused, every answer would be, for good.
		if time.Since(seenAt) < s.cfg.stepDown {
			return nil, fmt.Errorf("%w: confirm order %s: the stream leader that answered has it at %d, below %d acknowledged before (a former leader that has not stepped down yet)",
				ErrUnavailable, orderID, leaderLast, seen)
		}
		s.versions.forget(orderID)
	}
	if !found || lastMsg.Sequence <= afterPosition {
		return []Recorded{}, nil
	}
	last := lastMsg.Sequence
	recs, err := s.LoadAfter(ctx, orderID, afterPosition)
	if err != nil {
		return nil, err
	}
	return s.readOnFromLeader(ctx, orderID, recs, afterPosition, last, s.leaderGet, ep)
}

// messageGet is a message get from the stream leader (leaderGet).
type messageGet func(ctx context.Context, req msgGetRequest) (*jetstream.RawStreamMsg, bool, error)

// readOnFromLeader appends to recs, the order's events after afterPosition
// that a replica answered, the ones after them up to last, which the
// leader named as the order's last event: one by one, with get, from the
// leader. A leader that then lacks one is not the leader that named it:
// after a partition heals, a former leader can answer the next question
// before it learns it was replaced, and its log lacks what the new one
// acknowledged. On an immutable stream that is ErrUnavailable, to be
// retried, never a history that ends early; on a stream that allows
// deletes it is an event deleted since, and the history ends there.
// The history's last event counts as seen (versionCache.seen), as an
// append's acknowledgement does; ep is the connection's epoch when the
// load began.
func (s *Store) readOnFromLeader(ctx context.Context, orderID string, recs []Recorded, afterPosition, last uint64, get messageGet, ep uint64) ([]Recorded, error) {
	subject := s.Subject(orderID)
	have := afterPosition
	if n := len(recs); n > 0 {
		have = recs[n-1].Position
	}
	fetched, legacy := len(recs), false
	for have < last {
		raw, found, err := get(ctx, msgGetRequest{Seq: have + 1, NextFor: subject})
		if err != nil {
			return nil, classify(fmt.Sprintf("load order %s after position %d from the stream leader", orderID, have), err)
		}
		if !found {
			if s.mutable == nil {
				return nil, fmt.Errorf("%w: load order %s: the stream leader that answered has nothing after position %d, where its last event is at %d (a former leader that has not stepped down yet)",
					ErrUnavailable, orderID, have, last)
			}
			break // deleted since the leader named its last event
		}
		r, err := DecodeRawMsg(raw, s.cfg.prefix)
		if err != nil {
			return nil, classify("load order "+orderID, err)
		}
		if r.Version == 0 && afterPosition == 0 { // written before versions were recorded
			r.Version, legacy = uint64(len(recs))+1, true
		}
		recs = append(recs, r)
		have = r.Position
	}
	if n := len(recs); n > 0 {
		// The leader confirmed it, so it is as good as an append
		// acknowledged: a later answer without it comes from a former
		// leader. (A read from the start remembered what the replica
		// gave already; one after a position did not.)
		s.versions.remember(orderID, recs[n-1].Version, recs[n-1].Position, ep)
		if !legacy { // a renumbered event's get by position cannot be checked
			s.versions.extendTrail(orderID, recs[fetched:])
		}
	}
	return recs, nil
}

// msgGetRequest is a leader's message get (streamcfg.LeaderGet).
type msgGetRequest = streamcfg.MsgGetRequest

// leaderGet runs one message get that only the stream leader answers
// (streamcfg.LeaderGet): it reads the state every acknowledged append has
// reached. found is false when the stream has no such message; headers
// that do not decode are ErrMalformedEvent.
func (s *Store) leaderGet(ctx context.Context, req msgGetRequest) (*jetstream.RawStreamMsg, bool, error) {
	raw, found, err := streamcfg.LeaderGet(ctx, s.nc, s.msgGetSub, req, s.js.Options().DefaultTimeout)
	if errors.Is(err, streamcfg.ErrBadHeaders) {
		return nil, false, fmt.Errorf("%w: %w", ErrMalformedEvent, err)
	}
	return raw, found, err
}
