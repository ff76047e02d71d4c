// Package query implements OrderQueryService and OrderAdminService on the
// projections' read model.
//
// Read-your-writes: a request's consistency.min_position makes the query
// wait, up to max_wait (default 2s, clamped to 10s), for the projection to
// reach it: a point read of an order (GetOrder, WatchOrder's start) for
// the position it has applied, anything else for the one it has
// committed. If it does not, or a point read finds the position lost again
// (a failed commit abandons what was applied), the answer is UNAVAILABLE
// with a message saying the read model is behind — never stale data
// presented as fresh. Every response carries the position its answer is
// current at: applied for a point read, committed for the rest.
//
// Watches (WatchOrder, WatchOrders) follow the projection's feed of
// committed changes (WithFeed), never the SQLite file: a watcher subscribes
// first, then reads its starting point (the order's current state from the
// read model, the feed's recent history, or for WatchOrder the order's
// events from the log), and skips every live change at or below the
// position it has sent, so a resumed watch has no gap and no duplicate. A
// watcher whose buffer (WithWatchBuffer) overflows is ended with
// RESOURCE_EXHAUSTED naming the position to resume from.
package query

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Limits of the query API.
const (
	DefaultWait     = 2 * time.Second
	MaxWait         = 10 * time.Second
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Projection is what the services need of the projection runner. WaitFor
// waits for a position applied, which point reads of an order reflect;
// WaitForCommitted for one committed, which lists, summaries and the feed
// reflect (see projections.Runner).
type Projection interface {
	ReadModel() *projections.ReadModel
	WaitFor(ctx context.Context, position uint64) error
	WaitForCommitted(ctx context.Context, position uint64) error
	Position() uint64
}

// Service implements ordersv1.OrderQueryServiceServer.
type Service struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	p       Projection
	log     *slog.Logger
	feed    *projections.Feed
	history History
	head    Head
	keys    convert.Keyring
	buffer  int
	// progress: see WithWatchProgress.
	progress time.Duration
	// erased is the customers' subject as resuming watches last read it.
	erased erasures
}

// New returns a query service reading p's read model; a nil log logs to
// slog.Default(). It fails with an error wrapping ErrInvalidOption when an
// option is invalid.
func New(p Projection, log *slog.Logger, opts ...Option) (*Service, error) {
	s := &Service{p: p, log: rpcerr.DefaultLogger(log), buffer: DefaultWatchBuffer, progress: DefaultWatchProgress}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// answerMargin is the most of a caller's deadline a wait for min_position
// leaves for the answer (a quarter of it when that is less): the read of
// the log's head that tells OUT_OF_RANGE from UNAVAILABLE, one round trip
// to NATS.
const answerMargin = 250 * time.Millisecond

// errBehind is the answer when min_position is not reached in time.
var errBehind = status.Error(codes.Unavailable, "read model is behind the requested position; retry later")

// await waits for the requested position with until, the projection's
// WaitFor or WaitForCommitted as the read needs.
func (s *Service) await(ctx context.Context, c *ordersv1.Consistency, until func(context.Context, uint64) error) error {
	return s.awaitField(ctx, c, "consistency.min_position", until)
}

// awaitField is await for c's min_position taken from the request field
// field, which an answer of OUT_OF_RANGE names.
func (s *Service) awaitField(ctx context.Context, c *ordersv1.Consistency, field string, until func(context.Context, uint64) error) error {
	// Checked with or without a position to wait for: the same value
	// must not be refused in one request and ignored in another.
	d := c.GetMaxWait()
	if d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
		return rpcerr.Invalid("consistency.max_wait", "must be a non-negative duration")
	}
	if c.GetMinPosition() == 0 {
		return nil
	}
	wait := DefaultWait
	if d != nil && d.AsDuration() > 0 {
		wait = min(d.AsDuration(), MaxWait)
	}
	if dl, ok := ctx.Deadline(); ok {
		// The wait ends before the caller's deadline, leaving it the time
		// to learn why it was not met: a caller whose deadline is under
		// max_wait was answered DEADLINE_EXCEEDED, which it may retry for
		// ever, where the answer is OUT_OF_RANGE, or UNAVAILABLE.
		left := time.Until(dl)
		if left -= min(left/4, answerMargin); left < wait {
			wait = left
		}
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := until(wctx, c.GetMinPosition()); err != nil {
		if ctx.Err() != nil {
			return rpcerr.ToStatus(ctx, s.log, ctx.Err())
		}
		return s.behind(ctx, field, c.GetMinPosition())
	}
	return nil
}

// behind says why min, from the request field field, was not reached in
// time: the read model is behind (UNAVAILABLE), or, when the log's head is
// known (WithHead) and below min, no append has returned min yet
// (OUT_OF_RANGE), which a retry does not mend. Every position an append
// returned is at or below the head, so reading the head only after the
// wait costs nothing on the usual path. A head that cannot be read leaves
// the answer UNAVAILABLE.
func (s *Service) behind(ctx context.Context, field string, min uint64) error {
	if err := s.beyondHead(ctx, field, min); err != nil {
		return err
	}
	return errBehind
}

// beyondHead answers OUT_OF_RANGE for the request field holding position
// when the log's head is known (WithHead) and below it, and nil otherwise
// (no head, or one that cannot be read now).
func (s *Service) beyondHead(ctx context.Context, field string, position uint64) error {
	if s.head == nil {
		return nil
	}
	if head, err := s.head.Head(ctx); err == nil && position > head {
		return rpcerr.Field(codes.OutOfRange, field, fmt.Sprintf("position %d is past the log's last position %d: no append has returned it", position, head))
	}
	return nil
}

func validID(field, id string) error {
	// An id no command could have accepted is a caller's mistake, not an
	// order that is merely absent.
	return rpcerr.ID(field, id)
}

// GetOrder returns one order; NOT_FOUND when the read model has none.
func (s *Service) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	if err := rpcerr.OrderID("order_id", req.GetOrderId()); err != nil {
		return nil, err
	}
	if err := s.await(ctx, req.GetConsistency(), s.p.WaitFor); err != nil {
		return nil, err
	}
	o, pos, err := s.p.ReadModel().OrderWire(ctx, req.GetOrderId())
	if err := s.pointReadError(ctx, err, pos, req.GetConsistency()); err != nil {
		return nil, err
	}
	res := &ordersv1.GetOrderResponse{Position: pos}
	res.ProtoReflect().SetUnknown(orderFields(getOrderResponseOrder, o))
	return res, nil
}

