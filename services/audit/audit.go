// Package audit implements OrderAuditService: order history, state at any
// point in time, log export and hash-chain verification, all read from the
// event log itself, never from a read model.
package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Limits of the audit API.
const (
	DefaultHistoryPage = 100
	MaxHistoryPage     = 1000
	MaxOrderFilter     = 100
	progressEvery      = 10000
)

// Store is what the audit service needs of the event store.
type Store interface {
	// LoadLatest, not a load any replica may answer: an auditor must never
	// be shown the partial history of a lagging replica as the whole.
	LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	Head(ctx context.Context) (uint64, error)
	// ReadBatches and FollowBatches read the log for exports, scans and
	// verification, undecodable messages included.
	ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
	FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
}

// Service implements ordersv1.OrderAuditServiceServer.
type Service struct {
	ordersv1.UnimplementedOrderAuditServiceServer
	store Store
	log   *slog.Logger
	keys  convert.Keyring
}

// WithKeyring opens the sealed personal data of the events that history,
// GetOrderAt and StreamEvents show; without it, and once a customer is
// forgotten, personal fields show as erased. Verification never opens them:
// the hash chain covers the stored bytes, ciphertext included. Invalid: nil.
func WithKeyring(keys convert.Keyring) Option {
	return func(s *Service) error {
		if keys == nil {
			return fmt.Errorf("%w: WithKeyring(nil)", ErrInvalidOption)
		}
		s.keys = keys
		return nil
	}
}

// Option configures a Service. An option given a value it does not accept
// makes New fail with an error wrapping ErrInvalidOption; each option says
// which values those are.
type Option func(*Service) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("audit: invalid option")

// readKeys returns the keyring one read opens its events with, nil when
// the service has none: a pii.Keyring's keys cached before the read began
// are confirmed by the keys' leader before it uses them
// (pii.Keyring.Confirming). A node whose watch of the keys is behind
// still caches a key another node erased, or, once the customer is back,
// the key of before the erasure: an export or a history read with it
// would show, in the clear, what the erasure destroyed, which the same
// order read from a current cache shows erased.
func (s *Service) readKeys() convert.Keyring {
	if c, ok := s.keys.(interface{ Confirming() *pii.Confirming }); ok {
		return c.Confirming()
	}
	return s.keys
}

// open decodes e's payload again with its sealed personal data opened
// with keys (readKeys), when the service has a keyring. Errors are
// convert.OpenEvent's.
func (s *Service) open(ctx context.Context, keys convert.Keyring, e entry) (entry, error) {
	if keys == nil || e.err != nil {
		return e, nil
	}
	ev, err := convert.OpenEvent(ctx, keys, e.rec.OrderID, e.rec.Type, e.rec.Data)
	if err != nil {
		return e, err
	}
	if f, ok := order.EventValue(ev).(order.CustomerForgotten); ok {
		// A read of the log in order (an export) opens what follows the
		// erasure without the key it destroyed: another node that had
		// not yet learnt of the erasure may have sealed an event with it
		// after it, which the key this keyring still caches would open,
		// in the clear, where the read model shows it erased.
		if d, ok := keys.(interface{ Drop(customerID string) }); ok {
			d.Drop(f.CustomerID)
		}
	}
	e.ev = ev
	return e, nil
}

// forgottenType is the type of the events that record an erasure.
var forgottenType = order.CustomerForgotten{}.EventType()

// openFailed is the answer of a read whose event e's sealed personal data
// could not be opened (open's err): DATA_LOSS naming its position when the
// envelope does not authenticate (altered, or moved from another event),
// as for any other payload that does not decode; else err's own.
func (s *Service) openFailed(ctx context.Context, e entry, err error) error {
	if !errors.Is(err, convert.ErrCorruptEvent) {
		return rpcerr.ToStatus(ctx, s.log, err)
	}
	s.log.WarnContext(ctx, "audit: an event's sealed data does not open", "order_id", e.rec.OrderID, "position", e.rec.Position, "err", err)
	return dataLoss(e)
}

