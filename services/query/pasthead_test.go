package query_test

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/query"
)

// stalled is a projection that never reaches a position: its waits end
// with their context.
type stalled struct{ rm *projections.ReadModel }

func (p stalled) ReadModel() *projections.ReadModel { return p.rm }
func (p stalled) WaitFor(ctx context.Context, _ uint64) error {
	<-ctx.Done()
	return ctx.Err()
}
func (p stalled) WaitForCommitted(ctx context.Context, pos uint64) error { return p.WaitFor(ctx, pos) }
func (p stalled) Position() uint64                                       { return 0 }

// violatedField is the field a status error's BadRequest detail names.
func violatedField(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// unreadableOnce is a log head that cannot be read the first time, and
// answers last after.
type unreadableOnce struct {
	last  uint64
	tried atomic.Bool
}

func (h *unreadableOnce) Head(context.Context) (uint64, error) {
	if !h.tried.Swap(true) {
		return 0, errors.New("no leader")
	}
	return h.last, nil
}

// head is a log head that answers last, or err.
type head struct {
	last uint64
	err  error
}

func (h head) Head(context.Context) (uint64, error) { return h.last, h.err }

// A min_position the read model does not reach in time is UNAVAILABLE
// (retry later) while the log holds it, and OUT_OF_RANGE, naming the
// field, once it is past the log's head: no append returned it, and
// retrying cannot help. A head that cannot be read leaves it UNAVAILABLE,
// as does a service that cannot read the head at all.
func TestMinPositionPastTheLogsHeadIsOutOfRange(t *testing.T) {
	ctx := t.Context()
	p := stalled{emptyReadModel(t)}
	quick := func(min uint64) *ordersv1.Consistency {
		return &ordersv1.Consistency{MinPosition: min, MaxWait: durationpb.New(10 * time.Millisecond)}
	}
	for _, c := range []struct {
		name string
		opts []query.Option
		min  uint64
		want codes.Code
	}{
		{"held by the log", []query.Option{query.WithHead(head{last: 10})}, 10, codes.Unavailable},
		{"past the head", []query.Option{query.WithHead(head{last: 10})}, 11, codes.OutOfRange},
		{"head unreadable", []query.Option{query.WithHead(head{err: errors.New("no leader")})}, 11, codes.Unavailable},
		{"head unknown", nil, 11, codes.Unavailable},
	} {
		svc := newQuery(t, p, c.opts...)
		_, getErr := svc.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "o-1", Consistency: quick(c.min)})
		_, listErr := svc.ListOrders(ctx, &ordersv1.ListOrdersRequest{Consistency: quick(c.min)})
		for rpc, err := range map[string]error{"GetOrder": getErr, "ListOrders": listErr} {
			if got := status.Code(err); got != c.want {
				t.Errorf("%s: %s at min_position %d = %v, want %v", c.name, rpc, c.min, err, c.want)
			}
			if c.want != codes.OutOfRange {
				continue
			}
			if field := violatedField(err); field != "consistency.min_position" {
				t.Errorf("%s: %s: field violation %q, want consistency.min_position", c.name, rpc, field)
			}
		}
	}
}

// A watch resumed from a position past the log's head is refused with
// OUT_OF_RANGE: the feed would otherwise wait, silently and for ever, for a
// change no append has made.
func TestWatchFromPastTheLogsHeadIsOutOfRange(t *testing.T) {
	e := start(t)
	id, _ := newOrder(t, e, "past")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	const far = 1 << 40
	one, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, FromPosition: far})
	if err == nil {
		_, err = one.Recv()
	}
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("WatchOrder from %d: %v, want OutOfRange", uint64(far), err)
	}
	all, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{FromPosition: proto.Uint64(far)})
	if err == nil {
		_, err = all.Recv()
	}
	if status.Code(err) != codes.OutOfRange {
		t.Errorf("WatchOrders from %d: %v, want OutOfRange", uint64(far), err)
	}
}

