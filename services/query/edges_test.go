package query_test

import (
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The earliest valid timestamp, 0001-01-01T00:00:00Z (Go's zero time), is
// a bound like any other: created_before at it matches nothing, as the
// contract says of a bound before every stored order, rather than being
// taken for an absent bound; created_after at it bounds nothing; a
// created_after later than it is reversed bounds. And a page token names
// the filters it was issued for even when a bound is the Unix epoch, 0 as
// nanoseconds like an absent bound in its hash.
func TestListOrdersTimeBoundsAtTheEdges(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	createCommitted(t, e, "edges", 3)
	year1 := timestamppb.New(time.Time{})
	list := func(req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
		req.CustomerId = "edges"
		return e.q.ListOrders(ctx, req)
	}
	if res, err := list(&ordersv1.ListOrdersRequest{CreatedBefore: year1}); err != nil || len(res.GetOrders()) != 0 {
		t.Fatalf("created_before 0001-01-01: %d orders, %v; want none", len(res.GetOrders()), err)
	}
	if res, err := list(&ordersv1.ListOrdersRequest{CreatedAfter: year1}); err != nil || len(res.GetOrders()) != 3 {
		t.Fatalf("created_after 0001-01-01: %d orders, %v; want all 3", len(res.GetOrders()), err)
	}
	later := timestamppb.New(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	if _, err := list(&ordersv1.ListOrdersRequest{CreatedAfter: later, CreatedBefore: year1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("created_after 2000 with created_before 0001-01-01: %v; want INVALID_ARGUMENT", err)
	}
	first, err := list(&ordersv1.ListOrdersRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	epoch := timestamppb.New(time.Unix(0, 0))
	if _, err := list(&ordersv1.ListOrdersRequest{PageSize: 1, PageToken: first.GetNextPageToken(), CreatedBefore: epoch}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a token issued without time bounds, with created_before at the epoch: %v; want INVALID_ARGUMENT", err)
	}
	if _, err := list(&ordersv1.ListOrdersRequest{PageSize: 1, PageToken: first.GetNextPageToken()}); err != nil {
		t.Fatalf("the token under its own filters: %v", err)
	}
}

// An order id no command could have accepted (one that would address other
// subjects) is the caller's mistake, INVALID_ARGUMENT, not an order that is
// merely absent.
func TestGetOrderRefusesIDsNoOrderCanHave(t *testing.T) {
	e := start(t)
	for _, id := range []string{"a.b", "a*", "a>"} {
		if _, err := e.q.GetOrder(t.Context(), &ordersv1.GetOrderRequest{OrderId: id}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("GetOrder(%q) = %v; want INVALID_ARGUMENT", id, err)
		}
	}
}

// createCommitted creates n orders of customer and waits until the read
// model has committed them.
func createCommitted(t *testing.T, e *env, customer string, n int) {
	t.Helper()
	var last uint64
	for range n {
		c, err := e.cmd.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: customer, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		last = c.GetPosition()
	}
	if err := e.runner.WaitForCommitted(t.Context(), last); err != nil {
		t.Fatal(err)
	}
}