// New returns the audit service on store; a nil log logs to
// slog.Default(). It fails with an error wrapping ErrInvalidOption when an
// option is invalid.
func New(store Store, log *slog.Logger, opts ...Option) (*Service, error) {
	s := &Service{store: store, log: rpcerr.DefaultLogger(log)}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// traceID extracts the trace id from a W3C traceparent value.
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

// recorded converts one decoded event (e.err nil) for the API with its
// version (its stream revision), or 0 where unknown.
func recorded(e entry, version uint64) (*ordersv1.RecordedEvent, error) {
	r := e.rec
	pb, err := convert.EventToAPI(e.ev)
	if err != nil {
		return nil, err
	}
	return &ordersv1.RecordedEvent{
		Position: r.Position, OrderId: r.OrderID, Version: uint32(version), Type: r.Type,
		OccurredAt: convert.Timestamp(r.Meta.OccurredAt), RecordedAt: convert.Timestamp(r.Time),
		Actor: r.Meta.Actor, RequestId: r.Meta.RequestID, CorrelationId: r.Meta.CorrelationID,
		CausationId: r.Meta.CausationID, TraceId: traceID(r.Meta.TraceParent), Hash: r.Meta.Hash,
		Event: pb,
	}, nil
}

// validOrderID checks an order id by the rule every RPC applies.
func validOrderID(id string) error { return rpcerr.OrderID("order_id", id) }

// load returns an order's events, decoded: NOT_FOUND when it has none,
// DATA_LOSS naming the position when its history holds a message that
// cannot be decoded as an event (headers or payload) or when events are
// missing from it. An event of a type a newer build wrote is returned as
// an entry that is unknown(): a read that would have to show it answers
// FAILED_PRECONDITION (dataLoss), one that does not goes on without it.
func (s *Service) load(ctx context.Context, id string) ([]entry, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	recs, err := s.store.LoadLatest(ctx, id)
	if errors.Is(err, eventstore.ErrMalformedEvent) {
		return nil, s.undecodable(ctx, id, err)
	}
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	if len(recs) == 0 {
		return nil, status.Error(codes.NotFound, "order not found")
	}
	if at, ok := gap(recs); ok {
		s.log.ErrorContext(ctx, "audit: an order's history has a gap: events were removed from the log", "order_id", id, "position", recs[at].Position)
		return nil, rpcerr.EventsMissing(recs[at].Position, fmt.Sprintf("order %q: events are missing from its history before log position %d; VerifyOrder reports it",
			id, recs[at].Position))
	}
	out := make([]entry, len(recs))
	keys := s.readKeys()
	for i, r := range recs {
		if out[i] = decoded(r); out[i].unknown() {
			continue
		}
		if out[i].err != nil {
			s.log.WarnContext(ctx, "audit: an order's history holds an undecodable payload", "order_id", id, "position", r.Position, "err", out[i].err)
			return nil, dataLoss(out[i])
		}
		if out[i], err = s.open(ctx, keys, out[i]); err != nil {
			return nil, s.openFailed(ctx, out[i], err)
		}
	}
	return out, nil
}

// gap returns the index of the first event of an order's history that does
// not follow the one before it: its previous hash is not the hash of the
// event before it (or, for the first, not the chain's start), or its version
// is not its place in the history, so events were removed from the log in
// between. Numbering what remains would present a
// gap as a complete history. Events without chain headers (written before
// the chain existed) cannot be checked and pass.
func gap(recs []eventstore.Recorded) (int, bool) {
	want := chain.Zero
	for i, r := range recs {
		if r.Meta.PrevHash != "" && want != "" && r.Meta.PrevHash != want {
			return i, true
		}
		if r.Version != uint64(i)+1 { // Load numbers events without a version by their place
			return i, true
		}
		want = r.Meta.Hash
	}
	return 0, false
}

// entry is one message of the log as the audit reads it: a decoded event
// (rec and its payload ev), or, with err set, a message that is not an
// event this build can read: its headers do not decode, or its payload is
// not a valid event of the type its header names. For such a message rec
// holds only its position, its stored time and the order id its subject
// names, hashed says whether it carries chain headers, and why says what
// is wrong in words fit for a client.
type entry struct {
	rec    eventstore.Recorded
	ev     order.Event
	err    error
	hashed bool
	why    string
}

// unknown reports an event of a type this build does not know (a newer
// build's, see docs/schema-evolution.md): decoded keeps its rec whole, so
// its hash can be checked against its bytes, though it cannot be shown.
func (e entry) unknown() bool { return errors.Is(e.err, convert.ErrUnknownEventType) }

// decoded decodes the payload of an event whose headers decoded. A payload
// that does not decode makes it an undecodable entry, exactly as a message
// whose headers do not decode: showing its envelope with an empty payload
// would hide that the event's content is lost.
func decoded(r eventstore.Recorded) entry {
	ev, err := convert.DecodeEvent(r.Type, r.Data)
	if err == nil {
		return entry{rec: r, ev: ev}
	}
	if errors.Is(err, convert.ErrUnknownEventType) {
		return entry{rec: r, err: err, why: "an event of a type this build does not know (written by a newer build)"}
	}
	return entry{
		rec:    eventstore.Recorded{OrderID: r.OrderID, Position: r.Position, Time: r.Time},
		err:    fmt.Errorf("%w: payload at position %d: %w", eventstore.ErrMalformedEvent, r.Position, err),
		hashed: r.Meta.Hash != "" || r.Meta.PrevHash != "",
		why:    "the stored payload is not a valid event of the type its header names",
	}
}

// dataLoss is the answer of a read that met an undecodable message:
// FAILED_PRECONDITION for an event of a type a newer build wrote, which
// this one cannot show (nothing is lost; a newer build can), else
// DATA_LOSS.
func dataLoss(e entry) error {
	if e.unknown() {
		return status.Errorf(codes.FailedPrecondition, "the event at log position %d (order %q) is of type %q, which this build does not know: it was written by a newer build, which can show it",
			e.rec.Position, e.rec.OrderID, e.rec.Type)
	}
	return rpcerr.UnreadableEvent(e.rec.Position, fmt.Sprintf("the message at log position %d (order %q) cannot be decoded as an event; VerifyOrder and VerifyLog report it",
		e.rec.Position, e.rec.OrderID))
}

// undecodable answers a Load of order id that failed with loadErr
// (ErrMalformedEvent): DATA_LOSS, naming the first undecodable message.
func (s *Service) undecodable(ctx context.Context, id string, loadErr error) error {
	s.log.WarnContext(ctx, "audit: an order's history holds an undecodable message", "order_id", id, "err", loadErr)
	entries, err := s.scanOrder(ctx, id)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.err != nil && !e.unknown() { // a newer build's event is no loss
			return dataLoss(e)
		}
	}
	return rpcerr.UnreadableEvent(0, fmt.Sprintf("order %q: its history holds a message that cannot be decoded as an event", id))
}

