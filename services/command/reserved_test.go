package command_test

import (
	"fmt"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The process managers' request ids ("pay:<position>", "refund:<position>",
// "deadline:<kind>:<position>") are refused on every method but the one
// their manager uses, so a client cannot take one first and make the
// manager's recording fail as a reused request id.
func TestProcessManagersRequestIDsAreReserved(t *testing.T) {
	ctx := t.Context()
	svc := newService(t, memstore.New())
	placed := func(t *testing.T, id string) uint64 {
		t.Helper()
		if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id + "-c", OrderId: id, CustomerId: "cust", Currency: "EUR", ShippingAddress: address()}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: id + "-a", OrderId: id, Sku: "PEN", Quantity: 1, UnitPrice: 250}); err != nil {
			t.Fatal(err)
		}
		p, err := svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: id + "-p", OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		return p.GetPosition()
	}
	placedAt := placed(t, "o-reserved")

	// Each call is well-formed: under an ordinary request id the first of
	// each method would be accepted.
	calls := map[string]func(rid string) error{
		"CreateOrder": func(rid string) error {
			_, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid, CustomerId: "cust", Currency: "EUR"})
			return err
		},
		"AddItem": func(rid string) error {
			_, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid, OrderId: "o-draft", Sku: "INK", Quantity: 1, UnitPrice: 1})
			return err
		},
		"RecordPayment": func(rid string) error {
			_, err := svc.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid, OrderId: "o-reserved", Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED, PaymentRef: "psp-1", Reason: "card expired"})
			return err
		},
		"CancelOrder": func(rid string) error {
			_, err := svc.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: rid, OrderId: "o-reserved", Reason: "changed my mind"})
			return err
		},
	}
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "draft", OrderId: "o-draft", CustomerId: "cust", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct{ method, prefix string }{
		{"CreateOrder", "pay:"}, {"AddItem", "pay:"}, {"CancelOrder", "pay:"},
		{"CreateOrder", "refund:"}, {"AddItem", "refund:"}, {"RecordPayment", "refund:"}, {"CancelOrder", "refund:"},
		{"CreateOrder", "deadline:payment_timeout:"}, {"AddItem", "deadline:payment_timeout:"}, {"RecordPayment", "deadline:payment_timeout:"},
	} {
		// A request id of its own for each call, so no refusal is the
		// answer to an id an earlier call took.
		rid := fmt.Sprint(c.prefix, 100+i)
		err := calls[c.method](rid)
		if status.Code(err) != codes.InvalidArgument || violation(err) != "request_id" {
			t.Errorf("%s with request id %q = %v; want INVALID_ARGUMENT on request_id", c.method, rid, err)
		}
	}

	// Nothing was appended by the refusals: the order is still placed, and
	// its manager's own method takes the manager's request id.
	// A manager's id names an event of the order it acts on: one that
	// names another order's event (o-timeout's placement, here) would take
	// that order's recording's id first.
	timeoutAt := placed(t, "o-timeout")
	for _, rid := range []string{fmt.Sprint("pay:", timeoutAt), "pay:", "pay:x"} {
		if err := calls["RecordPayment"](rid); status.Code(err) != codes.InvalidArgument || violation(err) != "request_id" {
			t.Errorf("RecordPayment on o-reserved under %q = %v; want INVALID_ARGUMENT on request_id", rid, err)
		}
	}
	if err := calls["RecordPayment"](fmt.Sprint("pay:", placedAt)); err != nil {
		t.Fatalf("RecordPayment under pay:%d: %v", placedAt, err)
	}
	rid := fmt.Sprint("deadline:payment_timeout:", timeoutAt)
	if _, err := svc.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: rid, OrderId: "o-timeout", Reason: "payment_timeout"}); err != nil {
		t.Fatalf("CancelOrder under %s: %v", rid, err)
	}
	// Ids that only look alike stay the client's.
	for _, rid := range []string{"PAY:17", "payment:17", "x-pay:17"} {
		if err := calls["CreateOrder"](rid); err != nil {
			t.Errorf("CreateOrder with request id %q: %v", rid, err)
		}
	}
}

// violation is the field of err's BadRequest detail, "" without one.
func violation(err error) string {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}
