package command_test

import (
	"bytes"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A stored event whose sealed envelope names a customer id no command
// accepts was altered: the order's command is answered INTERNAL like any
// other event that does not decode. It was INVALID_ARGUMENT on
// customer_id, a field the client never sent, telling it to fix a request
// that was fine, and the corrupt log went unlogged.
func TestAlteredSealedEnvelopeIsInternalNotTheClientsMistake(t *testing.T) {
	store := memstore.New()
	client := serve(t, newKeyedService(t, store))
	ctx := t.Context()
	data, err := proto.Marshal(&ordersv1.Event{
		Event:  &ordersv1.Event_OrderCreated{OrderCreated: &ordersv1.OrderCreated{OrderId: "o-altered", CustomerId: "cust-1", Currency: "EUR"}},
		Sealed: &ordersv1.Sealed{CustomerId: "not an id", KeyVersion: 1, Ciphertext: bytes.Repeat([]byte{1}, 40)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, "o-altered", 0, []eventstore.EventData{{Type: "OrderCreated", Data: data}}); err != nil {
		t.Fatal(err)
	}
	_, err = client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-altered", Sku: "PEN", Quantity: 1, UnitPrice: 5})
	st, _ := status.FromError(err)
	if st.Code() != codes.Internal || strings.Contains(st.Message(), "customer_id") {
		t.Fatalf("AddItem on an order with an altered envelope: %v, want a bare INTERNAL", err)
	}
}