// scanOrder reads every message of one order up to the log head, message
// by message, keeping those that cannot be decoded as entries with err set.
func (s *Service) scanOrder(ctx context.Context, id string) ([]entry, error) {
	var out []entry
	err := s.consume(ctx, 0, false, func(e entry) error {
		out = append(out, e)
		return nil
	}, eventstore.ForOrders(id))
	return out, err
}

// GetOrderHistory returns an order's events oldest first, paged by an
// opaque token holding the index of the next event.
func (s *Service) GetOrderHistory(ctx context.Context, req *ordersv1.GetOrderHistoryRequest) (*ordersv1.GetOrderHistoryResponse, error) {
	size, err := rpcerr.Limit("page_size", req.GetPageSize(), DefaultHistoryPage, MaxHistoryPage)
	if err != nil {
		return nil, err
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := decodeHistoryToken(tok, req.GetOrderId())
		if err != nil {
			return nil, err
		}
		start = n
	}
	recs, err := s.load(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	if start > len(recs) {
		return nil, rpcerr.Invalid("page_token", "beyond the order's history")
	}
	end := min(start+size, len(recs))
	res := &ordersv1.GetOrderHistoryResponse{}
	unknownAt := -1 // a newer build's event the page would show
	for i := start; i < end; i++ {
		if recs[i].unknown() {
			unknownAt = i
			break
		}
		ev, err := recorded(recs[i], recs[i].rec.Version)
		if err != nil {
			return nil, rpcerr.ToStatus(ctx, s.log, err)
		}
		res.Events = append(res.Events, ev)
	}
	if n := rpcerr.Fit(len(res.Events), func(i int) int { return proto.Size(res.Events[i]) }); n < len(res.Events) {
		// Cut by size before the newer build's event, if any: the page
		// does not show it.
		res.Events, end, unknownAt = res.Events[:n], start+n, -1
	}
	if unknownAt >= 0 {
		return nil, dataLoss(recs[unknownAt])
	}
	if end < len(recs) {
		res.NextPageToken = encodeHistoryToken(end, req.GetOrderId())
	}
	return res, nil
}

func encodeHistoryToken(next int, orderID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(next) + "|" + orderID))
}

