package command_test

import (
	"context"
	"sync/atomic"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// countingStore counts the reads of order histories.
type countingStore struct {
	command.Store
	loads atomic.Int64
}

func (c *countingStore) Load(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	c.loads.Add(1)
	return c.Store.Load(ctx, id)
}

func (c *countingStore) LoadLatest(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	c.loads.Add(1)
	return c.Store.LoadLatest(ctx, id)
}

// lifecycle creates an order and adds three items to it and places it
// through svc, and returns the placed order's revision.
func lifecycle(t *testing.T, svc *command.Service) uint64 {
	t.Helper()
	ctx := t.Context()
	c, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR", ShippingAddress: address()})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	for _, sku := range []string{"A", "B", "C"} {
		if _, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: sku, Quantity: 1, UnitPrice: 100}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	if p.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PLACED || len(p.GetOrder().GetLines()) != 3 {
		t.Fatalf("placed order %v", p.GetOrder())
	}
	return p.GetRevision()
}

// Consecutive commands on one order through one service read its history
// from the log once at most: here not at all, since the service created
// the order. Without the cache every command after the create reads it.
func TestRecentHistoriesSpareReads(t *testing.T) {
	for _, tc := range []struct {
		histories int
		loads     int64
	}{{command.DefaultHistories, 0}, {0, 4}} {
		store := &countingStore{Store: memstore.New()}
		svc := newService(t, store, command.WithHistories(tc.histories))
		if rev := lifecycle(t, svc); rev != 5 {
			t.Fatalf("histories %d: revision %d, want 5", tc.histories, rev)
		}
		if n := store.loads.Load(); n != tc.loads {
			t.Errorf("histories %d: %d reads of the log, want %d", tc.histories, n, tc.loads)
		}
	}
}

// Two services on one store are two command nodes: what one of them
// cached goes stale when the other writes. The stale history costs a
// conflict and a retry, never an update.
func TestStaleHistoryLosesNoUpdate(t *testing.T) {
	store := memstore.New()
	a, b := newService(t, store), newService(t, store)
	ctx := t.Context()
	if _, err := a.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-two-nodes", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	add := func(svc *command.Service, sku string) *ordersv1.AddItemResponse {
		t.Helper()
		res, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-two-nodes", Sku: sku, Quantity: 1, UnitPrice: 1})
		if err != nil {
			t.Fatalf("add %s: %v", sku, err)
		}
		return res
	}
	add(a, "X")
	add(b, "Y")
	res := add(a, "Z") // a's history ends at X
	if res.GetRevision() != 4 || len(res.GetOrder().GetLines()) != 3 {
		t.Fatalf("revision %d, lines %v; want 4 and X, Y, Z", res.GetRevision(), res.GetOrder().GetLines())
	}
	if n := a.ConflictRetries(); n != 1 {
		t.Fatalf("%d conflicts retried, want the 1 of the stale history", n)
	}
	recs, err := store.Load(ctx, "o-two-nodes")
	if err != nil || len(recs) != 4 {
		t.Fatalf("%d events in the log, %v; want 4", len(recs), err)
	}
}

// A rejection is never drawn from a cached history: the order another
// node placed refuses an item here, though this node's history still
// shows a draft; and a retried request is answered with its original
// result from the cached history.
func TestStaleHistoryIsNotTheAnswer(t *testing.T) {
	store := memstore.New()
	a, b := newService(t, store), newService(t, store)
	ctx := t.Context()
	c, err := a.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR", ShippingAddress: address(),
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	add := &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "B", Quantity: 1, UnitPrice: 100}
	first, err := a.AddItem(ctx, add)
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.AddItem(ctx, add)
	if err != nil || again.GetRevision() != first.GetRevision() {
		t.Fatalf("retry: revision %d, %v; want the original %d", again.GetRevision(), err, first.GetRevision())
	}
	if _, err := b.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id}); err != nil {
		t.Fatal(err)
	}
	_, err = a.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "C", Quantity: 1, UnitPrice: 100})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("AddItem to an order placed elsewhere: %v, want FAILED_PRECONDITION", err)
	}
	recs, err := store.Load(ctx, id)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d events in the log, %v; want created, B added, placed", len(recs), err)
	}
}
