package audit_test

import (
	"errors"
	"io"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
)

// An export opens what follows a customer's erasure without the key the
// erasure destroyed, though its keyring still cached it: another node,
// not yet told of the erasure, may have sealed an event with that key
// after it, and the export showed that event's address in the clear where
// every other read shows it erased. Three keyrings over one store stand
// for three nodes whose caches have not learnt of the erasure. So does an
// export filtered by type or by order, which does not send the erasure
// itself: before, such an export never learnt of it.
func TestExportDoesNotOpenWhatFollowsAnErasureWithTheErasedKey(t *testing.T) {
	for name, req := range map[string]*ordersv1.StreamEventsRequest{
		"whole":    {},
		"by type":  {EventTypes: []string{"ShippingAddressSet"}},
		"by order": {OrderIds: []string{"late-seal"}},
		"history":  nil, // GetOrderHistory
	} {
		t.Run(name, func(t *testing.T) { exportAfterAnErasure(t, req) })
	}
}

// exportAfterAnErasure runs req (nil: the order's history) on an audit node
// whose keyring still caches the key of a customer erased since, after
// another node sealed an address for that customer with it, and checks
// that the export shows that address erased.
func exportAfterAnErasure(t *testing.T, req *ordersv1.StreamEventsRequest) {
	master := masterKey(t)
	keys := pii.NewMemStore()
	store := memstore.New()
	late, err := command.New(store, command.WithKeyring(pii.NewKeyring(keys, master))) // the node that has not learnt of it
	if err != nil {
		t.Fatal(err)
	}
	forgetter, err := command.New(store, command.WithKeyring(pii.NewKeyring(keys, master)))
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.New(store, nil, audit.WithKeyring(pii.NewKeyring(keys, master)))
	if err != nil {
		t.Fatal(err)
	}
	client := ordersv1.NewOrderAuditServiceClient(listen(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, aud) }))

	ctx := t.Context()
	if _, err := late.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "late-seal", CustomerId: "c-late", Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Line1: "1 Known Road", City: "Rome", Country: "IT"}}); err != nil {
		t.Fatal(err)
	}
	// The audit node caches the customer's key.
	if _, err := client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "late-seal"}); err != nil {
		t.Fatal(err)
	}
	if _, err := forgetter.ForgetCustomer(ctx, "c-late", rid()); err != nil {
		t.Fatal(err)
	}
	if _, err := late.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: rid(), OrderId: "late-seal",
		ShippingAddress: &ordersv1.Address{Line1: "2 Secret Lane", City: "Rome", Country: "IT"}}); err != nil {
		t.Fatal(err)
	}
	var events []*ordersv1.RecordedEvent
	if req == nil {
		h, err := client.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "late-seal"})
		if err != nil {
			t.Fatal(err)
		}
		events = h.GetEvents()
	} else {
		s, err := client.StreamEvents(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for {
			res, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, res.GetEvent())
		}
	}
	set := 0
	for _, ev := range events {
		if ids := req.GetOrderIds(); len(ids) > 0 && ev.GetOrderId() != ids[0] {
			t.Fatalf("an export of order %s sent an event of %s", ids[0], ev.GetOrderId())
		}
		a := ev.GetEvent().GetShippingAddressSet().GetShippingAddress()
		if a == nil {
			continue
		}
		set++
		if !a.GetErased() {
			t.Fatalf("the export shows the address set after the erasure, at %d, in the clear: %v", ev.GetPosition(), a)
		}
	}
	if set != 1 {
		t.Fatalf("the export holds %d address changes, want the one set after the erasure", set)
	}
}
