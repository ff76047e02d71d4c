package query_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// orderPositions lists the log positions of an order's events after
// position after.
func orderPositions(t *testing.T, e *env, id string, after uint64) []uint64 {
	t.Helper()
	recs, err := e.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, r := range recs {
		if r.Position > after {
			out = append(out, r.Position)
		}
	}
	return out
}

func addItems(t testing.TB, e *env, id string, from, n int) (last uint64) {
	t.Helper()
	for i := from; i < from+n; i++ {
		r, err := e.cmd.AddItem(t.Context(), &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: fmt.Sprintf("SKU-%d", i), Quantity: 1, UnitPrice: 100})
		if err != nil {
			t.Fatal(err)
		}
		last = r.GetPosition()
	}
	return last
}

func newOrder(t testing.TB, e *env, customer string) (id string, pos uint64) {
	t.Helper()
	c, err := e.cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: customer, Currency: "EUR", ShippingAddress: addr()})
	if err != nil {
		t.Fatal(err)
	}
	return c.GetOrder().GetOrderId(), c.GetPosition()
}

// recvUntil receives until a message at position last or later, and
// returns the positions received.
func recvUntil[M any, P interface {
	*M
	GetPosition() uint64
}](t *testing.T, s grpc.ServerStreamingClient[M], last uint64) []uint64 {
	t.Helper()
	var got []uint64
	for len(got) == 0 || got[len(got)-1] < last {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, P(m).GetPosition())
	}
	return got
}

func TestWatchOrderResumesWithoutGaps(t *testing.T) {
	// A history of 4 changes: resuming further back reads the log.
	e := startWith(t, 4)
	ctx := t.Context()
	id, created := newOrder(t, e, "watcher")
	wctx, cancel := context.WithCancel(ctx)
	s, err := e.q.WatchOrder(wctx, &ordersv1.WatchOrderRequest{OrderId: id, Consistency: consistency(created)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetOrder().GetOrderId() != id || first.GetPosition() < created || first.GetEventType() != "" {
		t.Fatalf("first message: %v", first)
	}
	last := addItems(t, e, id, 0, 5)
	got := recvUntil(t, s, orderPositions(t, e, id, 0)[2])
	cancel()

	// Resume within the feed's history, then from before it (the log).
	for _, resume := range []uint64{got[len(got)-1], first.GetPosition()} {
		last = addItems(t, e, id, int(last), 3)
		s, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, FromPosition: resume})
		if err != nil {
			t.Fatal(err)
		}
		again := recvUntil(t, s, last)
		if want := orderPositions(t, e, id, resume); !slices.Equal(again, want) {
			t.Fatalf("resumed after %d: positions %v, want %v", resume, again, want)
		}
	}
	all := slices.Concat([]uint64{first.GetPosition()}, got)
	if want := slices.Concat([]uint64{first.GetPosition()}, orderPositions(t, e, id, first.GetPosition())[:len(got)]); !slices.Equal(all, want) {
		t.Fatalf("positions %v, want %v", all, want)
	}
}

func TestWatchOrderUnknown(t *testing.T) {
	e := start(t)
	_, pos := newOrder(t, e, "watcher")
	s, err := e.q.WatchOrder(t.Context(), &ordersv1.WatchOrderRequest{OrderId: "no-such-order", Consistency: consistency(pos)})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown order: %v, want NotFound", err)
	}
	s, err = e.q.WatchOrder(t.Context(), &ordersv1.WatchOrderRequest{OrderId: "bad id"})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad id: %v, want InvalidArgument", err)
	}
}

func TestWatchOrdersFiltersAndResumes(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	s, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "dash", Status: ordersv1.OrderStatus_ORDER_STATUS_DRAFT})
	if err != nil {
		t.Fatal(err)
	}
	start, err := s.Recv()
	if err != nil || start.GetOrder() != nil {
		t.Fatalf("first message: %v, %v", start, err)
	}
	id, _ := newOrder(t, e, "dash")
	newOrder(t, e, "other")
	addItems(t, e, id, 0, 1)
	placed, err := e.cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	// Leaving the draft status is seen; the other customer's order is not.
	got := recvUntil(t, s, placed.GetPosition())
	if want := orderPositions(t, e, id, 0); !slices.Equal(got, want) {
		t.Fatalf("positions %v, want %v", got, want)
	}
	// Resuming after the second change sends the third only.
	r, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "dash", FromPosition: proto.Uint64(got[1])})
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.Recv()
	if err != nil || m.GetPosition() != got[2] || m.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PLACED {
		t.Fatalf("resumed: %v, %v", m, err)
	}
}

