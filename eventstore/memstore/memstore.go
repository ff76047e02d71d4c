// Package memstore is an event store held in memory, with the semantics of
// the JetStream store (eventstore.Store) as the conformance suite in
// eventstore/estest states them: optimistic concurrency on an order's
// revision (ErrConflict), request ids that answer a retry with the first
// result (Duplicate) and refuse a request id reused for another order
// (*eventstore.RequestReusedError), atomic appends of several events, one
// global log with positions from 1, per-order versions from 1, metadata
// stored and returned exactly as the JetStream store keeps it, the same
// limits and sentinel errors, and reads (Load, LoadAfter, LoadLatest, Get,
// Head, Read, Follow) that behave alike.
//
// It is a test and embedding aid, never a production option: nothing is
// durable, everything is lost with the process, and the whole log is held
// in memory. It has no replicas, so every read is current, and request ids
// are remembered for the life of the store, as if the JetStream store's
// duplicate window never passed.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// maxPayload is the largest event accepted, headers included: nats-server's
// default max payload, which bounds the JetStream store's events.
const maxPayload = 1 << 20

// headerReserve is room for the headers the JetStream store adds to an
// event after encoding it (message id, expected sequence, batch headers),
// so that an event is refused here when it would be refused there.
const headerReserve = 160

var _ eventstore.Log = (*Store)(nil)

// Store is an event store in memory. It is safe for concurrent use. The
// zero value is not usable; call New.
type Store struct {
	mu       sync.Mutex
	log      []eventstore.Recorded // position p is log[p-1]
	orders   map[string][]uint64   // order id → positions of its events
	requests map[string]request    // request id → where its events are
	subs     map[string]*subscription
	appended chan struct{} // closed (and replaced) by every append
	now      func() time.Time
}

// request says where the events of one request id are.
type request struct {
	orderID     string
	first, last uint64 // positions
	version     uint64 // the order's revision after the request
}

// New returns an empty store.
func New() *Store {
	return &Store{
		orders:   make(map[string][]uint64),
		requests: make(map[string]request),
		appended: make(chan struct{}),
		now:      time.Now,
	}
}

// StreamName returns eventstore.DefaultStreamName: the store has no stream,
// but names the one the JetStream store would use.
func (s *Store) StreamName() string { return eventstore.DefaultStreamName }

// SubjectPrefix returns eventstore.DefaultSubjectPrefix.
func (s *Store) SubjectPrefix() string { return eventstore.DefaultSubjectPrefix }

// Subject returns the subject the JetStream store would give an order's
// events. It does not validate orderID.
func (s *Store) Subject(orderID string) string { return s.SubjectPrefix() + "." + orderID }

// Immutable returns nil: nothing removes events from the store.
func (s *Store) Immutable() error { return nil }

// Append appends events to an order if the order's revision (the number of
// its events) is still expectedRevision, 0 for an order without events, as
// eventstore.Store.Append does: all events land, contiguously, or none
// does, with the versions that follow expectedRevision.
//
// When Meta.RequestID is set and the request id already appended events to
// the order, nothing is written and the original result is returned with
// Duplicate set, whatever expectedRevision is; when it appended events to
// another order, Append fails with a *eventstore.RequestReusedError, or
// with ErrConflict when expectedRevision is stale too.
//
// Errors: ErrInvalidOrderID, ErrEmptyAppend, ErrInvalidEvent and
// ErrTooLarge for what the JetStream store refuses before sending anything;
// ErrConflict when expectedRevision is stale; the ctx error when ctx has
// ended (wrapping ErrUnavailable for a deadline).
func (s *Store) Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	recs, err := encode(orderID, expectedRevision, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := ctxErr(ctx, "append to order "+orderID); err != nil {
		return eventstore.AppendResult{}, err
	}
	rid := events[0].Meta.RequestID
	s.mu.Lock()
	defer s.mu.Unlock()
	req, used := s.requests[rid]
	used = used && rid != ""
	if used && req.orderID == orderID {
		return eventstore.AppendResult{Position: req.last, Version: req.version, Duplicate: true}, nil
	}
	// The revision before another order's request id, as the JetStream
	// server checks the order's sequence before message ids.
	if have := uint64(len(s.orders[orderID])); have != expectedRevision {
		return eventstore.AppendResult{}, fmt.Errorf("memstore: append to order %s: %w: the order is at revision %d, %d expected",
			orderID, eventstore.ErrConflict, have, expectedRevision)
	}
	if used {
		return eventstore.AppendResult{}, &eventstore.RequestReusedError{RequestID: rid, OrderID: req.orderID, Position: req.first}
	}
	at := s.now().UTC()
	for i := range recs {
		recs[i].Position = uint64(len(s.log)) + 1
		recs[i].Time = at
		s.log = append(s.log, recs[i])
		s.orders[orderID] = append(s.orders[orderID], recs[i].Position)
	}
	res := eventstore.AppendResult{Position: recs[len(recs)-1].Position, Version: expectedRevision + uint64(len(recs))}
	if rid != "" {
		s.requests[rid] = request{orderID: orderID, first: recs[0].Position, last: res.Position, version: res.Version}
	}
	close(s.appended)
	s.appended = make(chan struct{})
	return res, nil
}

// encode checks events as the JetStream store does before it sends
// anything, and returns them as they will be read back, without their
// positions and times.
func encode(orderID string, expectedRevision uint64, events []eventstore.EventData) ([]eventstore.Recorded, error) {
	if err := eventstore.ValidOrderID(orderID); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, eventstore.ErrEmptyAppend
	}
	if len(events) > eventstore.MaxEventsPerAppend {
		return nil, fmt.Errorf("%w: %d events, at most %d per append", eventstore.ErrTooLarge, len(events), eventstore.MaxEventsPerAppend)
	}
	recs := make([]eventstore.Recorded, len(events))
	total := 0
	for i, ev := range events {
		if ev.Meta.RequestID != events[0].Meta.RequestID {
			return nil, fmt.Errorf("%w: event %d has another request id than event 0", eventstore.ErrInvalidEvent, i)
		}
		h, size, err := eventstore.EncodeEvent(ev, expectedRevision+uint64(i)+1)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if size += eventstore.MessageIDSize(ev.Meta.RequestID, i) + headerReserve; size > maxPayload {
			return nil, fmt.Errorf("%w: event %d is %d bytes with headers, at most %d", eventstore.ErrTooLarge, i, size, maxPayload)
		}
		if total += size; total > eventstore.MaxAppendBytes {
			return nil, fmt.Errorf("%w: more than %d bytes in one append", eventstore.ErrTooLarge, eventstore.MaxAppendBytes)
		}
		// Decoded from the headers the JetStream store writes, so that
		// what is read back is what it would read back.
		recs[i], err = eventstore.RecordedFromMsg(eventstore.DefaultSubjectPrefix+"."+orderID, 0, time.Time{}, h, clone(ev.Data), eventstore.DefaultSubjectPrefix)
		if err != nil {
			return nil, err
		}
	}
	return recs, nil
}

// clone copies data so that neither the caller of Append nor a reader can
// change what the store holds; nil and empty stay apart.
func clone(data []byte) []byte {
	if data == nil {
		return nil
	}
	return append([]byte{}, data...)
}

// ctxErr returns an error for an ended ctx as the JetStream store reports
// a request cut short: the ctx's error and its cause, wrapping
// ErrUnavailable too when the deadline passed.
func ctxErr(ctx context.Context, op string) error {
	err := ctx.Err()
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("memstore: %s: %w: %w", op, eventstore.ErrUnavailable, err)
	}
	return fmt.Errorf("memstore: %s: %w", op, err)
}
