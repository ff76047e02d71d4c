package projections_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// An event whose sealed envelope was altered to name a customer id no
// command accepts (longer than the key store's entries allow) is
// dead-lettered, and the projection goes on past it. The keys store
// refused the id, the refusal read as the keys being unavailable, and
// every query node waited at that position for ever.
func TestEnvelopeNamingAnImpossibleCustomerIsDeadLettered(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	ks, err := keys.Open(ctx, js, keys.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{5}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	ring := pii.NewKeyring(ks, master)
	typ, data, err := convert.SealEvent(ctx, ring, "o-1", "c-1", order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR",
		Shipping: &order.Address{Line1: "1 Road", City: "Rome", Country: "IT"}})
	if err != nil {
		t.Fatal(err)
	}
	var pb ordersv1.Event
	if err := proto.Unmarshal(data, &pb); err != nil {
		t.Fatal(err)
	}
	pb.GetSealed().CustomerId = strings.Repeat("c", keys.MaxCustomerID+1)
	poisoned, err := proto.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	if _, err := store.Append(ctx, "o-1", 0, []eventstore.EventData{{Type: typ, Data: poisoned, Meta: eventstore.Metadata{RequestID: "r1", OccurredAt: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	after := create(t, store, "o-2", "c-2")
	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(store, d, projections.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.WaitForCommitted(wctx, after); err != nil {
		t.Fatalf("the projection did not get past the altered envelope to position %d: %v", after, err)
	}
	if _, _, err := r.ReadModel().GetOrder(ctx, "o-1"); !errors.Is(err, projections.ErrOrderNotFound) {
		t.Fatalf("order o-1, whose only event is altered: %v, want it dead-lettered (not found)", err)
	}
	if r.DeadLettered() != 1 {
		t.Fatalf("%d dead letters, want the altered event's", r.DeadLettered())
	}
}
