package query_test

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// consistency.max_wait is refused when malformed (a negative duration, or
// one whose nanos are out of range) whether or not min_position is set:
// the same field must not be an error in one request and silently
// ignored in another.
func TestMalformedMaxWaitIsRefusedWithoutMinPosition(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c-1", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	for name, d := range map[string]*durationpb.Duration{
		"negative":        durationpb.New(-time.Second),
		"nanos too large": {Seconds: 1, Nanos: 2_000_000_000},
	} {
		// With a min_position to wait for,
		_, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id,
			Consistency: &ordersv1.Consistency{MinPosition: c.GetPosition(), MaxWait: d}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s max_wait with min_position: %v, want INVALID_ARGUMENT", name, err)
		}
		// and without one.
		calls := map[string]func() error{
			"GetOrder": func() error {
				_, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id, Consistency: &ordersv1.Consistency{MaxWait: d}})
				return err
			},
			"ListOrders": func() error {
				_, err := e.q.ListOrders(ctx, &ordersv1.ListOrdersRequest{Consistency: &ordersv1.Consistency{MaxWait: d}})
				return err
			},
			"GetCustomerSummary": func() error {
				_, err := e.q.GetCustomerSummary(ctx, &ordersv1.GetCustomerSummaryRequest{CustomerId: "c-1", Consistency: &ordersv1.Consistency{MaxWait: d}})
				return err
			},
		}
		for rpc, call := range calls {
			err := call()
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s with a %s consistency.max_wait and no min_position: %v, want INVALID_ARGUMENT naming consistency.max_wait", rpc, name, err)
			}
		}
	}
}
