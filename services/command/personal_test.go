package command_test

import (
	"bytes"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPersonalDataSealedAndKeyedFingerprint: with a keyring, the stored
// event holds no plain text of the address, and the request fingerprint of
// a request with an address is keyed (so nobody can hash a guessed address
// to confirm it), while retries and reuses of the request id are still told
// apart. Forgetting the customer leaves the order readable with the
// address erased.
func TestPersonalDataSealedAndKeyedFingerprint(t *testing.T) {
	ctx := t.Context()
	store := memstore.New()
	svc := newKeyedService(t, store)
	client := serve(t, svc)
	req := &ordersv1.CreateOrderRequest{RequestId: "seal-1", OrderId: "seal-o1", CustomerId: "cust-s", Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Name: "Grace Hopper", Line1: "7 Cobol Court", City: "Arlington", Country: "US"}}
	first, err := client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := first.GetOrder().GetShippingAddress().GetLine1(); got != "7 Cobol Court" {
		t.Fatalf("answer shows address line %q", got)
	}
	recs, err := store.Load(ctx, "seal-o1")
	if err != nil || len(recs) != 1 {
		t.Fatalf("Load = %d events, %v", len(recs), err)
	}
	if bytes.Contains(recs[0].Data, []byte("Cobol")) || bytes.Contains(recs[0].Data, []byte("Hopper")) {
		t.Fatal("the stored event holds the address in plain text")
	}
	if fp := recs[0].Meta.RequestFingerprint; !strings.HasPrefix(fp, "k1:") {
		t.Fatalf("fingerprint %q is not keyed", fp)
	}
	again, err := client.CreateOrder(ctx, req)
	if err != nil || again.GetPosition() != first.GetPosition() {
		t.Fatalf("retry = %v, %v", again, err)
	}
	other := &ordersv1.CreateOrderRequest{RequestId: "seal-1", OrderId: "seal-o1", CustomerId: "cust-s", Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Line1: "8 Cobol Court", City: "Arlington", Country: "US"}}
	_, err = client.CreateOrder(ctx, other)
	if st, _ := status.FromError(err); st.Code() != codes.AlreadyExists || !rpcerr.IsRequestIDReused(st) {
		t.Fatalf("another address under the same request id: %v", err)
	}
	pos, err := svc.ForgetCustomer(ctx, "cust-s", "forget-s")
	if err != nil || pos == 0 {
		t.Fatalf("ForgetCustomer = %d, %v", pos, err)
	}
	got, err := client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "seal-3", OrderId: "seal-o1", Sku: "A", Quantity: 1, UnitPrice: 100})
	if err != nil || !got.GetOrder().GetShippingAddress().GetErased() || !got.GetOrder().GetPersonalDataErased() {
		t.Fatalf("order after forgetting: %v, %v", got.GetOrder().GetShippingAddress(), err)
	}
}

// An exact retry of a request with personal data is answered as its
// original was after the customer was forgotten, whether the customer has
// a new data key since (a new order of theirs made one) or the retry is a
// CreateOrder with a derived id (whose first turn, before it is known to
// be a retry, makes one). Both were refused as another request under the
// id: their fingerprints, keyed with the new key, never matched.
func TestRetryAfterTheCustomerWasForgottenGetsItsOriginal(t *testing.T) {
	ctx := t.Context()
	svc := newKeyedService(t, memstore.New())
	client := serve(t, svc)
	if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "fr-c1", OrderId: "fr-o1", CustomerId: "cust-fr", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	set := &ordersv1.SetShippingAddressRequest{RequestId: "fr-s1", OrderId: "fr-o1", ShippingAddress: address()}
	first, err := client.SetShippingAddress(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	derived := &ordersv1.CreateOrderRequest{RequestId: "fr-d1", CustomerId: "cust-fr", Currency: "EUR", ShippingAddress: address()}
	created, err := client.CreateOrder(ctx, derived)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ForgetCustomer(ctx, "cust-fr", "fr-f1"); err != nil {
		t.Fatal(err)
	}
	if again, err := client.CreateOrder(ctx, derived); err != nil || again.GetPosition() != created.GetPosition() {
		t.Fatalf("a derived-id CreateOrder retried after its customer was forgotten: %v, %v; want its original's answer at position %d", again, err, created.GetPosition())
	}
	// The customer comes back: a new order with an address, a new key.
	if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "fr-c2", OrderId: "fr-o2", CustomerId: "cust-fr", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	if again, err := client.SetShippingAddress(ctx, set); err != nil || again.GetPosition() != first.GetPosition() {
		t.Fatalf("an address change retried after its customer was forgotten and got a new key: %v, %v; want its original's answer at position %d", again, err, first.GetPosition())
	}
	// Another address under the id, the customer's key not destroyed
	// since its original, is still another request.
	moved := &ordersv1.Address{Line1: "1 New Way", City: "Bern", Country: "CH"}
	if _, err := client.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: "fr-s2", OrderId: "fr-o2", ShippingAddress: moved}); err != nil {
		t.Fatal(err)
	}
	other := &ordersv1.Address{Line1: "1 Other Way", City: "Bern", Country: "CH"}
	_, err = client.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: "fr-s2", OrderId: "fr-o2", ShippingAddress: other})
	reused(t, "another address under an id the customer's current key fingerprinted", err)
}

// After the customer was forgotten, a request of another method under the
// request id of a request with personal data is refused as another
// request: its method is no personal data. A ShipOrder under an address
// change's id was answered with that change's result, as if shipped, and
// nothing was recorded.
func TestAnotherMethodUnderAForgottenRequestIDIsRefused(t *testing.T) {
	ctx := t.Context()
	svc := newKeyedService(t, memstore.New())
	client := serve(t, svc)
	if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "fm-c1", OrderId: "fm-o1", CustomerId: "cust-fm", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: "fm-s1", OrderId: "fm-o1", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ForgetCustomer(ctx, "cust-fm", "fm-f1"); err != nil {
		t.Fatal(err)
	}
	_, err := client.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: "fm-s1", OrderId: "fm-o1", Carrier: "DHL", TrackingNumber: "JD1"})
	reused(t, "a ShipOrder under an address change's request id, its customer forgotten", err)
}
