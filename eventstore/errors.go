package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Sentinel errors. Every error returned by this package that falls into one of
// these classes wraps the sentinel, so callers test with errors.Is; the
// underlying NATS error stays wrapped as well for diagnostics.
var (
	// ErrConflict reports that the expected revision of an order was stale:
	// another writer appended first. The caller should reload and decide again.
	ErrConflict = errors.New("eventstore: expected revision conflict")

	// ErrInvalidOrderID reports an order id that cannot be used as a NATS
	// subject token: empty, longer than MaxOrderIDLen bytes, or containing '.',
	// '*', '>', whitespace, control characters or invalid UTF-8.
	ErrInvalidOrderID = errors.New("eventstore: invalid order id")

	// ErrEmptyAppend reports an Append without events.
	ErrEmptyAppend = errors.New("eventstore: no events to append")

	// ErrTooLarge reports an event larger than the server's max payload, or an
	// append with more than MaxEventsPerAppend events or more than
	// MaxAppendBytes bytes in total.
	ErrTooLarge = errors.New("eventstore: append too large")

	// ErrUnavailable reports that JetStream could not be reached or did not
	// answer in time (connection closed or reconnecting, no responders,
	// deadline exceeded, leader election in progress), that too few of
	// a cluster's servers are online to place a replicated stream, or that
	// the server's store is full or failed to write. Retrying later may
	// succeed.
	ErrUnavailable = errors.New("eventstore: jetstream unavailable")

	// ErrInvalidEvent reports an event that cannot be stored faithfully: an
	// empty type, or a type or metadata value that would not survive the trip
	// through a NATS header (line breaks, leading or trailing whitespace).
	ErrInvalidEvent = errors.New("eventstore: invalid event")

	// ErrRequestReused reports that a request id already appended events to
	// another order within the duplicate window; the error is a
	// *RequestReusedError saying which.
	ErrRequestReused = errors.New("eventstore: request id already used for another order")

	// ErrMalformedEvent reports a stored message that is not an event written
	// by this package (wrong subject, missing type, unparsable header).
	ErrMalformedEvent = errors.New("eventstore: malformed stored event")
)

// ValidOrderID returns nil when id can name an order in this store, and
// otherwise the error wrapping ErrInvalidOrderID that Append, Load and
// LoadAfter would return for it. Services use it to check ids they turn
// into subject filters themselves.
func ValidOrderID(id string) error { return validateOrderID(id) }

// Server error codes that are not exported by nats.go as constants. The names
// follow nats-server's errors.json.
const (
	codeClusterNoPeers                  jetstream.ErrorCode = 10005 // JSClusterNoPeersErrF
	codeClusterNotAvail                 jetstream.ErrorCode = 10008 // JSClusterNotAvailErr
	codeClusterNotLeader                jetstream.ErrorCode = 10009 // JSClusterNotLeaderErr
	codeHeaderExceedsMaximum            jetstream.ErrorCode = 10097 // JSStreamHeaderExceedsMaximumErr
	codeStreamOffline                   jetstream.ErrorCode = 10118 // JSStreamOfflineErr
	codeDuplicateMessageConflict        jetstream.ErrorCode = 10158 // JSStreamDuplicateMessageConflict
	codeExpectedLastSeqPerSubjNotRdy    jetstream.ErrorCode = 10163 // JSStreamExpectedLastSeqPerSubjectNotReady
	codeStreamTooManyRequests           jetstream.ErrorCode = 10167 // JSStreamTooManyRequests
	codeStreamOfflineReason             jetstream.ErrorCode = 10194 // JSStreamOfflineReasonErrF
	codeInsufficientResources           jetstream.ErrorCode = 10023 // JSInsufficientResourcesErr
	codeMemoryResourcesExceeded         jetstream.ErrorCode = 10028 // JSMemoryResourcesExceededErr
	codeStorageResourcesExceeded        jetstream.ErrorCode = 10047 // JSStorageResourcesExceededErr
	codeStreamStoreFailed               jetstream.ErrorCode = 10077 // JSStreamStoreFailedF
	codeAtomicPublishIncomplete                             = jetstreamext.JSErrCodeBatchPublishIncomplete
	codeAtomicPublishTooLarge                               = jetstreamext.JSErrCodeBatchPublishExceedsLimit
	codeAtomicPublishDuplicateMsgID                         = jetstreamext.JSErrCodeBatchPublishDuplicateMsgID
	codeAtomicPublishTooManyInflight                        = jetstreamext.JSErrCodeAtomicPublishTooManyInflight
	codeBatchPublishTooManyInflight                         = jetstreamext.JSErrCodeBatchPublishTooManyInflight
	codeStreamWrongLastSequence                             = jetstream.JSErrCodeStreamWrongLastSequence
	codeStreamWrongLastSequenceConstant                     = jetstream.JSErrCodeStreamWrongLastSequenceConstant
	codeStreamMessageExceedsMaximum                         = jetstream.JSErrCodeStreamMessageExceedsMaximum
)

// apiErrorCode returns the JetStream error code carried by err, or 0.
func apiErrorCode(err error) jetstream.ErrorCode {
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok && apiErr != nil {
		return apiErr.ErrorCode
	}
	return 0
}

