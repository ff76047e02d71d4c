package command_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/proto"
)

// The contract says LineItem.line_total and Address.erased are output only
// and "ignored on input": a retry that differs from its original only in
// them is the same request and gets the original's answer, not
// ALREADY_EXISTS (REQUEST_ID_REUSED, REST 422).
func TestRetryDifferingOnlyInIgnoredFieldsIsTheSameRequest(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	for name, tweak := range map[string]func(*ordersv1.CreateOrderRequest){
		"line_total": func(r *ordersv1.CreateOrderRequest) {
			r.Lines[0].LineTotal = r.Lines[0].Quantity * r.Lines[0].UnitPrice
		},
		"erased": func(r *ordersv1.CreateOrderRequest) { r.ShippingAddress.Erased = true },
	} {
		req := &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "cust-1", Currency: "EUR",
			Lines:           []*ordersv1.LineItem{{Sku: "BOOK-1", Quantity: 2, UnitPrice: 1250}},
			ShippingAddress: address()}
		first, err := e.client.CreateOrder(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		retry := proto.CloneOf(req)
		tweak(retry)
		again, err := e.client.CreateOrder(ctx, retry)
		if err != nil || !proto.Equal(first, again) {
			t.Errorf("retry with %s set, a field ignored on input: %v, %v; want the original answer", name, again, err)
		}
	}
}
