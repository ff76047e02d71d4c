package command

import (
	"context"
	"fmt"
	"sync"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/order"
)

// erasures is the customers' subject as this service last read it, kept
// to look a request id up in (forgottenBy) and to append after: read whole
// once, then only what follows it, so that an erasure costs what was
// recorded since the last one this service read rather than every erasure
// ever recorded (a second each at forty thousand).
type erasures struct {
	mu sync.Mutex
	// byRequest holds, under each request id an erasure was recorded with
	// (and the client's id it was derived from, see clientRequestID), the
	// erasures recorded under it.
	byRequest map[string][]erasure
	// byCustomer holds the position of each customer's last erasure.
	byCustomer map[string]uint64
	count      uint64 // events read: the subject's revision
	last       uint64 // the position of the last
	hash       string // the last's hash in the subject's chain
}

// erasure is one event of the customers' subject, as forgottenBy needs it.
type erasure struct {
	customerID string
	position   uint64
	err        error // it did not decode
}

// readNew reads the events of the customers' subject recorded since the
// last read, from the leader (LoadLatestAfter), and returns the subject's
// revision and its last event's hash. Call with e.mu held.
func (e *erasures) readNew(ctx context.Context, store Store) (revision uint64, hash string, err error) {
	recs, err := store.LoadLatestAfter(ctx, order.CustomersSubjectID, e.last)
	if err != nil {
		return 0, "", err
	}
	if e.byRequest == nil {
		e.byRequest, e.byCustomer = map[string][]erasure{}, map[string]uint64{}
	}
	for _, r := range recs {
		er := erasure{position: r.Position}
		if ev, err := convert.DecodeEvent(r.Type, r.Data); err != nil {
			er.err = fmt.Errorf("%s at position %d: %w", order.CustomersSubjectID, r.Position, err)
		} else if f, ok := ev.(order.CustomerForgotten); ok {
			er.customerID = f.CustomerID
			e.byCustomer[f.CustomerID] = r.Position
		}
		e.byRequest[r.Meta.RequestID] = append(e.byRequest[r.Meta.RequestID], er)
		if c := clientRequestID(r.Meta.RequestID); c != r.Meta.RequestID {
			e.byRequest[c] = append(e.byRequest[c], er)
		}
		e.count++
		e.last, e.hash = r.Position, r.Meta.Hash
	}
	return e.count, e.hash, nil
}

// look reads what was recorded since the last read (readNew) and looks
// requestID's erasure of customerID up in all that was read (forgottenBy),
// under e.mu: the subject's revision and last hash to append after, and
// what forgottenBy says.
func (e *erasures) look(ctx context.Context, store Store, requestID, customerID string) (revision uint64, lastHash string, position uint64, found, reused bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if revision, lastHash, err = e.readNew(ctx, store); err != nil {
		return 0, "", 0, false, false, err
	}
	position, found, reused, err = e.forgottenBy(requestID, customerID)
	return revision, lastHash, position, found, reused, err
}

// forgottenAfter reports whether customerID's erasure was recorded after
// position, as read from the leader now.
func (e *erasures) forgottenAfter(ctx context.Context, store Store, customerID string, position uint64) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, _, err := e.readNew(ctx, store); err != nil {
		return false, err
	}
	return e.byCustomer[customerID] > position, nil
}

// forgottenBy looks for the event of requestID among the erasures read
// (under requestID itself, or wrapped by ownRequestID): found when one
// forgot customerID, with its position, or reused when only events of
// other customers' erasures carry it. Every event is looked at: an erasure
// that lost a race for the request id to another customer's is recorded
// after it, under its own id. It fails on an event under the id that does
// not decode. Call with e.mu held.
func (e *erasures) forgottenBy(requestID, customerID string) (position uint64, found, reused bool, err error) {
	for _, er := range e.byRequest[requestID] {
		if er.err != nil {
			return 0, false, false, er.err
		}
		if er.customerID == customerID {
			return er.position, true, false, nil
		}
		reused = true
	}
	return 0, false, reused, nil
}
