package query_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// reachedThenLost is a projection whose waits end at once, as if every
// position had been applied, over a read model that holds less: what a
// point read meets when a failed commit abandoned the positions its wait
// ended on.
type reachedThenLost struct{ rm *projections.ReadModel }

func (p reachedThenLost) ReadModel() *projections.ReadModel              { return p.rm }
func (p reachedThenLost) WaitFor(context.Context, uint64) error          { return nil }
func (p reachedThenLost) WaitForCommitted(context.Context, uint64) error { return nil }
func (p reachedThenLost) Position() uint64                               { return 0 }

// A point read that finds the read model below the min_position its wait
// ended on answers UNAVAILABLE, never the older state, whether the order
// is there or not; at or below what the read model holds it answers.
func TestPointReadBelowItsWaitIsUnavailable(t *testing.T) {
	ctx := t.Context()
	rm := emptyReadModel(t)
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	if _, _, err := rm.Apply(ctx, []projections.Item{{Rec: eventstore.Recorded{OrderID: "o-1", Position: 1, Version: 1, Type: "OrderCreated", Time: at},
		Event: order.OrderCreated{OrderID: "o-1", CustomerID: "c", Currency: "EUR"}}}); err != nil {
		t.Fatal(err)
	}
	svc := newQuery(t, reachedThenLost{rm})
	for _, c := range []struct {
		id   string
		min  uint64
		want codes.Code
	}{
		{"o-1", 1, codes.OK},
		{"o-1", 2, codes.Unavailable},
		{"o-2", 1, codes.NotFound},
		{"o-2", 2, codes.Unavailable},
	} {
		_, err := svc.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.id, Consistency: consistency(c.min)})
		if got := status.Code(err); got != c.want {
			t.Errorf("GetOrder(%s, min_position %d) = %v; want %v", c.id, c.min, err, c.want)
		}
	}
}

// emptyReadModel is a read model of its own in a temporary directory,
// closed when t ends.
func emptyReadModel(t *testing.T) *projections.ReadModel {
	t.Helper()
	d, err := projections.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d.Current()
}
