// Package audit implements OrderAuditService: order history, state at any
// point in time, log export and hash-chain verification, all read from the
// event log itself, never from a read model.
package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/convert"
	"github.com/orderstream/orderstream/services/rpcerr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	Load(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	Head(ctx context.Context) (uint64, error)
	StreamName() string
	SubjectPrefix() string
	Subject(orderID string) string
}

// Service implements ordersv1.OrderAuditServiceServer.
type Service struct {
	ordersv1.UnimplementedOrderAuditServiceServer
	store Store
	js    jetstream.JetStream
	log   *slog.Logger
}

// New returns the audit service. js reads the log with ordered consumers
// for exports.
func New(store Store, js jetstream.JetStream, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, js: js, log: log}
}

// traceID extracts the trace id from a W3C traceparent value.
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) == 4 && len(parts[1]) == 32 {
		return parts[1]
	}
	return ""
}

// recorded converts one stored event for the API; version is its index in
// its order from 1, or 0 where unknown.
func recorded(r eventstore.Recorded, version uint32) (*ordersv1.RecordedEvent, error) {
	out := &ordersv1.RecordedEvent{
		Position: r.Position, OrderId: r.OrderID, Version: version, Type: r.Type,
		OccurredAt: convert.Timestamp(r.Meta.OccurredAt), RecordedAt: convert.Timestamp(r.Time),
		Actor: r.Meta.Actor, RequestId: r.Meta.RequestID, CorrelationId: r.Meta.CorrelationID,
		CausationId: r.Meta.CausationID, TraceId: traceID(r.Meta.TraceParent), Hash: r.Meta.Hash,
	}
	ev, err := convert.DecodeEvent(r.Type, r.Data)
	if err != nil {
		// The envelope is still history worth showing; the payload is
		// left empty rather than hiding the event.
		return out, nil
	}
	out.Event, err = convert.EventToProto(ev)
	return out, err
}

func validOrderID(id string) error {
	if id == "" {
		return rpcerr.Invalid("order_id", "required")
	}
	if len(id) > order.MaxIDLen {
		return rpcerr.Invalid("order_id", "must be 1-64 characters")
	}
	return nil
}

func (s *Service) load(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	if err := validOrderID(id); err != nil {
		return nil, err
	}
	recs, err := s.store.Load(ctx, id)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	if len(recs) == 0 {
		return nil, status.Error(codes.NotFound, "order not found")
	}
	return recs, nil
}

