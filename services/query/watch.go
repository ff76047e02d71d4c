package query

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// DefaultWatchBuffer is how many changes a watcher may fall behind before
// it is ended with RESOURCE_EXHAUSTED, unless WithWatchBuffer says
// otherwise: judged as each commit comes, so that a commit larger than the
// buffer reaches a watcher that was keeping up whole
// (projections.ErrOverflow).
const DefaultWatchBuffer = 256

// DefaultWatchProgress is how long a watch (WatchOrder or WatchOrders)
// sends nothing before it sends the position it has sent every matching change up to, unless
// WithWatchProgress says otherwise: below the idle timeouts of common
// proxies (60 s), which would otherwise close a quiet newline-delimited
// JSON stream, and the Server-Sent Events heartbeat's 15 s.
const DefaultWatchProgress = 15 * time.Second

// History reads one order's events back from the log, for a watcher
// resuming from a position the feed no longer holds. It reads with every
// acknowledged event (eventstore's LoadLatest), not from whichever replica
// answers first: the watch follows the feed from the position it
// subscribed at, so a history that stopped short of it, as a lagging
// replica's may, would leave a gap the watcher never learns of.
type History interface {
	LoadLatest(ctx context.Context, orderID string) ([]eventstore.Recorded, error)
	// LoadLatestAfter is LoadLatest of the events after afterPosition.
	LoadLatestAfter(ctx context.Context, orderID string, afterPosition uint64) ([]eventstore.Recorded, error)
}

// Option configures a Service. An option given a value it does not accept
// makes New fail with an error wrapping ErrInvalidOption; each option says
// which values those are.
type Option func(*Service) error

// ErrInvalidOption reports an option of New given a value it does not
// accept.
var ErrInvalidOption = errors.New("query: invalid option")

// WithFeed serves WatchOrder and WatchOrders from feed, which the
// projection runner publishes its committed changes to. Without it they
// answer UNIMPLEMENTED. Invalid: nil.
func WithFeed(feed *projections.Feed) Option {
	return func(s *Service) error {
		if feed == nil {
			return fmt.Errorf("%w: WithFeed(nil)", ErrInvalidOption)
		}
		s.feed = feed
		return nil
	}
}

// WithHistory lets WatchOrder resume from positions older than the feed's
// history, reading the order's events from h. Invalid: nil.
func WithHistory(h History) Option {
	return func(s *Service) error {
		if h == nil {
			return fmt.Errorf("%w: WithHistory(nil)", ErrInvalidOption)
		}
		s.history = h
		return nil
	}
}

// WithHead lets the service tell a position the log has not reached from
// a read model that is behind, reading the log's head from h: a read whose
// consistency.min_position is not reached in time answers OUT_OF_RANGE
// instead of UNAVAILABLE when the position is past the head (no append has
// returned it, so retrying cannot help), and a watch resumed from a
// from_position past it is refused with OUT_OF_RANGE instead of waiting
// for ever. Invalid: nil.
func WithHead(h Head) Option {
	return func(s *Service) error {
		if h == nil {
			return fmt.Errorf("%w: WithHead(nil)", ErrInvalidOption)
		}
		s.head = h
		return nil
	}
}

// WithKeyring opens sealed personal data in the history a resuming watch
// reads (WithHistory); without it that data reads as erased. Invalid: nil.
func WithKeyring(keys convert.Keyring) Option {
	return func(s *Service) error {
		if keys == nil {
			return fmt.Errorf("%w: WithKeyring(nil)", ErrInvalidOption)
		}
		s.keys = keys
		return nil
	}
}

// WithWatchBuffer sets how many changes a watcher may fall behind (default
// DefaultWatchBuffer). Invalid: n < 1.
func WithWatchBuffer(n int) Option {
	return func(s *Service) error {
		if n < 1 {
			return fmt.Errorf("%w: WithWatchBuffer(%d): must be at least 1", ErrInvalidOption, n)
		}
		s.buffer = n
		return nil
	}
}

