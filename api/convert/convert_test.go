package convert_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

func allEvents() []order.Event {
	addr := &order.Address{Name: "Ada Lovelace", Line1: "1 Analytical Way", City: "London", Country: "GB"}
	return []order.Event{
		order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "EUR", Lines: []order.Line{{SKU: "A", Quantity: 2, UnitPrice: 150}}, Shipping: addr},
		order.OrderCreated{OrderID: "o-2", CustomerID: "c-1", Currency: "USD"},
		order.ItemAdded{SKU: "B", Quantity: 1, UnitPrice: 0},
		order.ItemRemoved{SKU: "A"},
		order.ItemQuantityChanged{SKU: "B", Quantity: 7},
		order.ShippingAddressSet{Address: *addr},
		order.OrderPlaced{Subtotal: 280, Tax: 20, Total: 300},
		order.OrderPlaced{Subtotal: 300, Total: 300},
		order.PaymentAuthorized{PaymentRef: "psp-1", Amount: 300},
		order.PaymentDeclined{PaymentRef: "psp-2", Reason: "insufficient funds"},
		order.OrderCancelled{Reason: "changed mind"},
		order.OrderShipped{Carrier: "DHL", TrackingNumber: "TRACK-0042-T1"},
		order.OrderDelivered{},
		order.RefundIssued{PaymentRef: "psp-1", RefundRef: "rf-1", Amount: 300},
		order.CustomerForgotten{CustomerID: "c-1"},
	}
}

func TestEventRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range allEvents() {
		typ, data, err := convert.EncodeEvent(e)
		if err != nil {
			t.Fatalf("%T: %v", e, err)
		}
		seen[typ] = true
		got, err := convert.DecodeEvent(typ, data)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("%s round trip:\n got %#v\nwant %#v", typ, got, e)
		}
	}
	for _, typ := range order.EventTypes {
		if !seen[typ] {
			t.Errorf("event type %s has no round-trip case", typ)
		}
	}
}

// TestUpcastPlacedBeforeTax decodes an OrderPlaced in the first form of the
// event, which carried only the total (the lines' sum): it means that
// subtotal and no tax. A recorded subtotal of 0 (an order of free items)
// is not mistaken for the old form.
func TestUpcastPlacedBeforeTax(t *testing.T) {
	for _, tt := range []struct {
		stored *ordersv1.OrderPlaced
		want   order.OrderPlaced
	}{
		{&ordersv1.OrderPlaced{Total: 4250}, order.OrderPlaced{Subtotal: 4250, Total: 4250}},
		{&ordersv1.OrderPlaced{Total: 0}, order.OrderPlaced{}},
		{&ordersv1.OrderPlaced{Total: 120, Subtotal: proto.Int64(0), Tax: 120}, order.OrderPlaced{Subtotal: 0, Tax: 120, Total: 120}},
	} {
		data, err := proto.Marshal(&ordersv1.Event{Event: &ordersv1.Event_OrderPlaced{OrderPlaced: tt.stored}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := convert.DecodeEvent("OrderPlaced", data)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("stored %v decodes to %#v, want %#v", tt.stored, got, tt.want)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	_, placed, _ := convert.EncodeEvent(order.OrderPlaced{Total: 1})
	future, _ := proto.Marshal(&ordersv1.Event{}) // no case this build knows
	future = append(future, 0xa2, 0x06, 0x00)     // field 100, empty bytes
	for _, tt := range []struct {
		name, typ string
		data      []byte
		want      error
	}{
		{"garbage", "OrderPlaced", []byte{0xff, 0xff, 0xff}, convert.ErrCorruptEvent},
		{"type mismatch", "OrderShipped", placed, convert.ErrCorruptEvent},
		{"unknown type header", "OrderTeleported", placed, convert.ErrUnknownEventType},
		{"unknown case", "OrderTeleported", future, convert.ErrUnknownEventType},
		{"known type, no case", "OrderPlaced", nil, convert.ErrCorruptEvent},
		{"known type, newer case", "OrderPlaced", future, convert.ErrCorruptEvent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := convert.DecodeEvent(tt.typ, tt.data); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStatusMapping(t *testing.T) {
	for s := order.StatusDraft; s <= order.StatusCancelled; s++ {
		pb := convert.StatusToProto(s)
		back, ok := convert.StatusFromProto(pb)
		if !ok || back != s {
			t.Fatalf("%v → %v → %v, %v", s, pb, back, ok)
		}
	}
	if _, ok := convert.StatusFromProto(ordersv1.OrderStatus(99)); ok {
		t.Fatal("unknown enum value accepted")
	}
	if _, ok := convert.StatusFromProto(ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED); ok {
		t.Fatal("UNSPECIFIED accepted")
	}
}

// FuzzDecodeEvent: arbitrary stored bytes never panic, and anything that
// decodes re-encodes to an equal event.
func FuzzDecodeEvent(f *testing.F) {
	for _, e := range allEvents() {
		typ, data, _ := convert.EncodeEvent(e)
		f.Add(typ, data)
	}
	f.Add("OrderPlaced", []byte{0xff})
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e, err := convert.DecodeEvent(typ, data)
		if err != nil {
			if !errors.Is(err, convert.ErrCorruptEvent) && !errors.Is(err, convert.ErrUnknownEventType) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		typ2, data2, err := convert.EncodeEvent(e)
		if err != nil || typ2 != typ {
			t.Fatalf("re-encode: %s %v", typ2, err)
		}
		e2, err := convert.DecodeEvent(typ2, data2)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("re-decode differs: %#v vs %#v (%v)", e, e2, err)
		}
	})
}
