package query_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

type r2change struct {
	pos   uint64
	order string
}

func (c r2change) String() string { return fmt.Sprintf("%d:%s", c.pos, c.order) }

// recvUpTo receives from s until a message at position last or later (or
// the context's deadline), returning every change received.
func recvUpTo[M any, P interface {
	*M
	GetPosition() uint64
	GetOrder() *ordersv1.Order
}](t testing.TB, s grpc.ServerStreamingClient[M], last uint64) []r2change {
	t.Helper()
	var got []r2change
	for len(got) == 0 || got[len(got)-1].pos < last {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, r2change{P(m).GetPosition(), P(m).GetOrder().GetOrderId()})
	}
	return got
}

// A WatchOrder resumed from a position the feed no longer holds reads the
// order's history back from the log. An erasure (ForgetCustomer) changes
// the order at the CustomerForgotten's position, which a live watcher and
// one resuming from the feed's history are sent; the one resuming through
// the log is sent it too ("every change after that position"). It read
// the order's own subject only, where the erasure is not.
func TestWatchOrderResumedThroughTheLogGetsTheErasure(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := startWithKeys(t, 2)
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-r2", CustomerId: "c-r2", Currency: "EUR", ShippingAddress: addr()})
	if err != nil {
		t.Fatal(err)
	}
	created := c.GetPosition()
	live, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "o-r2", Consistency: consistency(created)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Recv(); err != nil {
		t.Fatal(err)
	}
	addItems(t, e, "o-r2", 0, 1)
	fr, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "c-r2", RequestId: rid()})
	if err != nil {
		t.Fatal(err)
	}
	last := addItems(t, e, "o-r2", 1, 3) // pushes the erasure out of the feed's history of 2
	got := recvUpTo(t, live, last)
	var sawErasure bool
	for _, c := range got {
		sawErasure = sawErasure || c.pos == fr.GetPosition()
	}
	if !sawErasure {
		t.Fatalf("live watcher: %v, no erasure at %d", got, fr.GetPosition())
	}
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	resumed, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "o-r2", FromPosition: created})
	if err != nil {
		t.Fatal(err)
	}
	again := recvUpTo(t, resumed, last)
	if !slices.Equal(again, got) {
		t.Fatalf("resumed from %d through the log: %v; the live watcher got %v (erasure at %d)", created, again, got, fr.GetPosition())
	}
}

// ListOrders answers at the position committed to the read model's file,
// and the proto tells a client to watch from a list's position. After an
// erasure's commit the runner scrubs the WAL before it publishes to the
// feed, which takes up to half a second while a reader holds an older
// snapshot: a WatchOrders from the list's position then starts ahead of
// the feed, and was sent the change at that very position again.
func TestWatchOrdersFromAListPositionAheadOfTheFeed(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e := startWithKeys(t, 0)
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-one", CustomerId: "c-one", Currency: "EUR", ShippingAddress: addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.WaitForCommitted(ctx, c.GetPosition()); err != nil {
		t.Fatal(err)
	}
	// A reader of the file holding its snapshot (any long query does).
	db, err := sql.Open("sqlite", "file:"+e.runner.ReadModel().Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	fr, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "c-one", RequestId: rid()})
	if err != nil {
		t.Fatal(err)
	}
	forgot := fr.GetPosition()
	var listed uint64
	for listed < forgot {
		l, err := e.q.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "c-one"})
		if err != nil {
			t.Fatal(err)
		}
		listed = l.GetPosition()
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
	}
	feedAt := e.feed.Position()
	w, err := e.q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-one", FromPosition: proto.Uint64(listed)})
	if err != nil {
		t.Fatal(err)
	}
	// The watch has subscribed once the feed counts it.
	for e.feed.Watchers() < 1 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	_ = tx.Rollback()
	next := addItems(t, e, "o-one", 0, 1)
	m, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetPosition() != next {
		t.Fatalf("watch from the list's position %d (feed then at %d): first change at %d, want %d (the change at %d again)", listed, feedAt, m.GetPosition(), next, m.GetPosition())
	}
}

// hookedHistory runs hook once, after the first read of an order's own
// events, before the read of its customer's erasures.
type hookedHistory struct {
	query.History
	once sync.Once
	hook func()
}

func (h *hookedHistory) LoadLatest(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	recs, err := h.History.LoadLatest(ctx, id)
	h.once.Do(h.hook)
	return recs, err
}

// A WatchOrder resumed through the log misses nothing appended while it
// reads: an item added after it read the order's events and before it
// read the erasures, then the customer's erasure, both come, the item
// first. Before, the erasure came from the log's read, built on a state
// without the item, and the item, older than what had been sent, never.
func TestWatchOrderResumedThroughTheLogMissesNothingAppendedMeanwhile(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{7}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	var e *env
	var added, forgot uint64
	hooked := make(chan struct{})
	hh := &hookedHistory{History: store, hook: func() {
		defer close(hooked)
		added = addItems(t, e, "o-mid", 10, 1)
		fr, err := e.admin.ForgetCustomer(ctx, &ordersv1.ForgetCustomerRequest{CustomerId: "c-mid", RequestId: rid()})
		if err != nil {
			t.Error(err)
			return
		}
		forgot = fr.GetPosition()
	}}
	e = serve(t, &env{store: store, keys: pii.NewKeyring(pii.NewMemStore(), master)}, 2, query.WithHistory(hh))
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-mid", CustomerId: "c-mid", Currency: "EUR", ShippingAddress: addr()})
	if err != nil {
		t.Fatal(err)
	}
	last := addItems(t, e, "o-mid", 0, 3) // pushes the creation out of the feed's history of 2
	if err := e.runner.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	w, err := e.q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "o-mid", FromPosition: c.GetPosition()})
	if err != nil {
		t.Fatal(err)
	}
	<-hooked
	after := addItems(t, e, "o-mid", 20, 1)
	var positions []uint64
	for _, ch := range recvUpTo(t, w, after) {
		positions = append(positions, ch.pos)
	}
	if added == 0 || forgot == 0 {
		t.Fatalf("the appends during the read did not happen (item at %d, erasure at %d)", added, forgot)
	}
	if i := slices.Index(positions, added); i < 0 || slices.Index(positions, forgot) < i {
		t.Fatalf("resumed through the log: positions %v; want the item at %d, then the erasure at %d", positions, added, forgot)
	}
}