// WithWatchProgress sets how long a watch (WatchOrder or WatchOrders)
// sends nothing before it sends a message of no order, with the position it
// has sent every change it follows up to (default DefaultWatchProgress). Invalid: d <= 0.
func WithWatchProgress(d time.Duration) Option {
	return func(s *Service) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithWatchProgress(%v): must be positive", ErrInvalidOption, d)
		}
		s.progress = d
		return nil
	}
}

var errNoWatch = status.Error(codes.Unimplemented, "watching is not served by this node")

// awaitLiveFeed waits, for a watch of orders from now, until a runner runs
// the feed: before that (a node starting, its read model catching up, in
// bulk perhaps) the feed knows no position, and the watch's first message
// would say 0 and the watch be ended with OUT_OF_RANGE (list again) as the
// feed starts at the read model's checkpoint. The watch is taken on first
// (headed: its headers sent), so that a client waiting for that does not
// give up on a node that is only starting.
func (s *Service) awaitLiveFeed(stream grpc.ServerStream) (headed bool, err error) {
	live := s.feed.Live()
	select {
	case <-live:
		return false, nil
	default:
	}
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return false, err
	}
	select {
	case <-live:
		return true, nil
	case <-stream.Context().Done():
		return true, status.FromContextError(stream.Context().Err()).Err()
	}
}

// watchSender is what both watch RPCs send: one message per change.
type watchSender[M any] struct {
	stream grpc.ServerStreamingServer[M]
	build  func(*projections.Change) *M
	// sent is the position of the last change sent (or the position the
	// watch started after), and sentOrder that change's order: the client
	// resumes from sent, so a change below it is never sent again, nor
	// sentOrder's at it. One position carries several changes only for an
	// erasure, which changes each of a customer's orders once, in a row:
	// the last order sent is all there is to tell them apart.
	sent      uint64
	sentOrder string
	// restarted, when set, is the error that ends the watch when the
	// feed restarted ahead of it (projections.ErrFeedRestarted): for a
	// watch that cannot resume across the changes it missed. Without it
	// the watch is told to resume from sent.
	restarted error
	// sub is the watch's subscription, through which every change is
	// sent (Fresh), the backlog's included.
	sub *projections.Subscription
	// mark, when set, builds a message of no change that tells the
	// client to resume from position: sent when the feed stopped (its
	// node shutting down) past the last change sent, for a watch that
	// could not resume from that change once the node restarted, and
	// after every progress (when set) without a message sent, with the
	// position the watch has sent everything up to.
	mark     func(position uint64) *M
	progress time.Duration
}

func (w *watchSender[M]) send(c *projections.Change) error {
	if c.Position < w.sent {
		return nil
	}
	c, ok := w.sub.Fresh(c)
	if !ok {
		// Held through more erasures than the feed remembers: resumed,
		// the watch reads it erased, if its customer's was among them.
		return w.fellBehind()
	}
	if c.Position == w.sent && c.OrderID == w.sentOrder {
		return nil
	}
	if err := w.stream.Send(w.build(c)); err != nil {
		return err
	}
	w.sentAt(c.Position, c.OrderID)
	return nil
}

// fellBehind ends a watch that fell behind what it may hold, telling the
// client where to resume.
func (w *watchSender[M]) fellBehind() error {
	return status.Errorf(codes.ResourceExhausted, "watcher fell behind the changes; resume from position %d", w.sent)
}

// sentAt records that the change of order id at position was sent (id
// empty: the watch's starting point, no order's change).
func (w *watchSender[M]) sentAt(position uint64, id string) {
	w.sent, w.sentOrder = position, id
}

