package command

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Keyring is what the service needs of customers' data keys: sealing and
// opening (convert.Keyring) and forgetting. *pii.Keyring implements it.
type Keyring interface {
	convert.Keyring
	// Forget erases the customer's key for good.
	Forget(ctx context.Context, customerID string) error
	// Has reports whether the customer has a key now.
	Has(ctx context.Context, customerID string) (bool, error)
}

// ErrNoKeyring reports ForgetCustomer on a service without a keyring:
// personal data is not sealed, so there is no key to destroy.
var ErrNoKeyring = errors.New("command: personal data is not sealed: no keyring")

// ForgetCustomer erases a customer's personal data: it destroys the
// customer's data key (every personal field sealed with it becomes
// unreadable for good) and then records CustomerForgotten on the subject
// of order.CustomersSubjectID, linked into that subject's hash chain, so
// the erasure is part of the audit trail and every read model learns of it
// from the log. The key goes first: a failure after it leaves the data
// erased and the call to be retried, never the event without the erasure.
// Having destroyed the key, it destroys it once more before it returns,
// whatever the append answered (the event, a duplicate, no answer): a
// command for the customer that ran meanwhile made a new one, and its data
// is erased too, wherever its event landed (see forgetAgain).
//
// Idempotent by requestID: a retry answers the original event's position;
// the same request id for another customer is ALREADY_EXISTS
// (REQUEST_ID_REUSED), found before the key is touched, unless the
// customer has no key any more. A request id that an order's command used,
// or that another customer's erasure took while this one ran, is found
// only by the append, after the key is gone (or by the retry of a call
// that stopped after destroying it): the erasure is then recorded under an
// id of its own (ownRequestID) and answered as done, never left
// unrecorded. Errors are
// gRPC status errors: INVALID_ARGUMENT for malformed ids and for the
// process managers' reserved request ids, FAILED_PRECONDITION without a
// keyring (ErrNoKeyring).
func (s *Service) ForgetCustomer(ctx context.Context, customerID, requestID string) (position uint64, err error) {
	pos, err := s.forget(ctx, customerID, requestID)
	if errors.Is(err, ErrNoKeyring) {
		return 0, status.Error(codes.FailedPrecondition, "personal data is not sealed by this server")
	}
	if err != nil {
		return 0, rpcerr.ToStatus(ctx, s.log, err)
	}
	return pos, nil
}

func (s *Service) forget(ctx context.Context, customerID, requestID string) (pos uint64, err error) {
	if err := validRequestID(requestID); err != nil {
		return 0, err
	}
	if err := reservedRequestID(nil, requestID); err != nil {
		return 0, err
	}
	if err := rpcerr.ID("customer_id", customerID); err != nil {
		return 0, err
	}
	if s.keys == nil {
		return 0, ErrNoKeyring
	}
	meta := s.metadata(ctx, requestID)
	// Stamped here: a command's events are stamped as it is decided
	// (call.append), which an erasure does not go through.
	meta.OccurredAt = s.now().UTC()
	free := 3       // looks again that cost no attempt
	erased := false // this call destroyed the key
	defer func() {
		// Once this call destroyed the key, a command that ran meanwhile
		// may have made a new one, whatever the append's answer was: its
		// event, a duplicate found on the next look, or no answer at all
		// (the event may have landed, and a retry finds it without
		// destroying anything).
		if erased {
			s.forgetAgain(ctx, customerID, requestID, pos)
		}
	}()
	for attempt := 1; attempt <= s.maxAttempts; attempt++ {
		revision, lastHash, pos, found, reused, err := s.erased.look(ctx, s.store, requestID, customerID)
		switch {
		case err != nil:
			return 0, err
		case found:
			return pos, nil
		}
		if reused && !erased {
			// An earlier call under this request id may have destroyed the
			// key and stopped before its event, while another customer's
			// erasure took the id: a customer without a key is recorded as
			// forgotten rather than refused, which destroys nothing more.
			has, herr := s.keys.Has(ctx, customerID)
			if herr != nil {
				return 0, fmt.Errorf("%w: forget customer: %w", convert.ErrKeyUnavailable, herr)
			}
			erased = !has
		}
		if reused {
			if !erased {
				return 0, rpcerr.RequestIDReused()
			}
			// Another customer's erasure took the request id between the
			// last look and the append, and this customer's key is gone
			// already: recorded under an id of its own, as below.
			meta.RequestID = ownRequestID(customerID, requestID)
		}
		if err := s.keys.Forget(ctx, customerID); err != nil {
			return 0, fmt.Errorf("%w: forget customer: %w", convert.ErrKeyUnavailable, err)
		}
		erased = true
		prev := chain.Zero
		if lastHash != "" {
			prev = lastHash
		}
		data, err := s.encode(ctx, order.CustomersSubjectID, customerID, []order.Event{order.CustomerForgotten{CustomerID: customerID}}, meta, prev)
		if err != nil {
			return 0, err
		}
		res, err := s.store.Append(ctx, order.CustomersSubjectID, revision, data)
		switch {
		case errors.Is(err, eventstore.ErrRequestReused) && meta.RequestID == requestID:
			// Another request (an order's) used this request id, and
			// the key is gone: the erasure is recorded under an id of
			// its own rather than not at all (see ownRequestID).
			meta.RequestID = ownRequestID(customerID, requestID)
			attempt--
		case errors.Is(err, eventstore.ErrRequestReused):
			return 0, rpcerr.RequestIDReused()
		case err == nil && res.Duplicate:
			// This request's event is in the log already (a try that got
			// no answer), or another's under the same id: the next look
			// at the subject tells which, and costs no attempt.
			if free > 0 {
				free--
				attempt--
			}
		case errors.Is(err, eventstore.ErrConflict):
			// Another erasure landed first: read the subject again.
			if err := waitToRetry(ctx, attempt); err != nil {
				return 0, err
			}
		case err != nil:
			return 0, err
		default:
			return res.Position, nil
		}
	}
	return 0, rpcerr.ErrContention
}

