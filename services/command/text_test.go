package command_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Text that would spoof what an operator reads (a bidi override, a line
// separator) answers INVALID_ARGUMENT with a BadRequest naming the field,
// and writes nothing.
func TestSpoofingTextIsInvalidArgument(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	draft := createDraft(t, e).GetOrder()
	calls := map[string]func() error{
		"shipping_address.name": func() error {
			_, err := e.client.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: rid(), OrderId: draft.GetOrderId(),
				ShippingAddress: &ordersv1.Address{Name: "Ada \u202egpj.exe", Line1: "1 Way", City: "Oslo", Country: "NO"}})
			return err
		},
		"shipping_address.line1": func() error {
			_, err := e.client.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: rid(), OrderId: draft.GetOrderId(),
				ShippingAddress: &ordersv1.Address{Line1: "1 Way\u2028Paid in full", City: "Oslo", Country: "NO"}})
			return err
		},
		"reason": func() error {
			_, err := e.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Reason: "\u2066hidden\u2069"})
			return err
		},
	}
	for field, call := range calls {
		st := status.Convert(call())
		var got string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
				got = br.GetFieldViolations()[0].GetField()
			}
		}
		if st.Code() != codes.InvalidArgument || got != field {
			t.Errorf("%s: %v (BadRequest field %q)", field, st.Err(), got)
		}
	}
	recs, err := e.store.Load(ctx, draft.GetOrderId())
	if err != nil || len(recs) != 1 {
		t.Fatalf("the order has %d events (%v), want only its creation", len(recs), err)
	}
}