// follow sends the subscription's changes until the client leaves or the
// feed ends the subscription: then, after the changes it had buffered, the
// watcher is ended with RESOURCE_EXHAUSTED, naming the position to resume
// from, or with UNAVAILABLE when the feed stopped.
func (w *watchSender[M]) follow(ctx context.Context, sub *projections.Subscription) error {
	// quiet fires once the watch has sent nothing for w.progress: it is
	// set again after every change taken and every position sent.
	var quiet *time.Timer
	var tick <-chan time.Time
	if w.mark != nil && w.progress > 0 {
		quiet = time.NewTimer(w.progress)
		defer quiet.Stop()
		tick = quiet.C
	}
	for {
		select {
		case c := <-sub.C():
			if err := w.send(c); err != nil {
				return err
			}
			if quiet != nil {
				quiet.Reset(w.progress)
			}
		case <-tick:
			// A watch of a few orders sends nothing while the others
			// change: a proxy would close the idle stream, and its
			// client, resumed from its last change, would be refused
			// once that fell out of the feed's history. Sent again
			// on a quiet log, the same position keeps the stream busy.
			if at, ok := sub.Caught(); ok && at >= w.sent {
				if err := w.sendMark(at); err != nil {
					return err
				}
			}
			quiet.Reset(w.progress)
		case <-sub.Done():
			return w.ended(sub)
		case <-ctx.Done():
			if sub.Err() != nil {
				// A shutdown stops the runner, which ends the
				// subscription, before it ends the streams: the
				// subscription's ending says where to resume.
				return w.ended(sub)
			}
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// sendMark sends the message of no change that tells the client to
// resume from position (mark), and records it as sent.
func (w *watchSender[M]) sendMark(position uint64) error {
	if err := w.stream.Send(w.mark(position)); err != nil {
		return err
	}
	w.sentAt(position, "")
	return nil
}

// ended sends the changes sub buffered before the feed ended it, and
// returns the error that ends the watch.
func (w *watchSender[M]) ended(sub *projections.Subscription) error {
	for drained := false; !drained; {
		select {
		case c := <-sub.C():
			if err := w.send(c); err != nil {
				return err
			}
		default:
			drained = true
		}
	}
	switch err := sub.Err(); {
	case errors.Is(err, projections.ErrFeedStopped):
		if at, ok := sub.StoppedAt(); ok && w.mark != nil && at > w.sent {
			if err := w.sendMark(at); err != nil {
				return err
			}
		}
		// "retry", as every UNAVAILABLE a service chooses to send says:
		// the REST gateway passes on only those (httpapi's
		// serviceUnavailable), and took this one for a failed connection
		// of its own, answering its own text in place of the position.
		return status.Errorf(codes.Unavailable, "the read model stopped (the server is shutting down); retry, and resume from position %d", w.sent)
	case errors.Is(err, projections.ErrFeedRestarted):
		if w.restarted != nil {
			return w.restarted
		}
		return status.Errorf(codes.ResourceExhausted, "the read model caught up past changes the watch did not see; resume from position %d", w.sent)
	}
	return w.fellBehind()
}

// pastHead refuses a watch resumed from a position past the log's head
// (WithHead) with OUT_OF_RANGE: the feed would wait, silently and for
// ever, for a change no append has made. Only a position past what the
// feed has published (a node whose read model is behind, or such a
// position) costs the read of the head.
func (s *Service) pastHead(ctx context.Context, from, published uint64) error {
	if from <= published {
		return nil
	}
	return s.beyondHead(ctx, "from_position", from)
}

// resumeAfter is the position a watch asks the feed's history from: from
// when it resumes, none when it starts from now (or the current state).
func resumeAfter(from uint64, resume bool) uint64 {
	if !resume {
		return math.MaxUint64
	}
	return from
}

func changeToProto(c *projections.Change) *ordersv1.Order {
	return convert.OrderToProto(c.State)
}

// WatchOrder streams one order's changes; see the RPC's documentation.
func (s *Service) WatchOrder(req *ordersv1.WatchOrderRequest, stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	if err := rpcerr.OrderID("order_id", req.GetOrderId()); err != nil {
		return err
	}
	if s.feed == nil {
		return errNoWatch
	}
	ctx := stream.Context()
	if err := s.await(ctx, req.GetConsistency(), s.p.WaitFor); err != nil {
		return err
	}
	id, from := req.GetOrderId(), req.GetFromPosition()
	// Subscribed before the read model or the log is read, so nothing
	// committed after those reads can be missed.
	sub, published, backlog, kept := s.feed.Subscribe(id, nil, s.buffer, resumeAfter(from, from != 0))
	defer sub.Close()
	if err := s.pastHead(ctx, from, published); err != nil {
		return err
	}
	w := &watchSender[ordersv1.WatchOrderResponse]{stream: stream, sent: from, sub: sub, build: func(c *projections.Change) *ordersv1.WatchOrderResponse {
		o := changeToProto(c)
		return &ordersv1.WatchOrderResponse{Order: o, Position: c.Position, Revision: o.GetRevision(), EventType: c.Type, Actor: c.Actor}
	},
		// The order may not change for hours while others do: a proxy
		// would close the idle stream, and a resume from the order's
		// last change would read the log back from there.
		mark: func(position uint64) *ordersv1.WatchOrderResponse {
			return &ordersv1.WatchOrderResponse{Position: position}
		},
		progress: s.progress,
	}
	read := req.GetConsistency()
	if from > read.GetMinPosition() {
		// The order was there at from, where the client saw it: a node
		// whose read model is behind it (a reconnect that reached
		// another replica) would miss it and answer NOT_FOUND. The read
		// waits for from as for a min_position, within the request's
		// max_wait, and a node still behind answers UNAVAILABLE, which
		// the client retries (or OUT_OF_RANGE past the log's head, when
		// pastHead could not read it).
		read = &ordersv1.Consistency{MinPosition: from, MaxWait: read.GetMaxWait()}
		if err := s.awaitField(ctx, read, "from_position", s.p.WaitFor); err != nil {
			return err
		}
	}
	o, pos, err := s.readOrder(ctx, id, read)
	if err != nil {
		return err
	}
	if !kept {
		if s.history == nil {
			return status.Errorf(codes.OutOfRange, "from_position %d is older than the changes kept; watch without it to start from the current state", from)
		}
		recs, err := s.history.LoadLatest(ctx, id)
		if err != nil {
			return rpcerr.ToStatus(ctx, s.log, err)
		}
		// An erasure of its customer changes the order too, at the
		// CustomerForgotten's position on the customers' subject: one
		// after the order's creation (an earlier one changes nothing of
		// it), not every erasure the log holds. The order's customer is
		// set by its creation and never changes, so the read model's
		// row names it.
		var lastOwn uint64 // the position of the last of the order's own events read
		if len(recs) > 0 {
			lastOwn = recs[len(recs)-1].Position
			forgets, err := s.erased.of(ctx, s.history, o.GetCustomerId(), recs[0].Position)
			if err != nil {
				return rpcerr.ToStatus(ctx, s.log, err)
			}
			recs = mergeByPosition(recs, forgets)
		}
		changes, err := projections.HistoryChanges(ctx, s.keys, recs)
		if err != nil {
			return rpcerr.ToStatus(ctx, s.log, err)
		}
		// The two reads above are not one snapshot: an erasure read
		// after the order's own events, past both the last of them and
		// what the feed had published when it was subscribed to, is left
		// to the feed, which sends it after any change of the order
		// appended between the reads. Taken from the log, it was built on
		// a state without such a change, and made the feed's later
		// change look already sent. (One the feed had published, or one
		// before an event of the order read, the feed will not send.)
		for _, c := range changes {
			if c.Position > from && (c.Position <= published || c.Position <= lastOwn) {
				backlog = append(backlog, &c)
			}
		}
	}
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	// The order's change at the position the watch starts from is the
	// one the client holds: the state it is sent now, or the one it
	// resumes after.
	w.sentAt(from, id)
	if from == 0 {
		if err := stream.Send(&ordersv1.WatchOrderResponse{Order: o, Position: pos, Revision: o.GetRevision()}); err != nil {
			return err
		}
		w.sentAt(pos, id)
	}
	for _, c := range backlog {
		if err := w.send(c); err != nil {
			return err
		}
	}
	return w.follow(ctx, sub)
}

// mergeByPosition returns a and b, each in log order, merged in log order.
func mergeByPosition(a, b []eventstore.Recorded) []eventstore.Recorded {
	out := make([]eventstore.Recorded, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].Position <= b[0].Position {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// WatchOrders streams the changes of the orders matching the filters; see
// the RPC's documentation.
func (s *Service) WatchOrders(req *ordersv1.WatchOrdersRequest, stream grpc.ServerStreamingServer[ordersv1.WatchOrdersResponse]) error {
	customer := req.GetCustomerId()
	if customer != "" {
		if err := validID("customer_id", customer); err != nil {
			return err
		}
	}
	var st order.Status
	if req.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
		var ok bool
		if st, ok = convert.StatusFromProto(req.GetStatus()); !ok {
			return rpcerr.Invalid("status", "unknown status")
		}
	}
	if s.feed == nil {
		return errNoWatch
	}
	ctx := stream.Context()
	if err := s.await(ctx, req.GetConsistency(), s.p.WaitForCommitted); err != nil {
		return err
	}
	match := func(c *projections.Change) bool {
		if customer != "" && c.State.CustomerID != customer {
			return false
		}
		return st == order.StatusUnspecified || c.State.Status == st || c.Prev == st
	}
	// Set, from_position resumes even at 0: the first message of a watch
	// on an empty log carries 0, and a watcher that saw only it must get
	// every change made since, not start again now.
	from, resume := req.GetFromPosition(), req.FromPosition != nil
	if resume && from == math.MaxUint64 {
		// No log reaches it, and the feed takes it for "from now": the
		// watch, skipping every change below it, would stay silent
		// where the log's head cannot be read to refuse it.
		return rpcerr.Field(codes.OutOfRange, "from_position", "no log reaches position 2^64-1")
	}
	headed := false
	if !resume {
		var err error
		if headed, err = s.awaitLiveFeed(stream); err != nil {
			return err
		}
	}
	sub, published, backlog, kept := s.feed.Subscribe("", match, s.buffer, resumeAfter(from, resume))
	defer sub.Close()
	if err := s.pastHead(ctx, from, published); err != nil {
		return err
	}
	if !kept {
		return status.Errorf(codes.OutOfRange, "from_position %d is older than the changes kept; list the orders again and watch from the list's position", from)
	}
	w := &watchSender[ordersv1.WatchOrdersResponse]{stream: stream, sent: from, sub: sub, build: func(c *projections.Change) *ordersv1.WatchOrdersResponse {
		o := changeToProto(c)
		return &ordersv1.WatchOrdersResponse{Order: o, Position: c.Position, Revision: o.GetRevision(), EventType: c.Type, Actor: c.Actor}
	},
		// Its history restarts past the changes missed: a resume would
		// be refused.
		restarted: status.Error(codes.OutOfRange, "the read model caught up past changes this watch did not see; list the orders again and watch from the list's position"),
		// A watch of some orders may have had no change since long
		// before the read model's checkpoint, below which the feed of
		// the restarted node keeps nothing.
		mark: func(position uint64) *ordersv1.WatchOrdersResponse {
			return &ordersv1.WatchOrdersResponse{Position: position}
		},
		progress: s.progress,
	}
	if !headed {
		if err := stream.SendHeader(metadata.MD{}); err != nil {
			return err
		}
	}
	if !resume {
		if err := stream.Send(&ordersv1.WatchOrdersResponse{Position: published}); err != nil {
			return err
		}
		w.sentAt(published, "")
	}
	for _, c := range backlog {
		if err := w.send(c); err != nil {
			return err
		}
	}
	return w.follow(ctx, sub)
}