// forgetAgain destroys the key a command may have made for the customer
// between the erasure's destruction of the key and its event at position:
// that command found no key and made one, and its event may precede the
// erasure's. Any key made later serves only events after the erasure,
// since its making follows the erasure's append. A command that made its
// key in between and appends after the erasure loses its personal data
// too: it ran during the erasure.
//
// When it found such a key, it records the erasure a second time (under
// againRequestID): a read model may have applied that command's event,
// with the key still there, in the clear, after the first erasure, and
// only an erasure after it tells it to erase the order again.
//
// It runs whenever the call destroyed the key, whether the erasure's
// append was answered or not (position is 0 when it was not). It does not
// end with the call (a client that gives up must not leave the key in
// place) and its failure is logged, not returned: the erasure stands or
// is for the client to retry, and a retry that finds the erasure done does
// not destroy again, which could take a key the customer got since.
func (s *Service) forgetAgain(ctx context.Context, customerID, requestID string, position uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), forgetAgainTimeout)
	defer cancel()
	var err error
	made := false // a key was made while the erasure ran
	for attempt := 1; ; attempt++ {
		if has, herr := s.keys.Has(ctx, customerID); herr == nil && has {
			made = true
		}
		if err = s.keys.Forget(ctx, customerID); err == nil {
			if made {
				if err := s.recordAgain(ctx, customerID, requestID); err != nil {
					s.log.ErrorContext(ctx, "command: an erasure destroyed a key made while it ran, but recording the erasure again failed: "+
						"a read model may show data sealed with that key; forget the customer again", "position", position, "err", err)
				}
			}
			return
		}
		if attempt == s.maxAttempts || waitToRetry(ctx, attempt) != nil {
			break
		}
	}
	s.log.ErrorContext(ctx, "command: an erasure destroyed the customer's key, but destroying it again failed: "+
		"data a command sealed while the erasure ran may stay readable; forget the customer again", "position", position, "err", err)
}

// recordAgain records customerID's erasure a second time, under
// againRequestID(requestID), unless it is recorded already (a try whose
// answer was lost).
func (s *Service) recordAgain(ctx context.Context, customerID, requestID string) error {
	meta := s.metadata(ctx, againRequestID(customerID, requestID))
	meta.OccurredAt = s.now().UTC()
	for attempt := 1; attempt <= s.maxAttempts; attempt++ {
		revision, lastHash, _, found, _, err := s.erased.look(ctx, s.store, meta.RequestID, customerID)
		if err != nil || found {
			return err
		}
		prev := chain.Zero
		if lastHash != "" {
			prev = lastHash
		}
		data, err := s.encode(ctx, order.CustomersSubjectID, customerID, []order.Event{order.CustomerForgotten{CustomerID: customerID}}, meta, prev)
		if err != nil {
			return err
		}
		_, err = s.store.Append(ctx, order.CustomersSubjectID, revision, data)
		if !errors.Is(err, eventstore.ErrConflict) {
			return err
		}
		if err := waitToRetry(ctx, attempt); err != nil {
			return err
		}
	}
	return rpcerr.ErrContention
}

// againRequestID is the request id of an erasure recorded a second time
// (recordAgain): ownRequestID's form under a prefix of its own, so that
// clientRequestID does not take it for the client's first erasure.
func againRequestID(customerID, requestID string) string {
	return ownPrefix + "again:" + ownRequestID(customerID, requestID)
}

// forgetAgainTimeout bounds forgetAgain.
const forgetAgainTimeout = 30 * time.Second

// ownRequestID is the request id an erasure is recorded under when the
// client's was taken by another request after the customer's key was
// already destroyed: the client's, prefixed with the customer's id and its
// length (no other request's can be the same). An erasure that destroyed
// the key must be recorded, or read models would keep the customer's
// plaintext and no audit would show it; a retry of the request finds it
// under either id.
func ownRequestID(customerID, requestID string) string {
	return fmt.Sprintf("%s%d:%s:%s", ownPrefix, len(customerID), customerID, requestID)
}

const ownPrefix = "forget:"

// clientRequestID returns the client's request id of an erasure's recorded
// one: itself, or the one ownRequestID wrapped.
func clientRequestID(recorded string) string {
	rest, ok := strings.CutPrefix(recorded, ownPrefix)
	if !ok {
		return recorded
	}
	digits, rest, ok := strings.Cut(rest, ":")
	n, err := strconv.Atoi(digits)
	if !ok || err != nil || n < 0 || len(rest) < n+1 || rest[n] != ':' {
		return recorded
	}
	return rest[n+1:]
}
