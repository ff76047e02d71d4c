package query_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
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
}](t *testing.T, s grpc.ServerStreamingClient[M], last uint64) []r2change {
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
