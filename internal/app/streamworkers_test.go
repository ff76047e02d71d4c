package app_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
)

// Watches that stay open hold every stream worker the server keeps
// (GRPC_STREAM_WORKERS), and more watches than workers are open: calls
// are still served, on goroutines of their own, and every watch still gets
// the change they make. A pool that made an RPC wait for a free worker
// would hang here.
func TestBusyStreamWorkersHoldNothingUp(t *testing.T) {
	for _, workers := range []string{"1", "0"} {
		t.Run("GRPC_STREAM_WORKERS="+workers, func(t *testing.T) {
			addrs, _ := run(t, t.TempDir(), "ROLES", "command,query", "GRPC_STREAM_WORKERS", workers)
			conn := dial(t, addrs.GRPC)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cmd := ordersv1.NewOrderCommandServiceClient(conn)
			q := ordersv1.NewOrderQueryServiceClient(conn)
			created, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "sw-create", CustomerId: "c-1", Currency: "EUR"})
			if err != nil {
				t.Fatal(err)
			}
			id := created.GetOrder().GetOrderId()
			var watches []grpc.ServerStreamingClient[ordersv1.WatchOrderResponse]
			for range 3 {
				w, err := q.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: id, Consistency: &ordersv1.Consistency{MinPosition: created.GetPosition()}})
				if err != nil {
					t.Fatal(err)
				}
				// The current state comes first: the watch's handler runs.
				if first, err := w.Recv(); err != nil || first.GetRevision() != 1 {
					t.Fatalf("watch's first message: revision %d, %v", first.GetRevision(), err)
				}
				watches = append(watches, w)
			}
			added, err := cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "sw-add", OrderId: id, Sku: "A", Quantity: 1, UnitPrice: 100})
			if err != nil {
				t.Fatalf("AddItem while the watches hold the workers: %v", err)
			}
			if got, err := q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id, Consistency: &ordersv1.Consistency{MinPosition: added.GetPosition()}}); err != nil || got.GetOrder().GetRevision() != 2 {
				t.Fatalf("GetOrder while the watches hold the workers: revision %d, %v", got.GetOrder().GetRevision(), err)
			}
			for i, w := range watches {
				m, err := w.Recv()
				if err != nil || m.GetPosition() != added.GetPosition() || m.GetRevision() != 2 {
					t.Fatalf("watch %d after AddItem: position %d revision %d, %v; want position %d revision 2", i, m.GetPosition(), m.GetRevision(), err, added.GetPosition())
				}
			}
		})
	}
}
