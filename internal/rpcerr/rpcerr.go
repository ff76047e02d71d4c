// Package rpcerr maps errors to gRPC statuses at the edge of every service.
// Domain and store sentinels become their codes with client-safe messages;
// anything else is logged here, once, and answered with a bare INTERNAL so
// internal text never reaches a client.
package rpcerr

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// ErrStaleRevision reports that a caller-supplied expected revision no
// longer matches the order.
var ErrStaleRevision = errors.New("order was changed since the expected revision")

// ReasonRevisionChanged is the ErrorInfo reason of a StaleRevisionError's
// ABORTED.
const ReasonRevisionChanged = "REVISION_CHANGED"

// StaleRevisionError is a command's expected revision found stale, with
// where the order is: its revision and the log position of its last event
// (0 when not known). It wraps ErrStaleRevision. ToStatus answers it
// ABORTED with an ErrorInfo detail of reason REVISION_CHANGED carrying
// "revision" and "position": a client reads the order at that position
// (consistency.min_position) to see the state to decide on again, where a
// read model behind it would show the revision it acted on.
type StaleRevisionError struct {
	Expected, Revision, Position uint64
}

func (e *StaleRevisionError) Error() string {
	return ErrStaleRevision.Error() + ": expected " + strconv.FormatUint(e.Expected, 10) + ", order is at " + strconv.FormatUint(e.Revision, 10)
}

// Unwrap returns ErrStaleRevision.
func (e *StaleRevisionError) Unwrap() error { return ErrStaleRevision }

// RevisionChanged returns the revision and position of st's
// REVISION_CHANGED detail (see StaleRevisionError), with ok false when st
// is not an ABORTED with one.
func RevisionChanged(st *status.Status) (revision, position uint64, ok bool) {
	if st.Code() != codes.Aborted {
		return 0, 0, false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.GetReason() == ReasonRevisionChanged && info.GetDomain() == ErrorDomain {
			r, err1 := strconv.ParseUint(info.GetMetadata()["revision"], 10, 64)
			p, err2 := strconv.ParseUint(info.GetMetadata()["position"], 10, 64)
			return r, p, err1 == nil && err2 == nil
		}
	}
	return 0, 0, false
}

// staleRevision is the ABORTED status of e.
func staleRevision(e *StaleRevisionError) error {
	st := status.New(codes.Aborted, e.Error())
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonRevisionChanged, Domain: ErrorDomain, Metadata: map[string]string{
		"revision": strconv.FormatUint(e.Revision, 10), "position": strconv.FormatUint(e.Position, 10)}}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// ErrContention reports that server-side retries on conflict were used up.
var ErrContention = errors.New("too many concurrent changes to the order; retry")

// ReasonRequestIDReused is the ErrorInfo reason of RequestIDReused.
const ReasonRequestIDReused = "REQUEST_ID_REUSED"

// ErrorDomain is the ErrorInfo domain of this service's errors.
const ErrorDomain = "orderstream"

// ReasonBusy is the ErrorInfo reason of Busy.
const ReasonBusy = "SERVER_BUSY"

// ReasonUnreadableEvent is the ErrorInfo reason of UnreadableEvent.
const ReasonUnreadableEvent = "UNREADABLE_EVENT"

// UnreadableEvent builds the DATA_LOSS status of a read that met a message
// of the log it cannot decode (msg says which, and what to do), with an
// ErrorInfo detail of reason UNREADABLE_EVENT carrying its position
// ("position", 0 when unknown): a client resumes after it. The message is
// the service's own, about the log, and is meant for the client: the REST
// gateway, which withholds other DATA_LOSS texts, passes it on.
func UnreadableEvent(position uint64, msg string) error {
	return logDataLoss(ReasonUnreadableEvent, position, msg)
}

// ReasonEventsMissing is the ErrorInfo reason of EventsMissing.
const ReasonEventsMissing = "EVENTS_MISSING"