// The response fields that carry orders, which GetOrder and ListOrders
// fill with orders the read model encoded (see orderFields).
var (
	getOrderResponseOrder   = (&ordersv1.GetOrderResponse{}).ProtoReflect().Descriptor().Fields().ByName("order").Number()
	listOrdersResponseOrder = (&ordersv1.ListOrdersResponse{}).ProtoReflect().Descriptor().Fields().ByName("orders").Number()
)

// orderFields encodes orders, each an Order as the read model encoded it,
// as fields num of a response, to be set as its raw fields: the orders
// are encoded once, by the read model, and not parsed and encoded again
// here. Clients, the REST gateway among them, read the response as any
// other; on this side its orders are not set.
func orderFields(num protowire.Number, orders ...[]byte) protoreflect.RawFields {
	n := 0
	for _, o := range orders {
		n += protowire.SizeTag(num) + protowire.SizeBytes(len(o))
	}
	b := make([]byte, 0, n)
	for _, o := range orders {
		b = protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), o)
	}
	return b
}

// readOrder is a point read of one order after its wait (await with
// WaitFor): the stored message, nothing folded or converted, and the
// position it is current at. Its errors are pointReadError's.
func (s *Service) readOrder(ctx context.Context, id string, c *ordersv1.Consistency) (*ordersv1.Order, uint64, error) {
	o, pos, err := s.p.ReadModel().GetOrderMessage(ctx, id)
	if err := s.pointReadError(ctx, err, pos, c); err != nil {
		return nil, 0, err
	}
	return o, pos, nil
}

// pointReadError is the RPC's answer to a point read of one order that
// returned err at pos, or nil to answer with what it read: NOT_FOUND, and
// UNAVAILABLE when the read finds the read model below the min_position
// the wait ended on (the projection applied it, then lost it with a failed
// commit), so that the older state is never the answer.
func (s *Service) pointReadError(ctx context.Context, err error, pos uint64, c *ordersv1.Consistency) error {
	switch {
	case (err == nil || errors.Is(err, projections.ErrOrderNotFound)) && pos < c.GetMinPosition():
		return errBehind
	case errors.Is(err, projections.ErrOrderNotFound):
		return status.Error(codes.NotFound, "order not found")
	case err != nil:
		return rpcerr.ToStatus(ctx, s.log, err)
	}
	return nil
}

// pageToken is the opaque keyset cursor: the last order's creation time
// (C), its seq in the read model (S, the log position that created it) and
// id (I). F binds it to the filters it was issued for. A token without S
// was issued before the read model numbered its orders; the list then
// finds the seq by the id. So does one whose order's seq is below 1: a row
// migrated into schema 4 keeps a number of its own file's until a rebuild
// (projections' migrations), which another query node, or this one after a
// rebuild, numbers by its log position, and paging on by the number would
// skip or repeat the orders that share its creation time.
type pageToken struct {
	C int64  `json:"c"`
	S *int64 `json:"s,omitempty"`
	I string `json:"i"`
	F string `json:"f"`
}

