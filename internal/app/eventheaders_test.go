package app_test

import (
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// The upgrade README describes: a node on EVENT_HEADERS=separate writes one
// header per field, the default writes the compact header, and an order
// whose history holds both reads, projects and verifies as one.
func TestEventHeadersUpgrade(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	addrs, stop := run(t, dir, "EVENT_HEADERS", "separate")
	cmd := ordersv1.NewOrderCommandServiceClient(dial(t, addrs.GRPC))
	created, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "h-1", CustomerId: "c-1", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()
	stop()

	addrs, _ = run(t, dir)
	conn := dial(t, addrs.GRPC)
	added, err := ordersv1.NewOrderCommandServiceClient(conn).AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "h-2", OrderId: id, Sku: "A", Quantity: 2, UnitPrice: 150})
	if err != nil || added.GetOrder().GetVersion() != 2 {
		t.Fatalf("AddItem on an order created in the separate format: %v %v", added, err)
	}

	_, js := estest.ConnectURL(t, "nats://"+addrs.NATS)
	st, err := js.Stream(ctx, eventstore.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		pos      uint64
		compact  bool
		wantType string
	}{{created.GetPosition(), false, "OrderCreated"}, {added.GetPosition(), true, "ItemAdded"}} {
		m, err := st.GetMsg(ctx, c.pos)
		if err != nil {
			t.Fatal(err)
		}
		compact := m.Header.Get(eventstore.HeaderMeta) != ""
		separate := m.Header.Get(eventstore.HeaderEventType) == c.wantType
		if compact != c.compact || separate == c.compact {
			t.Errorf("event at %d: headers %v, want compact=%v", c.pos, m.Header, c.compact)
		}
	}

	got, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id, Consistency: &ordersv1.Consistency{MinPosition: added.GetPosition()}})
	if err != nil || got.GetOrder().GetVersion() != 2 || len(got.GetOrder().GetLines()) != 1 || got.GetOrder().GetTotal() != 300 {
		t.Fatalf("read model of the mixed history: %v %v", got, err)
	}
	v, err := ordersv1.NewOrderAuditServiceClient(conn).VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
	if err != nil || !v.GetOk() || v.GetEventsChecked() != 2 {
		t.Fatalf("verify the mixed history: %v %v", v, err)
	}
}