// decodeHistoryToken reads a page token; it must name the same order.
func decodeHistoryToken(tok, orderID string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, rpcerr.Invalid("page_token", "malformed")
	}
	n, id, ok := strings.Cut(string(b), "|")
	idx, err := strconv.Atoi(n)
	if !ok || err != nil || idx < 0 || id != orderID {
		return 0, rpcerr.Invalid("page_token", "malformed or for another order")
	}
	return idx, nil
}

// GetOrderAt folds an order's history up to a version or a time. The
// record of erasures (order.CustomersSubjectID) is NOT_FOUND: it is no
// order, and folded it answered one with no id and no status.
func (s *Service) GetOrderAt(ctx context.Context, req *ordersv1.GetOrderAtRequest) (*ordersv1.GetOrderAtResponse, error) {
	if req.GetOrderId() == order.CustomersSubjectID {
		return nil, status.Error(codes.NotFound, "the erasures' record is no order; read its history")
	}
	var upto func(i int, r eventstore.Recorded) bool
	switch p := req.GetPoint().(type) {
	case *ordersv1.GetOrderAtRequest_Version:
		if p.Version == 0 {
			return nil, rpcerr.Invalid("version", "must be at least 1")
		}
		upto = func(i int, _ eventstore.Recorded) bool { return uint32(i) < p.Version }
	case *ordersv1.GetOrderAtRequest_Time:
		if err := p.Time.CheckValid(); err != nil {
			return nil, rpcerr.Invalid("time", "invalid timestamp")
		}
		t := p.Time.AsTime()
		upto = func(_ int, r eventstore.Recorded) bool { return !r.Meta.OccurredAt.After(t) }
	default:
		return nil, rpcerr.Invalid("point", "give a version or a time")
	}
	recs, err := s.load(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	if v, ok := req.GetPoint().(*ordersv1.GetOrderAtRequest_Version); ok && int(v.Version) > len(recs) {
		return nil, status.Errorf(codes.OutOfRange, "the order has %d events", len(recs))
	}
	var st order.State
	last := -1
	for i, e := range recs {
		if !upto(i, e.rec) {
			break
		}
		// A newer build's event (e.ev nil) counts in the version and
		// changes nothing else, as this build's command side and
		// projection fold it (docs/schema-evolution.md).
		st = order.Evolve(st, e.ev, e.rec.Meta.OccurredAt)
		last = i
	}
	if last < 0 {
		return nil, status.Error(codes.NotFound, "the order did not exist at that time")
	}
	if recs[last].unknown() {
		return nil, dataLoss(recs[last]) // the answer's last event
	}
	le, err := recorded(recs[last], recs[last].rec.Version)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	return &ordersv1.GetOrderAtResponse{Order: convert.OrderToProto(st), LastEvent: le}, nil
}

// StreamEvents streams the log, filtered, up to the head as of the call or,
// with follow, on live. from_time starts at the first event the log stored
// at or after it (its recorded_at, the server's clock), not by occurred-at,
// which the writer supplies and which need not grow along the log. A message in the selected range that cannot be
// decoded as an event ends the stream with DATA_LOSS naming its position
// (rather than an export silently missing it); a client can resume after
// it with from_position. An event of a type a newer build wrote ends it
// with FAILED_PRECONDITION, unless event_types filters the stream (the
// filter names types this build knows, so it cannot select one).
func (s *Service) StreamEvents(req *ordersv1.StreamEventsRequest, stream grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	ctx := stream.Context()
	types, err := s.checkStream(ctx, req)
	if err != nil {
		return err
	}
	var opts []eventstore.ReadOption
	// erasuresOnly: the customers' subject is read beside the orders asked
	// for, to learn of each erasure in its place in the log (open), and
	// not sent.
	erasuresOnly := false
	if ids := req.GetOrderIds(); len(ids) > 0 {
		for _, id := range ids {
			// The rule every RPC applies, which includes the event
			// store's, checked here to name the field.
			if err := rpcerr.OrderID("order_ids", id); err != nil {
				return err
			}
		}
		if s.keys != nil && !slices.Contains(ids, order.CustomersSubjectID) {
			erasuresOnly = true
			ids = append(slices.Clip(ids), order.CustomersSubjectID)
		}
		opts = append(opts, eventstore.ForOrders(ids...))
	}
	from := req.GetFromPosition()
	var at time.Time // the zero time starts at the beginning
	if t := req.GetFromTime(); t != nil {
		if err := t.CheckValid(); err != nil {
			return rpcerr.Invalid("from_time", "invalid timestamp")
		}
		from = 0
		if at = t.AsTime(); !at.IsZero() {
			opts = append(opts, eventstore.StartTime(at))
		}
	}
	fromStart, err := s.startsTheLog(ctx, from, at)
	if err != nil {
		return err
	}
	legacy := map[string]uint64{}
	if req.GetFollow() {
		// A follow may send nothing for long (a quiet log): its headers
		// say at once that it started, which the REST gateway answers as
		// its status line.
		if err := stream.SendHeader(metadata.MD{}); err != nil {
			return err
		}
	}
	keys := s.readKeys()
	return s.consume(ctx, from, req.GetFollow(), func(e entry) error {
		if erasuresOnly && e.rec.OrderID == order.CustomersSubjectID {
			// Read to drop an erased key (open), not asked for: an
			// undecodable one fails the exports that ask for it.
			if e.err == nil && e.rec.Type == forgottenType {
				_, _ = s.open(ctx, keys, e)
			}
			return nil
		}
		if e.unknown() && len(types) > 0 {
			// The filter names types this build knows: it cannot
			// select a newer build's event, so the stream goes on.
			return nil
		}
		if e.err != nil {
			s.log.WarnContext(ctx, "audit: undecodable message in the log", "position", e.rec.Position, "subject_order_id", e.rec.OrderID, "err", e.err)
			return dataLoss(e)
		}
		version := e.rec.Version
		if version == 0 && fromStart {
			// Written before versions were recorded: such events come
			// first in their order, so counting from the start of the log
			// numbers them.
			legacy[e.rec.OrderID]++
			version = legacy[e.rec.OrderID]
		}
		if len(types) > 0 && !types[e.rec.Type] {
			if e.rec.Type == forgottenType {
				// Filtered out, an erasure still drops its key (open)
				// before the events after it are opened.
				if _, err := s.open(ctx, keys, e); err != nil {
					return s.openFailed(ctx, e, err)
				}
			}
			return nil
		}
		e, err := s.open(ctx, keys, e)
		if err != nil {
			return s.openFailed(ctx, e, err)
		}
		ev, err := recorded(e, version)
		if err != nil {
			return rpcerr.ToStatus(ctx, s.log, err)
		}
		return stream.Send(&ordersv1.StreamEventsResponse{Event: ev})
	}, opts...)
}

// startsTheLog reports whether a read from time at (when not zero), else
// from position from, starts at the log's first message: the zero time
// does, and so does any time not after the time the log stored it, or any
// position not past its position (a log whose first orders were purged
// starts past position 1), or any read of an empty log. Such a read
// numbers the events written before versions were recorded as one from
// position 0 does; they were 0. The first event the read itself meets
// cannot tell: an export of some orders may first meet one far into the
// log.
func (s *Service) startsTheLog(ctx context.Context, from uint64, at time.Time) (bool, error) {
	if at.IsZero() && from <= 1 {
		return true, nil
	}
	for b, err := range s.store.ReadBatches(ctx, 0, eventstore.BatchSize(1)) {
		if err != nil {
			return false, rpcerr.ToStatus(ctx, s.log, err)
		}
		if len(b.Entries) == 0 {
			continue
		}
		first := b.Entries[0]
		if !at.IsZero() {
			return !at.After(first.Time), nil
		}
		return from <= first.Position, nil
	}
	return true, nil
}

// checkStream checks what a StreamEvents request selects and returns its
// event types as a set. A from_position past the log's next one (a
// from_time overrides the position) is OUT_OF_RANGE: no append has
// returned the position before it, and a follow from it would wait in
// silence for events it then skips.
func (s *Service) checkStream(ctx context.Context, req *ordersv1.StreamEventsRequest) (map[string]bool, error) {
	types := map[string]bool{}
	for _, t := range req.GetEventTypes() {
		if !slices.Contains(order.EventTypes, t) {
			return nil, rpcerr.Invalid("event_types", fmt.Sprintf("unknown event type %q", t))
		}
		types[t] = true
	}
	if len(req.GetOrderIds()) > MaxOrderFilter {
		return nil, rpcerr.Invalid("order_ids", "at most 100")
	}
	from := req.GetFromPosition()
	if req.GetFromTime() != nil || from <= 1 {
		return types, nil
	}
	head, err := s.store.Head(ctx)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	if from > head+1 {
		return nil, rpcerr.Field(codes.OutOfRange, "from_position", fmt.Sprintf("position %d is past the next one, %d: no append has returned position %d", from, head+1, from-1))
	}
	return types, nil
}

// consume reads the log from position from, filtered by opts, calling fn
// for each message in log order, decoded or not (see entry). Without follow
// it ends at the log head as of the call (or the UpTo position in opts),
// so that sustained appends cannot keep it going; with follow it ends when
// ctx does.
func (s *Service) consume(ctx context.Context, from uint64, follow bool, fn func(entry) error, opts ...eventstore.ReadOption) error {
	read := s.store.ReadBatches
	if follow {
		read = s.store.FollowBatches
	}
	for b, err := range read(ctx, from, opts...) {
		if err != nil {
			if ctx.Err() != nil { // the client's deadline or cancellation
				return rpcerr.ToStatus(ctx, s.log, ctx.Err())
			}
			return rpcerr.ToStatus(ctx, s.log, err)
		}
		for _, e := range b.Entries {
			if err := fn(entryOf(e)); err != nil {
				return err
			}
		}
	}
	return nil
}

// entryOf is the audit's view of one message of the log.
func entryOf(e eventstore.Entry) entry {
	if e.Err == nil {
		return decoded(e.Recorded)
	}
	return entry{
		rec:    eventstore.Recorded{OrderID: e.OrderID, Position: e.Position, Time: e.Time},
		err:    e.Err,
		hashed: e.Meta.Hash != "" || e.Meta.PrevHash != "",
		why:    "the stored message cannot be decoded as an event (missing or malformed headers)",
	}
}

// check adds e to v and returns the break it causes, if any. An event of
// a type this build does not know is checked as any other. An
// undecodable message (headers or payload) breaks its order's chain, even
// where its hash matches its bytes: as altered when it carries chain
// headers (only the command side writes those, and never an undecodable
// event, so it was changed since), as out of chain when it does not.
func check(v *chain.Verifier, e entry) *chain.Break {
	if e.err == nil || e.unknown() {
		// An unknown type's hash covers its bytes as any other's does.
		return v.Add(e.rec)
	}
	b := v.Add(e.rec) // no hash: a break, unless the order broke before
	if b != nil {
		if e.hashed {
			b.Kind = chain.Altered
		}
		b.Detail = e.why
	}
	return b
}

func breakProto(b *chain.Break) *ordersv1.ChainBreak {
	kind := map[chain.Kind]ordersv1.ChainBreakKind{
		chain.Missing: ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_MISSING, chain.Altered: ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED,
		chain.OutOfChain: ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN,
	}[b.Kind]
	return &ordersv1.ChainBreak{Position: b.Position, Version: b.Version, Kind: kind, Detail: b.Detail}
}

// VerifyOrder checks one order's hash chain. A message of the order that
// cannot be decoded as an event is a break at its position.
func (s *Service) VerifyOrder(ctx context.Context, req *ordersv1.VerifyOrderRequest) (*ordersv1.VerifyOrderResponse, error) {
	id := req.GetOrderId()
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	var entries []entry
	recs, err := s.store.LoadLatest(ctx, id)
	switch {
	case errors.Is(err, eventstore.ErrMalformedEvent):
		// Read the order message by message, so the verdict can point at
		// the one that does not decode.
		if entries, err = s.scanOrder(ctx, id); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	default:
		entries = make([]entry, len(recs))
		for i, r := range recs {
			entries[i] = decoded(r)
		}
	}
	if len(entries) == 0 {
		return nil, status.Error(codes.NotFound, "order not found")
	}
	res := &ordersv1.VerifyOrderResponse{OrderId: id, Ok: true}
	v := chain.NewVerifier()
	for _, e := range entries {
		if b := check(v, e); b != nil {
			res.Ok, res.FirstBreak = false, breakProto(b)
			break
		}
	}
	// The events read up to the first break, as VerifyLog counts them.
	res.EventsChecked = v.Events(id)
	return res, nil
}

// VerifyLog checks every order's chain over the whole log, up to its head
// as of the call, streaming progress, each broken order, and a summary
// last. A message that cannot be decoded as an event breaks the chain of
// the order its subject names, at its position.
func (s *Service) VerifyLog(_ *ordersv1.VerifyLogRequest, stream grpc.ServerStreamingServer[ordersv1.VerifyLogResponse]) error {
	ctx := stream.Context()
	head, err := s.store.Head(ctx)
	if err != nil {
		return rpcerr.ToStatus(ctx, s.log, err)
	}
	v := chain.NewVerifier()
	prog := &ordersv1.VerifyLogProgress{Head: head}
	lastSent := time.Now()
	send := func(r *ordersv1.VerifyLogResponse) error { return stream.Send(r) }
	if head > 0 {
		err = s.consume(ctx, 0, false, func(e entry) error {
			prog.EventsChecked++
			prog.Position = e.rec.Position
			if b := check(v, e); b != nil {
				prog.OrdersBroken++
				if err := send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Broken{Broken: &ordersv1.VerifyOrderResponse{
					OrderId: b.OrderID, Ok: false, EventsChecked: v.Events(b.OrderID), FirstBreak: breakProto(b),
				}}}); err != nil {
					return err
				}
			}
			if prog.EventsChecked%progressEvery == 0 || time.Since(lastSent) > 500*time.Millisecond {
				lastSent = time.Now()
				prog.OrdersChecked = uint64(v.Orders())
				return send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Progress{Progress: cloneProgress(prog)}})
			}
			return nil
		}, eventstore.UpTo(head))
		if err != nil {
			return err
		}
	}
	prog.OrdersChecked = uint64(v.Orders())
	return send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Summary{Summary: prog}})
}

func cloneProgress(p *ordersv1.VerifyLogProgress) *ordersv1.VerifyLogProgress {
	return &ordersv1.VerifyLogProgress{EventsChecked: p.EventsChecked, OrdersChecked: p.OrdersChecked, OrdersBroken: p.OrdersBroken, Position: p.Position, Head: p.Head}
}