// filterHash identifies the filters a page token was issued for: the
// request's customer and status, and the creation-time bounds as they
// apply (f.TimeBounds, so no out-of-range time overflows; a bound that
// bounds nothing hashes as 0, like an absent one). A bound at the Unix
// epoch, also 0, is told apart by a marker after the bounds, which leaves
// the hash of every other filter as tokens already carry it.
func filterHash(req *ordersv1.ListOrdersRequest, f projections.ListFilter) string {
	after, before := f.TimeBounds()
	var epoch byte
	switch after {
	case math.MinInt64:
		after = 0
	case 0:
		epoch |= 1
	}
	switch before {
	case math.MaxInt64:
		before = 0
	case 0:
		epoch |= 2
	}
	h := sha256.New()
	h.Write([]byte(req.GetCustomerId()))
	h.Write([]byte{0})
	_ = binary.Write(h, binary.BigEndian, int32(req.GetStatus()))
	_ = binary.Write(h, binary.BigEndian, after)
	_ = binary.Write(h, binary.BigEndian, before)
	if epoch != 0 {
		h.Write([]byte{'e', epoch})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

func encodeToken(c projections.Cursor, f string) string {
	t := pageToken{C: c.CreatedAt, I: c.ID, F: f}
	if c.HasSeq && c.Seq > 0 {
		t.S = &c.Seq
	}
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s, f string) (*projections.Cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 512 {
		return nil, rpcerr.Invalid("page_token", "malformed")
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil || t.I == "" {
		return nil, rpcerr.Invalid("page_token", "malformed")
	}
	if t.F != f {
		return nil, rpcerr.Invalid("page_token", "was issued for different filters")
	}
	c := &projections.Cursor{CreatedAt: t.C, ID: t.I}
	if t.S != nil && *t.S > 0 {
		c.Seq, c.HasSeq = *t.S, true
	}
	return c, nil
}

// ListOrders returns one page of orders, newest first.
func (s *Service) ListOrders(ctx context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	f := projections.ListFilter{CustomerID: req.GetCustomerId()}
	if f.CustomerID != "" {
		if err := validID("customer_id", f.CustomerID); err != nil {
			return nil, err
		}
	}
	if req.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		st, ok := convert.StatusFromProto(req.GetStatus())
		if !ok {
			return nil, rpcerr.Invalid("status", "unknown status")
		}
		f.Status = st
	}
	if t := req.GetCreatedAfter(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, rpcerr.Invalid("created_after", "invalid timestamp")
		}
		f.CreatedAfter = t.AsTime()
	}
	if t := req.GetCreatedBefore(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, rpcerr.Invalid("created_before", "invalid timestamp")
		}
		f.CreatedBefore = t.AsTime()
		if f.CreatedBefore.IsZero() {
			// 0001-01-01T00:00:00Z, the earliest valid timestamp, is Go's
			// zero time, which ListFilter reads as no bound: a nanosecond
			// later is as far before anything stored, and bounds.
			f.CreatedBefore = f.CreatedBefore.Add(time.Nanosecond)
		}
	}
	if req.GetCreatedAfter() != nil && req.GetCreatedBefore() != nil && !req.GetCreatedAfter().AsTime().Before(req.GetCreatedBefore().AsTime()) {
		return nil, rpcerr.Invalid("created_before", "must be after created_after")
	}
	size, err := rpcerr.Limit("page_size", req.GetPageSize(), DefaultPageSize, MaxPageSize)
	if err != nil {
		return nil, err
	}
	fh := filterHash(req, f)
	cursor, err := decodeToken(req.GetPageToken(), fh)
	if err != nil {
		return nil, err
	}
	if err := s.await(ctx, req.GetConsistency(), s.p.WaitForCommitted); err != nil {
		return nil, err
	}
	orders, cursors, pos, err := s.p.ReadModel().ListOrderWire(ctx, f, cursor, size+1)
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	res := &ordersv1.ListOrdersResponse{Position: pos}
	if n := rpcerr.Fit(min(len(orders), size), func(i int) int { return len(orders[i]) }); n < len(orders) {
		res.NextPageToken = encodeToken(cursors[n-1], fh)
		orders = orders[:n]
	}
	res.ProtoReflect().SetUnknown(orderFields(listOrdersResponseOrder, orders...))
	return res, nil
}

// GetCustomerSummary returns a customer's summary; an unknown customer has
// an empty one.
func (s *Service) GetCustomerSummary(ctx context.Context, req *ordersv1.GetCustomerSummaryRequest) (*ordersv1.GetCustomerSummaryResponse, error) {
	if err := validID("customer_id", req.GetCustomerId()); err != nil {
		return nil, err
	}
	if err := s.await(ctx, req.GetConsistency(), s.p.WaitForCommitted); err != nil {
		return nil, err
	}
	sum, pos, err := s.p.ReadModel().GetCustomerSummary(ctx, req.GetCustomerId())
	if err != nil {
		return nil, rpcerr.ToStatus(ctx, s.log, err)
	}
	out := &ordersv1.CustomerSummary{CustomerId: sum.CustomerID}
	for st := order.StatusDraft; st <= order.StatusCancelled; st++ {
		if n := sum.ByStatus[st]; n > 0 {
			out.OrdersByStatus = append(out.OrdersByStatus, &ordersv1.StatusCount{Status: convert.StatusToProto(st), Count: n})
			out.OrderCount += n
		}
	}
	for cur, amt := range sum.Spend {
		out.LifetimeSpend = append(out.LifetimeSpend, &ordersv1.Money{Currency: cur, Amount: amt})
	}
	sortMoney(out.LifetimeSpend)
	return &ordersv1.GetCustomerSummaryResponse{Summary: out, Position: pos}, nil
}

func sortMoney(m []*ordersv1.Money) {
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && m[j].GetCurrency() < m[j-1].GetCurrency(); j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
}
