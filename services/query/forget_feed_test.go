package query_test

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// After ForgetCustomer has been applied (GetOrder shows the address
// erased), a watch that resumes from a position before the order's
// creation is served the feed's kept history: it must show the address
// erased too, as the order's history read back from the log does, not as
// the order was folded before the erasure.
func TestWatchResumingFromBeforeAForgetServesNoPersonalData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{9}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	ring := pii.NewKeyring(pii.NewMemStore(), master)
	store := memstore.New()
	cmd, err := command.New(store, command.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	feed := projections.NewFeed(0)
	runner, err := projections.NewRunner(store, dir, projections.WithFeed(feed), projections.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done; _ = dir.Close() })

	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, newQuery(t, runner, query.WithFeed(feed), query.WithHistory(store), query.WithKeyring(ring)))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	q := ordersv1.NewOrderQueryServiceClient(conn)

	// Another customer's order first, so that a resume position before the
	// forgotten customer's order exists (0 means "from now").
	if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-keep", OrderId: "o-keep", CustomerId: "c-keep", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	secret := &ordersv1.Address{Name: "Ada Forgetmenot", Line1: "17 Forgetmenot Lane", City: "Forgettown", Country: "GB"}
	created, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "r-f", OrderId: "o-f", CustomerId: "c-forget", Currency: "EUR", ShippingAddress: secret})
	if err != nil {
		t.Fatal(err)
	}
	// The projection keeps up: the creation is applied (and published to
	// the feed) before the customer is forgotten.
	if err := runner.WaitForCommitted(ctx, created.GetPosition()); err != nil {
		t.Fatal(err)
	}
	pos, err := cmd.ForgetCustomer(ctx, "c-forget", "r-forget")
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.WaitForCommitted(ctx, pos); err != nil {
		t.Fatal(err)
	}
	got, err := q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: "o-f", Consistency: consistency(pos)})
	if err != nil {
		t.Fatal(err)
	}
	if a := got.GetOrder().GetShippingAddress(); !a.GetErased() || a.GetLine1() != "" {
		t.Fatalf("GetOrder after the forget: %v; want erased", a)
	}

	check := func(name string, recv func() (*ordersv1.Order, uint64, error)) {
		for {
			o, p, err := recv()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if o != nil && o.GetOrderId() == "o-f" && o.GetShippingAddress().GetLine1() != "" {
				t.Errorf("%s, after the customer was forgotten (at %d): change at %d serves address %q in the clear",
					name, pos, p, o.GetShippingAddress().GetLine1())
			}
			if p >= pos {
				return
			}
		}
	}
	w, err := q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: "o-f", FromPosition: 1})
	if err != nil {
		t.Fatal(err)
	}
	check("WatchOrder from 1", func() (*ordersv1.Order, uint64, error) {
		m, err := w.Recv()
		return m.GetOrder(), m.GetPosition(), err
	})
	ws, err := q.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "c-forget", FromPosition: 1})
	if err != nil {
		t.Fatal(err)
	}
	check("WatchOrders from 1", func() (*ordersv1.Order, uint64, error) {
		m, err := ws.Recv()
		return m.GetOrder(), m.GetPosition(), err
	})
}