// ended returns the error of an ended ctx together with its cause, when
// it was given one of its own (context.WithCancelCause): the cause alone
// wraps neither context.Canceled nor context.DeadlineExceeded, so a
// caller's cancellation read as an error of no known class, which a read
// reports as ErrUnavailable.
func ended(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// classify wraps err with the sentinel of its class, prefixed by what was
// being done. Errors that fit no class are wrapped with the prefix only.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if sentinel := classOf(err); sentinel != nil {
		if errors.Is(err, sentinel) {
			return err
		}
		return fmt.Errorf("eventstore: %s: %w: %w", op, sentinel, err)
	}
	return fmt.Errorf("eventstore: %s: %w", op, err)
}

func classOf(err error) error {
	for _, s := range []error{ErrConflict, ErrTooLarge, ErrUnavailable, ErrInvalidOrderID, ErrEmptyAppend, ErrInvalidEvent, ErrMalformedEvent} {
		if errors.Is(err, s) {
			return s
		}
	}
	switch apiErrorCode(err) {
	case codeStreamWrongLastSequence, codeStreamWrongLastSequenceConstant:
		return ErrConflict
	// 10158: a message with the same id is being processed right now: an
	// earlier try of the same request, whose proposal the leader holds
	// (without a quorum, until a follower is back). It may yet land, so
	// the outcome is not known: unavailable, to be tried again under the
	// same id, which then meets it as a duplicate. As a conflict, a
	// command with an expected revision was answered ABORTED for a change
	// that then landed.
	case codeDuplicateMessageConflict:
		return ErrUnavailable
	case codeStreamMessageExceedsMaximum, codeHeaderExceedsMaximum, codeAtomicPublishTooLarge:
		return ErrTooLarge
	// No suitable peers: a replicated stream or consumer cannot be placed
	// while too few of the cluster's servers are online, as while a
	// cluster starts or a node restarts; placement succeeds once they are.
	case codeClusterNoPeers, codeClusterNotAvail, codeClusterNotLeader, codeStreamOffline, codeStreamOfflineReason,
		codeExpectedLastSeqPerSubjNotRdy, codeStreamTooManyRequests, codeAtomicPublishIncomplete,
		codeAtomicPublishTooManyInflight, codeBatchPublishTooManyInflight,
		jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
		return ErrUnavailable
	// The server's store is full (its limit, the account's, or the disk)
	// or failed to write: nothing was appended, and the same append goes
	// through once an operator has made room. As an error of no class it
	// was answered INTERNAL, so the payments manager took a charge it
	// could not record for a refusal, spent its attempts on it and parked
	// it, and ordersctl did not retry.
	case codeInsufficientResources, codeMemoryResourcesExceeded, codeStorageResourcesExceeded, codeStreamStoreFailed:
		return ErrUnavailable
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return ErrTooLarge
	}
	if isTransport(err) {
		return ErrUnavailable
	}
	return nil
}

// storeRefused reports the server's refusal to store for want of room,
// or because its store failed: an answer, unlike the other unavailable
// errors, which stored nothing, and which trying again at once does not
// change.
func storeRefused(err error) bool {
	switch apiErrorCode(err) {
	case codeInsufficientResources, codeMemoryResourcesExceeded, codeStorageResourcesExceeded, codeStreamStoreFailed:
		return true
	}
	return false
}

// Unavailable reports whether err, an error of NATS or JetStream (or one
// wrapping it), is of the class ErrUnavailable stands for: no usable
// answer, or a server that cannot take the request now. Packages beside
// the store that use JetStream directly (its key-value buckets) classify
// their errors with it, so that their callers tell an outage as the
// store's callers do.
func Unavailable(err error) bool { return errors.Is(classOf(err), ErrUnavailable) }

// isTransport reports errors that mean "the request did not get a usable
// answer" rather than "the server refused it".
func isTransport(err error) bool {
	for _, target := range []error{
		context.DeadlineExceeded,
		nats.ErrTimeout,
		nats.ErrNoResponders,
		nats.ErrConnectionClosed,
		nats.ErrConnectionDraining,
		nats.ErrConnectionReconnecting,
		nats.ErrDisconnected,
		nats.ErrNoServers,
		nats.ErrStaleConnection,
		nats.ErrBadSubscription,
		nats.ErrSlowConsumer,
		jetstream.ErrNoStreamResponse,
		jetstream.ErrConnectionClosed,
		jetstream.ErrServerShutdown,
		jetstream.ErrNoHeartbeat,
		jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrJetStreamNotEnabledForAccount,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// RequestReusedError says where the events of a reused request id are. A
// caller that generated the order id itself (a CreateOrder retried without
// one) uses it to find the order its first attempt created.
type RequestReusedError struct {
	RequestID string
	OrderID   string // order the original events belong to
	Position  uint64 // position of the original event with that message id
}

// Error says which order and position already hold the request id.
func (e *RequestReusedError) Error() string {
	return fmt.Sprintf("eventstore: request id %q was already used for order %s (position %d)", e.RequestID, e.OrderID, e.Position)
}

// Is makes errors.Is(err, ErrRequestReused) true.
func (e *RequestReusedError) Is(target error) bool { return target == ErrRequestReused }
