package command_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// countingKeys counts the keys created in a pii.MemStore.
type countingKeys struct {
	*pii.MemStore
	created atomic.Int64
	ids     atomic.Value
}

func (c *countingKeys) Create(ctx context.Context, customerID string, wrapped []byte) (uint64, error) {
	c.created.Add(1)
	c.ids.Store(customerID)
	return c.MemStore.Create(ctx, customerID, wrapped)
}

// countingService serves a command service whose keyring keeps its data
// keys in a counted pii.MemStore.
func countingService(t *testing.T) (ordersv1.OrderCommandServiceClient, *countingKeys) {
	t.Helper()
	ks := &countingKeys{MemStore: pii.NewMemStore()}
	svc, err := command.New(memstore.New(), command.WithKeyring(pii.NewKeyring(ks, testMaster(t))))
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, svc), ks
}

// A refused CreateOrder that carries an address is answered without the
// keyring: its keyed fingerprint, computed before the request was checked,
// created a data key for whatever customer_id the client sent.
func TestRefusedRequestCreatesNoDataKey(t *testing.T) {
	client, ks := countingService(t)
	for i, req := range []*ordersv1.CreateOrderRequest{
		{RequestId: "bad-cust-1", OrderId: "o-bad-1", CustomerId: "not an id", Currency: "EUR", ShippingAddress: address()},
		{RequestId: "bad-cur-1", OrderId: "o-bad-2", CustomerId: "cust-x", Currency: "eur", ShippingAddress: address()},
	} {
		_, err := client.CreateOrder(t.Context(), req)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("request %d: %v, want INVALID_ARGUMENT", i, err)
		}
	}
	if n := ks.created.Load(); n != 0 {
		t.Fatalf("refused requests created %d data key(s) (last for customer %q)", n, ks.ids.Load())
	}
}

// With the keys bucket, a CreateOrder with an address and a customer_id
// far over its limit is INVALID_ARGUMENT. Before, the keyring was asked
// for the key of the unchecked id: the key's subject was over the server's
// protocol line limit, the server closed the connection the event store
// shares for good, and every later command failed with UNAVAILABLE.
func TestOverlongCustomerIDWithAddressIsInvalid(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	kb, err := keys.Open(t.Context(), js, keys.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	master, _ := pii.NewMasterKey(bytes.Repeat([]byte{3}, pii.KeySize))
	svc, err := command.New(store, command.WithKeyring(pii.NewKeyring(kb, master)))
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, svc)
	_, err = client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "long-cust", OrderId: "o-long",
		CustomerId: strings.Repeat("c", 5000), Currency: "EUR", ShippingAddress: address()})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("CreateOrder with a 5000-character customer_id: %v, want INVALID_ARGUMENT", err)
	}
	// The service still serves valid requests.
	if _, err := client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "after-long", OrderId: "o-after",
		CustomerId: "cust-ok", Currency: "EUR"}); err != nil {
		t.Errorf("a valid CreateOrder after it: %v", err)
	}
}

// A CreateOrder with an address that reuses another create's request id
// for another customer is refused (REQUEST_ID_REUSED), and creates no data
// key for the customer it names: it was fingerprinted, to compare with its
// original's, under that customer's key, made for it. (With a derived
// order id the request is appended before it is known to be a retry, and
// makes the key as a new order of that customer's would.)
func TestReusedRequestIDCreatesNoDataKey(t *testing.T) {
	client, ks := countingService(t)
	if _, err := client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "reuse-key-1", OrderId: "o-reuse-key",
		CustomerId: "cust-a", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	if n := ks.created.Load(); n != 1 {
		t.Fatalf("%d keys after the first create", n)
	}
	_, err := client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "reuse-key-1", OrderId: "o-reuse-key",
		CustomerId: "cust-b", Currency: "EUR", ShippingAddress: address()})
	reused(t, "reused request id", err)
	if n := ks.created.Load(); n != 1 {
		t.Fatalf("the refused request created a data key (%d keys, last for %q)", n, ks.ids.Load())
	}
}

// A client's exact retry of a request with personal data, after its
// customer was forgotten, is answered as the original was: the original's
// keyed fingerprint can no longer be checked, so the request id is
// trusted, as for events recorded before fingerprints. Before, the retry
// made the forgotten customer a new data key and was refused as another
// request under the same id.
func TestRetryAfterTheCustomerWasForgottenIsAnsweredAsTheOriginal(t *testing.T) {
	ks := &countingKeys{MemStore: pii.NewMemStore()}
	svc, err := command.New(memstore.New(), command.WithKeyring(pii.NewKeyring(ks, testMaster(t))))
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, svc)
	ctx := t.Context()
	if _, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "forget-retry-c", OrderId: "o-forget-retry", CustomerId: "cust-z", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	set := &ordersv1.SetShippingAddressRequest{RequestId: "forget-retry-s", OrderId: "o-forget-retry", ShippingAddress: address()}
	first, err := client.SetShippingAddress(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ForgetCustomer(ctx, "cust-z", "forget-retry-f"); err != nil {
		t.Fatal(err)
	}
	keys := ks.created.Load()
	again, err := client.SetShippingAddress(ctx, set)
	if err != nil {
		t.Fatalf("the retry after the erasure: %v, want the original's answer", err)
	}
	if again.GetRevision() != first.GetRevision() || again.GetPosition() != first.GetPosition() {
		t.Errorf("the retry answered revision %d at %d, the original %d at %d", again.GetRevision(), again.GetPosition(), first.GetRevision(), first.GetPosition())
	}
	if n := ks.created.Load(); n != keys {
		t.Errorf("the retry made the forgotten customer %d new data key(s)", n-keys)
	}
}
