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

// staleKeys is an audit node whose keyring has cached customer's key of
// order, placed with address line1, and a command node that shares its
// keys' store but not its cache: what that node erases, this one's watch
// has not brought (none runs here), as on a node whose watch is behind.
type staleKeys struct {
	audit ordersv1.OrderAuditServiceClient
	other *command.Service
}

func newStaleKeys(t *testing.T, order, customer, line1 string) *staleKeys {
	t.Helper()
	master := masterKey(t)
	keys := pii.NewMemStore()
	store := memstore.New()
	other, err := command.New(store, command.WithKeyring(pii.NewKeyring(keys, master)))
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.New(store, nil, audit.WithKeyring(pii.NewKeyring(keys, master)))
	if err != nil {
		t.Fatal(err)
	}
	s := &staleKeys{
		audit: ordersv1.NewOrderAuditServiceClient(listen(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, aud) })),
		other: other,
	}
	if _, err := other.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: order, CustomerId: customer, Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Line1: line1, City: "Rome", Country: "IT"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: order}); err != nil { // caches the key
		t.Fatal(err)
	}
	return s
}

// An export on a node that has not yet learnt of an erasure shows the
// order's events from before it erased, as the history on the same node
// does: it opened them with the cached key until it reached the erasure in
// the log, after it had sent them in the clear.
func TestExportDoesNotOpenWithAKeyErasedSinceItWasCached(t *testing.T) {
	for name, req := range map[string]*ordersv1.StreamEventsRequest{
		"whole log": {},
		"by order":  {OrderIds: []string{"pre-seal"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStaleKeys(t, "pre-seal", "c-pre", "1 Known Road")
			if _, err := s.other.ForgetCustomer(t.Context(), "c-pre", rid()); err != nil {
				t.Fatal(err)
			}
			stream, err := s.audit.StreamEvents(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			var created *ordersv1.RecordedEvent
			for {
				res, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if res.GetEvent().GetEvent().GetOrderCreated() != nil {
					created = res.GetEvent()
				}
			}
			if created == nil {
				t.Fatal("the export holds no OrderCreated")
			}
			if a := created.GetEvent().GetOrderCreated().GetShippingAddress(); !a.GetErased() || a.GetLine1() != "" {
				t.Fatalf("the export after the customer was forgotten shows the address at %d: %v", created.GetPosition(), a)
			}
		})
	}
}

// A customer forgotten and back since (a new order made a new key) has a
// key again, so asking the keys' leader whether there is one did not drop
// the node's cached key of before the erasure, and the history of the
// customer's old order opened what the erasure destroyed.
func TestHistoryOfACustomerBackSinceTheErasureStaysErased(t *testing.T) {
	s := newStaleKeys(t, "old-order", "c-back", "1 Old Road")
	ctx := t.Context()
	if _, err := s.other.ForgetCustomer(ctx, "c-back", rid()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.other.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "new-order", CustomerId: "c-back", Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Line1: "9 New Road", City: "Rome", Country: "IT"}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "old-order"})
	if err != nil {
		t.Fatal(err)
	}
	if a := h.GetEvents()[0].GetEvent().GetOrderCreated().GetShippingAddress(); !a.GetErased() || a.GetLine1() != "" {
		t.Fatalf("the old order's history shows the erased address: %v", a)
	}
	n, err := s.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "new-order"})
	if err != nil {
		t.Fatal(err)
	}
	if a := n.GetEvents()[0].GetEvent().GetOrderCreated().GetShippingAddress(); a.GetLine1() != "9 New Road" {
		t.Fatalf("the new order's history: %v, want its address opened", a)
	}
}