// EventsMissing builds the DATA_LOSS status of a read of an order's
// history that found events removed from the log before position (msg
// says so, and what to do), with an ErrorInfo detail of reason
// EVENTS_MISSING carrying that position ("position"). Like
// UnreadableEvent's, its message is about the log and meant for the
// client, and the REST gateway passes it on.
func EventsMissing(position uint64, msg string) error {
	return logDataLoss(ReasonEventsMissing, position, msg)
}

// logDataLoss is the DATA_LOSS status msg with an ErrorInfo of reason
// carrying position, which IsLogDataLoss recognises.
func logDataLoss(reason string, position uint64, msg string) error {
	st := status.New(codes.DataLoss, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain,
		Metadata: map[string]string{"position": strconv.FormatUint(position, 10)}}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// IsLogDataLoss reports whether st was built by UnreadableEvent or
// EventsMissing: a loss in the log that the client is told of, position
// and all.
func IsLogDataLoss(st *status.Status) bool {
	return isDataLoss(st, ReasonUnreadableEvent) || isDataLoss(st, ReasonEventsMissing)
}

// isDataLoss reports whether st is DATA_LOSS with an ErrorInfo of reason.
func isDataLoss(st *status.Status, reason string) bool {
	if st.Code() != codes.DataLoss {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason && info.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}

// Busy builds the RESOURCE_EXHAUSTED status of a call shed because the
// server had too much in hand (msg says what), with an ErrorInfo detail of
// reason SERVER_BUSY: a refusal to try again after a pause, which the
// code alone does not tell apart from a request too large to ever take.
func Busy(msg string) error {
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonBusy, Domain: ErrorDomain}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// IsBusy reports whether err is a Busy status.
func IsBusy(err error) bool {
	st, ok := status.FromError(err)
	return ok && hasReason(st, codes.ResourceExhausted, ReasonBusy)
}

// hasReason reports whether st has code and an ErrorInfo detail of this
// service's domain with reason.
func hasReason(st *status.Status, code codes.Code, reason string) bool {
	if st.Code() != code {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason && info.GetDomain() == ErrorDomain {
			return true
		}
	}
	return false
}

// RequestIDReused builds the ALREADY_EXISTS status of a request id that
// already named another request: an ErrorInfo detail with reason
// REQUEST_ID_REUSED and a BadRequest detail on request_id. A key names one
// request, so its result is not returned for a different one.
func RequestIDReused() error {
	const why = "already used for a different request; use a new request_id for a new request"
	st := status.New(codes.AlreadyExists, "request_id: "+why)
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonRequestIDReused, Domain: ErrorDomain},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "request_id", Description: why}}},
	); err == nil {
		return d.Err()
	}
	return st.Err()
}

// IsRequestIDReused reports whether st is a RequestIDReused status.
func IsRequestIDReused(st *status.Status) bool {
	return hasReason(st, codes.AlreadyExists, ReasonRequestIDReused)
}

// Invalid builds an INVALID_ARGUMENT status for one request field, with a
// BadRequest detail so clients can point at the field.
func Invalid(field, reason string) error { return Field(codes.InvalidArgument, field, reason) }

// Field builds a status of code for one request field (OUT_OF_RANGE for a
// value past what the system holds, say), with a BadRequest detail so
// clients can point at the field.
func Field(code codes.Code, field, reason string) error {
	st := status.New(code, field+": "+reason)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: reason}}}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// MaxPageBytes bounds what one page of a listing carries, encoded: the
// 4 MiB a gRPC client receives by default, less room for the page's other
// fields. A full page of the largest items can be more (500 orders of 100
// lines and long addresses are over 5 MB), and a client with the default
// limit then fails to read it, every time it asks; such a page stops
// short of its size instead, and its next page token goes on from there.
const MaxPageBytes = 4<<20 - 64<<10

// Fit returns how many of the items, whose encoded sizes size gives, one
// page carries within MaxPageBytes, as a repeated field numbered below 16:
// at least one, at most n.
func Fit(n int, size func(i int) int) int {
	total := 0
	for i := range n {
		// The field's one-byte tag, the item's length and the item.
		total += 1 + protowire.SizeBytes(size(i))
		if i > 0 && total > MaxPageBytes {
			return i
		}
	}
	return n
}