// A watch of every order on an empty log starts after position 0, and its
// first message says so. A watcher that saw only that message and
// reconnects with it must get every change made since, not start again
// from "now", as an unset from_position does.
func TestWatchOrdersResumesAfterPositionZero(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	s, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Recv()
	if err != nil || first.GetOrder() != nil || first.GetPosition() != 0 {
		t.Fatalf("first message on an empty log: %v, %v; want position 0 and no order", first, err)
	}
	// Made while the watcher is away.
	missed, _ := newOrder(t, e, "away")
	r, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{FromPosition: proto.Uint64(first.GetPosition())})
	if err != nil {
		t.Fatal(err)
	}
	later, laterPos := newOrder(t, e, "back")
	var got []string
	for len(got) < 2 {
		m, err := r.Recv()
		if err != nil {
			t.Fatalf("resumed after %v: %v", got, err)
		}
		got = append(got, m.GetOrder().GetOrderId())
	}
	if want := []string{missed, later}; !slices.Equal(got, want) {
		t.Fatalf("resumed after position 0: orders %q, want %q", got, want)
	}
	// Unset still starts now: its first message is the position it starts
	// after, and the orders made before it are not sent.
	n, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{Consistency: &ordersv1.Consistency{MinPosition: laterPos}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := n.Recv(); err != nil || m.GetOrder() != nil || m.GetPosition() < laterPos {
		t.Fatalf("watch from now: %v, %v; want the position it starts after", m, err)
	}
}

// TestThousandWatchersGetEveryChange has 1,000 watchers of one order over
// one connection while the order changes: each gets every change, in
// order.
func TestThousandWatchersGetEveryChange(t *testing.T) {
	const watchers, changes = 1000, 10
	e := start(t)
	id, created := newOrder(t, e, "crowd")
	ctx := t.Context()
	streams := make([]grpc.ServerStreamingClient[ordersv1.WatchOrderResponse], watchers)
	firsts := make([]uint64, watchers)
	// Opened 50 at a time: each open waits on a read of the read model.
	var opened sync.WaitGroup
	openErrs := make(chan error, watchers)
	for w := range 50 {
		opened.Go(func() {
			for i := w; i < watchers; i += 50 {
				s, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, Consistency: consistency(created)})
				if err != nil {
					openErrs <- err
					return
				}
				m, err := s.Recv()
				if err != nil {
					openErrs <- err
					return
				}
				streams[i], firsts[i] = s, m.GetPosition()
			}
		})
	}
	opened.Wait()
	close(openErrs)
	for err := range openErrs {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	history := make(chan []uint64)
	for i, s := range streams {
		wg.Go(func() {
			all := <-history
			var want []uint64
			for _, p := range all {
				if p > firsts[i] {
					want = append(want, p)
				}
			}
			var got []uint64
			for len(got) < len(want) {
				m, err := s.Recv()
				if err != nil {
					errs <- err
					return
				}
				got = append(got, m.GetPosition())
			}
			if !slices.Equal(got, want) {
				errs <- fmt.Errorf("watcher %d: positions %v, want %v", i, got, want)
			}
		})
	}
	addItems(t, e, id, 0, changes)
	all := orderPositions(t, e, id, 0)
	for range watchers {
		history <- all
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestStalledWatcherIsCutOff: a watcher that stops reading is ended once
// its buffer overflows, while another watcher keeps getting every change;
// the stalled one then resumes from its last position without a gap.
func TestStalledWatcherIsCutOff(t *testing.T) {
	e := startWith(t, 0, query.WithWatchBuffer(4))
	ctx := t.Context()
	// The stalled watcher's own connection with the smallest windows, so
	// the transport stops taking its messages early.
	lis := e.listenAddr(t)
	conn, err := grpc.NewClient(lis, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	stalled, err := ordersv1.NewOrderQueryServiceClient(conn).WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stalled.Recv(); err != nil {
		t.Fatal(err)
	}
	active, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "busy"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := active.Recv(); err != nil {
		t.Fatal(err)
	}
	var seen []uint64
	lines := make([]*ordersv1.LineItem, 100)
	for i := range lines {
		lines[i] = &ordersv1.LineItem{Sku: fmt.Sprintf("LONG-SKU-NAME-%03d", i), Quantity: 1, UnitPrice: 1}
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.feed.Watchers() > 1 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled watcher was never cut off")
		}
		c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "busy", Currency: "EUR", Lines: lines})
		if err != nil {
			t.Fatal(err)
		}
		// The active watcher keeps up, change by change.
		m, err := active.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetPosition() != c.GetPosition() {
			t.Fatalf("active watcher got %d, want %d", m.GetPosition(), c.GetPosition())
		}
		seen = append(seen, m.GetPosition())
	}
	var got []uint64
	for {
		m, err := stalled.Recv()
		if status.Code(err) == codes.ResourceExhausted {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetPosition())
	}
	if len(got) == 0 || !slices.Equal(got, seen[:len(got)]) {
		t.Fatalf("stalled watcher got %v before being cut off, want a prefix of %v", got, seen)
	}
	resumed, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "busy", FromPosition: proto.Uint64(got[len(got)-1])})
	if err != nil {
		t.Fatal(err)
	}
	rest := recvUntil(t, resumed, seen[len(seen)-1])
	if all := append(got, rest...); !slices.Equal(all, seen) {
		t.Fatalf("stalled then resumed: %v, want %v", all, seen)
	}
}

