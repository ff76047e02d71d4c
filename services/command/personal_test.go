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