// GetOrderHistory returns an order's events oldest first, paged by an
// opaque token holding the index of the next event.
func (s *Service) GetOrderHistory(ctx context.Context, req *ordersv1.GetOrderHistoryRequest) (*ordersv1.GetOrderHistoryResponse, error) {
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = DefaultHistoryPage
	case size < 0 || size > MaxHistoryPage:
		return nil, rpcerr.Invalid("page_size", "must be between 1 and 1000")
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
	for i := start; i < end; i++ {
		ev, err := recorded(recs[i], uint32(i+1))
		if err != nil {
			return nil, rpcerr.ToStatus(ctx, s.log, err)
		}
		res.Events = append(res.Events, ev)
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

// GetOrderAt folds an order's history up to a version or a time.
func (s *Service) GetOrderAt(ctx context.Context, req *ordersv1.GetOrderAtRequest) (*ordersv1.GetOrderAtResponse, error) {
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
	for i, r := range recs {
		if !upto(i, r) {
			break
		}
		ev, err := convert.DecodeEvent(r.Type, r.Data)
		if err != nil {
			return nil, rpcerr.ToStatus(ctx, s.log, fmt.Errorf("order %s at %d: %w", r.OrderID, r.Position, err))
		}
		st = order.Evolve(st, ev, r.Meta.OccurredAt)
		last = i
	}
	if last < 0 {
		return nil, status.Error(codes.NotFound, "the order did not exist at that time")
	}
	le, err := recorded(recs[last], uint32(last+1))
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	return &ordersv1.GetOrderAtResponse{Order: convert.OrderToProto(st, recs[last].Position), LastEvent: le}, nil
}

// StreamEvents streams the log, filtered, to the head or live.
func (s *Service) StreamEvents(req *ordersv1.StreamEventsRequest, stream grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	ctx := stream.Context()
	types := map[string]bool{}
	for _, t := range req.GetEventTypes() {
		if !slices.Contains(order.EventTypes, t) {
			return rpcerr.Invalid("event_types", fmt.Sprintf("unknown event type %q", t))
		}
		types[t] = true
	}
	if len(req.GetOrderIds()) > MaxOrderFilter {
		return rpcerr.Invalid("order_ids", "at most 100")
	}
	subjects := []string{s.store.SubjectPrefix() + ".*"}
	if ids := req.GetOrderIds(); len(ids) > 0 {
		subjects = subjects[:0]
		for _, id := range ids {
			if err := validOrderID(id); err != nil || strings.ContainsAny(id, ".*> \t") {
				return rpcerr.Invalid("order_ids", fmt.Sprintf("invalid order id %q", id))
			}
			subjects = append(subjects, s.store.Subject(id))
		}
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy}
	if t := req.GetFromTime(); t != nil {
		if err := t.CheckValid(); err != nil {
			return rpcerr.Invalid("from_time", "invalid timestamp")
		}
		at := t.AsTime()
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &at
	} else if p := req.GetFromPosition(); p > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, p
	}
	head, err := s.store.Head(ctx)
	if err != nil {
		return rpcerr.ToStatus(ctx, s.log, err)
	}
	if head == 0 && !req.GetFollow() {
		return nil
	}
	return s.consume(ctx, cfg, req.GetFollow(), func(r eventstore.Recorded) error {
		if len(types) > 0 && !types[r.Type] {
			return nil
		}
		ev, err := recorded(r, 0)
		if err != nil {
			return err
		}
		return stream.Send(&ordersv1.StreamEventsResponse{Event: ev})
	})
}

// consume reads with an ordered consumer until nothing is pending (or, with
// follow, until ctx ends), calling fn for each event in log order.
func (s *Service) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, follow bool, fn func(eventstore.Recorded) error) error {
	cons, err := s.js.OrderedConsumer(ctx, s.store.StreamName(), cfg)
	if err != nil {
		return rpcerr.ToStatus(ctx, s.log, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err))
	}
	// An empty selection would never deliver: ask how much there is first.
	info, err := cons.Info(ctx)
	if err == nil && info.NumPending == 0 && !follow {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000),
		// Notice a stream leader change within seconds when following.
		jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return rpcerr.ToStatus(ctx, s.log, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err))
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				if follow {
					return nil
				}
				return rpcerr.ToStatus(ctx, s.log, ctx.Err())
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return rpcerr.ToStatus(ctx, s.log, fmt.Errorf("%w: %v", eventstore.ErrUnavailable, err))
		}
		md, _ := m.Metadata()
		rec, derr := eventstore.DecodeMsg(m, s.store.SubjectPrefix())
		if derr == nil {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if !follow && md != nil && md.NumPending == 0 {
			return nil
		}
	}
}

func breakProto(b *chain.Break) *ordersv1.ChainBreak {
	kind := map[chain.Kind]ordersv1.ChainBreakKind{
		chain.Missing: ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_MISSING, chain.Altered: ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED,
		chain.OutOfChain: ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN,
	}[b.Kind]
	return &ordersv1.ChainBreak{Position: b.Position, Version: b.Version, Kind: kind, Detail: b.Detail}
}

// VerifyOrder checks one order's hash chain.
func (s *Service) VerifyOrder(ctx context.Context, req *ordersv1.VerifyOrderRequest) (*ordersv1.VerifyOrderResponse, error) {
	recs, err := s.load(ctx, req.GetOrderId())
	if err != nil {
		return nil, err
	}
	res := &ordersv1.VerifyOrderResponse{OrderId: req.GetOrderId(), Ok: true, EventsChecked: uint32(len(recs))}
	if b := chain.Verify(recs); b != nil {
		res.Ok, res.FirstBreak = false, breakProto(b)
	}
	return res, nil
}

// VerifyLog checks every order's chain over the whole log, streaming
// progress, each broken order, and a summary last.
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
		err = s.consume(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.store.SubjectPrefix() + ".*"}}, false, func(r eventstore.Recorded) error {
			prog.EventsChecked++
			prog.Position = r.Position
			if b := v.Add(r); b != nil {
				prog.OrdersBroken++
				if err := send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Broken{Broken: &ordersv1.VerifyOrderResponse{
					OrderId: b.OrderID, Ok: false, EventsChecked: b.Version, FirstBreak: breakProto(b),
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
		})
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