// listenAddr serves the env's query service on one more listener, for
// clients with their own connection settings.
func (e *env) listenAddr(t *testing.T) string {
	t.Helper()
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runnerRef{e}, query.WithFeed(e.feed), query.WithWatchBuffer(4)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// A WatchOrders resumed while a query node catches up in bulk (its read
// model empty, the log long enough) from before the replay's end would see
// none of the changes the replay applied: once the replay is swapped in it
// is ended with OUT_OF_RANGE, which tells the client to list the orders
// again (not RESOURCE_EXHAUSTED, whose resume from the position it sent
// would be refused). One from now is taken on and waits for the replay:
// its first message is at the replay's end, and it goes on from there.
func TestWatchOrdersEndsWhenTheReadModelCatchesUpInBulk(t *testing.T) {
	// A watch the feed fails to end waits for changes that never come:
	// bounded, so that the failure says which.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	mem := memstore.New()
	cmd, err := command.New(mem)
	if err != nil {
		t.Fatal(err)
	}
	var head uint64
	for range 30 {
		c, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "bulk", Currency: "EUR", ShippingAddress: addr()})
		if err != nil {
			t.Fatal(err)
		}
		head = c.GetPosition()
	}
	// The replay waits at the gate until both watches are open.
	var replay *gate
	e := serve(t, &env{store: mem, runnerOpts: []projections.Option{projections.WithBulkCatchUp(10)},
		wrapLog: func(l projections.Log) projections.Log {
			gl := &gatedLog{Log: l}
			replay = gl.arm()
			return gl
		}}, 0)
	fresh, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "bulk"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Header(); err != nil {
		t.Fatalf("watch from now during the replay not taken on: %v", err)
	}
	resumed, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "bulk", FromPosition: proto.Uint64(5)})
	if err != nil {
		t.Fatal(err)
	}
	// The resumed watch sends nothing before the replay: its subscription
	// is what says it is open.
	for e.feed.Watchers() < 1 {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	replay.release()
	if m, err := resumed.Recv(); status.Code(err) != codes.OutOfRange {
		t.Fatalf("watch from 5 across the bulk catch-up: %v, %v; want OUT_OF_RANGE", m, err)
	}
	if m, err := fresh.Recv(); err != nil || m.GetPosition() < head {
		t.Fatalf("first message of a watch from now opened during the replay: %v, %v; want a position at the replay's end, %d, or later", m, err, head)
	}
	if err := e.runner.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	again, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "bulk", FromPosition: proto.Uint64(5)})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := again.Recv(); status.Code(err) != codes.OutOfRange {
		t.Fatalf("resume from 5 after the bulk catch-up: %v, %v; want OUT_OF_RANGE", m, err)
	}
}
