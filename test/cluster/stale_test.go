package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A command service connected to a follower reads orders with direct gets
// that the follower answers itself (NATS prefers the local member of the
// direct get queue group), and a follower is behind the leader: by a few
// milliseconds always, by much more just after it restarted. Thousands of
// create → add item → place sequences, through a restart of that follower
// while the log grew without it, must never be refused as NOT_FOUND,
// FAILED_PRECONDITION or ALREADY_EXISTS: every order exists, in the state
// each next command needs.
func TestNoRejectionOnStaleRead(t *testing.T) {
	c := estest.StartCluster(t, 3)
	_, ajs := estest.ConnectURL(t, c.URLs())
	store := estest.ReplicatedStore(t, ajs)
	stream, err := ajs.Stream(t.Context(), store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	leader := c.Index(streamLeader(t, stream, func(string) bool { return true }))
	f := (leader + 1) % 3
	// The command side talks to the follower only, and waits for it
	// through its restart.
	_, js := estest.ConnectURL(t, c.Servers[f].ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	svc, err := command.New(estest.ReplicatedStore(t, js), command.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}

	const orders, writers = 2000, 8
	var next, completed, stale, retried atomic.Int64
	// call retries UNAVAILABLE with the same request id, as a client
	// should, and counts answers a stale read would explain.
	call := func(id string, f func(context.Context) error) bool {
		for deadline := time.Now().Add(30 * time.Second); ; {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err := f(ctx)
			cancel()
			switch status.Code(err) {
			case codes.OK:
				return true
			case codes.Unavailable, codes.DeadlineExceeded:
				if time.Now().After(deadline) {
					t.Errorf("order %s: unavailable for 30 s: %v", id, err)
					return false
				}
				retried.Add(1)
				time.Sleep(10 * time.Millisecond)
			case codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
				stale.Add(1)
				t.Errorf("order %s: %v", id, err)
				return false
			default:
				t.Errorf("order %s: %v", id, err)
				return false
			}
		}
	}
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for n := next.Add(1); n <= orders && !t.Failed(); n = next.Add(1) {
				id := fmt.Sprintf("lag-%d", n)
				ok := call(id, func(ctx context.Context) error {
					_, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id + "-c", OrderId: id, CustomerId: "lag", Currency: "EUR",
						Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}},
						ShippingAddress: &ordersv1.Address{Line1: "1 Main St", City: "Bern", Country: "CH"}})
					return err
				}) && call(id, func(ctx context.Context) error {
					_, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: id + "-a", OrderId: id, Sku: "B", Quantity: 2, UnitPrice: 50})
					return err
				}) && call(id, func(ctx context.Context) error {
					_, err := svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: id + "-p", OrderId: id})
					return err
				})
				if ok {
					completed.Add(1)
				}
			}
		})
	}
	// A quarter of the way in, the follower goes down; the log grows by
	// thousands of events without it, and it comes back to catch up while
	// it already answers reads.
	for next.Load() < orders/4 && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}
	// The log grows through the other two servers, so that the filler's
	// connection does not go down with the follower.
	_, fjs := estest.ConnectURL(t, c.Servers[(f+1)%3].ClientURL()+","+c.Servers[(f+2)%3].ClientURL())
	c.Stop(f)
	for i := range 5000 {
		if _, err := fjs.PublishAsync(fmt.Sprintf("%s.filler-%d", store.SubjectPrefix(), i%500), []byte("x"),
			jetstream.WithMsgID(fmt.Sprintf("filler-%d", i))); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			select {
			case <-fjs.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("filler not acknowledged")
			}
		}
	}
	c.Start(f)
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("%d commands rejected on a stale read", n)
	}
	if n := completed.Load(); n != orders {
		t.Fatalf("%d of %d orders placed", n, orders)
	}
	t.Logf("%d orders created, extended and placed through a follower restart; %d UNAVAILABLE answers retried", orders, retried.Load())
}