// A WatchOrder resumed on a node whose read model has not reached the
// position it resumes from (a reconnect that reached another replica) is
// UNAVAILABLE, which the client retries, once the wait for that position
// runs out: the order was there at that position, where the client saw
// it. It was NOT_FOUND, and ordersctl stopped watching an order that
// exists.
func TestWatchResumedOnANodeBehindIsUnavailable(t *testing.T) {
	for _, c := range []struct {
		name  string
		head  query.Head
		want  codes.Code
		field string
	}{
		{"held by the log", head{last: 10}, codes.Unavailable, ""},
		// The head could not be read when the watch began; read after
		// the wait, it is below from_position, which the answer names.
		{"past the head", &unreadableOnce{last: 3}, codes.OutOfRange, "from_position"},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := newQuery(t, stalled{emptyReadModel(t)}, query.WithFeed(projections.NewFeed(0)), query.WithHead(c.head))
			gs := grpc.NewServer()
			ordersv1.RegisterOrderQueryServiceServer(gs, svc)
			q := ordersv1.NewOrderQueryServiceClient(listen(t, gs))
			w, err := q.WatchOrder(t.Context(), &ordersv1.WatchOrderRequest{OrderId: "o-1", FromPosition: 5,
				Consistency: &ordersv1.Consistency{MaxWait: durationpb.New(10 * time.Millisecond)}})
			if err == nil {
				_, err = w.Recv()
			}
			if status.Code(err) != c.want || violatedField(err) != c.field {
				t.Fatalf("WatchOrder resumed from 5 on a node behind it: %v (field %q), want %v (field %q)", err, violatedField(err), c.want, c.field)
			}
		})
	}
}

// A caller whose deadline is shorter than max_wait learns why its
// min_position was not met within that deadline: OUT_OF_RANGE past the
// log's head, UNAVAILABLE while the log holds it. Before, the wait took
// the whole deadline and the answer was DEADLINE_EXCEEDED, which a caller
// may retry for ever.
func TestMinPositionAnswersWithinTheCallersDeadline(t *testing.T) {
	p := stalled{emptyReadModel(t)}
	svc := newQuery(t, p, query.WithHead(head{last: 10}))
	for _, c := range []struct {
		min  uint64
		want codes.Code
	}{{11, codes.OutOfRange}, {10, codes.Unavailable}} {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		_, getErr := svc.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "o-1", Consistency: &ordersv1.Consistency{MinPosition: c.min}})
		_, listErr := svc.ListOrders(ctx, &ordersv1.ListOrdersRequest{Consistency: &ordersv1.Consistency{MinPosition: c.min}})
		cancel()
		for rpc, err := range map[string]error{"GetOrder": getErr, "ListOrders": listErr} {
			if got := status.Code(err); got != c.want {
				t.Errorf("%s at min_position %d under a deadline shorter than max_wait: %v, want %v", rpc, c.min, err, c.want)
			}
		}
	}
}

// A WatchOrders resumed from the largest position, which no log reaches,
// is OUT_OF_RANGE even where the log's head cannot be read: the feed took
// that position for "from now" and the watch, skipping every change below
// it, stayed open and silent.
func TestWatchOrdersFromTheLargestPositionIsOutOfRange(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e := serve(t, &env{store: memstore.New()}, 0)
	gs := grpc.NewServer()
	// No head to read.
	ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runnerRef{e}, query.WithFeed(e.feed)))
	q := ordersv1.NewOrderQueryServiceClient(listen(t, gs))
	w, err := q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{FromPosition: proto.Uint64(math.MaxUint64)})
	if err != nil {
		t.Fatal(err)
	}
	createCommitted(t, e, "any", 1)
	if m, err := w.Recv(); status.Code(err) != codes.OutOfRange {
		t.Fatalf("watch from position 2^64-1: %v, %v; want OUT_OF_RANGE", m, err)
	}
}