// Limit returns the count a request's limit or page size (the field named
// field) asks for: def when it is 0, the value itself from 1 to most, and
// otherwise an INVALID_ARGUMENT status naming the field.
func Limit(field string, limit int32, def, most int) (int, error) {
	switch {
	case limit == 0:
		return def, nil
	case limit < 0 || int(limit) > most:
		return 0, Invalid(field, "must be between 1 and "+strconv.Itoa(most))
	}
	return int(limit), nil
}

// ID checks a required identifier named field (order_id, customer_id, ...)
// by the one id rule of the system, order.ValidateID: 1-64 printable ASCII
// characters without spaces, so full-width, zero-width and other look-alike
// characters are refused. Every RPC applies it before looking anything up,
// so a malformed id answers INVALID_ARGUMENT, never NOT_FOUND.
func ID(field, id string) error {
	if id == "" {
		return Invalid(field, "required")
	}
	if order.ValidateID(field, id) != nil {
		return Invalid(field, idRule)
	}
	return nil
}

// OrderID is ID for order ids, which also name an event store subject and
// so must not hold '.', '*' or '>'.
func OrderID(field, id string) error {
	if err := ID(field, id); err != nil {
		return err
	}
	if eventstore.ValidOrderID(id) != nil {
		return Invalid(field, orderIDRule)
	}
	return nil
}

const (
	idRule      = "must be 1-64 printable ASCII characters without spaces, and not \".\" or \"..\""
	orderIDRule = "must be 1-64 printable ASCII characters without spaces, '.', '*' or '>'"
)

// DefaultLogger returns log, or slog.Default() when log is nil: the logger
// a service hands ToStatus when its constructor was given none, so that
// internal errors are never dropped unlogged.
func DefaultLogger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.Default()
	}
	return log
}

// ToStatus converts err into a gRPC status error. A status error passes
// through unchanged. An error it cannot classify is INTERNAL, unless ctx
// has ended: then it is CANCELLED or DEADLINE_EXCEEDED. log receives
// internal errors; it may be nil.
func ToStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && (errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// The caller's own deadline or cancellation, met inside the
		// store, which takes a call that ended unanswered for an outage:
		// answered as what it is, and not logged as the store's.
		return status.FromContextError(cerr).Err()
	}
	var fe *order.FieldError
	var stale *StaleRevisionError
	switch {
	case errors.As(err, &fe):
		return Invalid(fe.Field, fe.Reason)
	case errors.As(err, &stale):
		return staleRevision(stale)
	case errors.Is(err, order.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, eventstore.ErrInvalidOrderID):
		return Invalid("order_id", orderIDRule)
	case errors.Is(err, order.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, order.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, order.ErrFailedPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrStaleRevision), errors.Is(err, ErrContention):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, eventstore.ErrTooLarge):
		return status.Error(codes.ResourceExhausted, "request too large")
	case errors.Is(err, eventstore.ErrUnavailable):
		if log != nil {
			log.WarnContext(ctx, "event store unavailable", "err", err)
		}
		return status.Error(codes.Unavailable, "event store unavailable, retry later")
	case errors.Is(err, convert.ErrKeyUnavailable) && !errors.Is(err, pii.ErrCorrupt):
		// The keys bucket did not answer; a key the master key does not
		// unwrap is a configuration error, internal.
		if log != nil {
			log.WarnContext(ctx, "personal data keys unavailable", "err", err)
		}
		return status.Error(codes.Unavailable, "keys unavailable, retry later")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	}
	if cerr := ctx.Err(); cerr != nil {
		// What a call cut short meets (a read model's query interrupted
		// as its caller leaves, a transaction rolled back under it) is
		// the caller's doing, whatever its form: answered as such, and
		// not logged as this server's fault.
		return status.FromContextError(cerr).Err()
	}
	if log != nil {
		log.ErrorContext(ctx, "internal error", "err", err)
	}
	return status.Error(codes.Internal, "internal error")
}
