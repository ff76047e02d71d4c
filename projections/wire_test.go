package projections

import (
	"bytes"
	"errors"
	"testing"
	"time"
	"unicode/utf8"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// wireOrders are stored orders of every shape the read model holds: bare,
// with lines (one worth nothing), an address, times, refunds, erasure
// flags, and amounts negative and past int64 when summed.
func wireOrders() []*ordersv1.Order {
	at := timestamppb.New(time.Date(2026, 12, 5, 21, 30, 0, 5, time.UTC))
	return []*ordersv1.Order{
		{},
		{Status: ordersv1.OrderStatus_ORDER_STATUS_DRAFT, Currency: "EUR", Version: 1, CreatedAt: at, UpdatedAt: at},
		{
			Status: ordersv1.OrderStatus_ORDER_STATUS_SHIPPED, Currency: "USD", Version: 7, Total: 2_500, Tax: 475,
			Lines: []*ordersv1.LineItem{
				{Sku: "A-1", Quantity: 2, UnitPrice: 1_000},
				{Sku: "FREE", Quantity: 3},
				{Sku: "B-2", Quantity: 1, UnitPrice: 500},
			},
			ShippingAddress: &ordersv1.Address{Name: "Zoë", Line1: "1 Rue", City: "Paris", Country: "FR"},
			PaymentRef:      "pay-1", Carrier: "DHL", TrackingNumber: "T1",
			CreatedAt: at, UpdatedAt: at, PlacedAt: at, PaidAt: at, ShippedAt: at, PaidAmount: 2_975,
		},
		{Currency: "JPY", Version: 3, Total: -5, Tax: -7, Lines: []*ordersv1.LineItem{{Sku: "NEG", Quantity: -1, UnitPrice: 5}}},
		{Currency: "GBP", Version: 1 << 31, Total: 1 << 62, Tax: 1 << 62, PersonalDataErased: true, TrackingNumberErased: true, RefundRef: "r", RefundedAt: at},
	}
}

// An order's wire encoding reads back as the message readBody returns for
// the same row, for every shape of stored body: as appendMessage writes it,
// and with the derived fields set, as schema 3 first wrote them.
func TestOrderWireReadsAsReadBody(t *testing.T) {
	for i, o := range wireOrders() {
		full := proto.Clone(o).(*ordersv1.Order)
		full.OrderId, full.CustomerId, full.Revision, full.GrandTotal = "stale-id", "stale-customer", 99, 99
		for _, l := range full.GetLines() {
			l.LineTotal = 99
		}
		old, err := proto.MarshalOptions{Deterministic: true}.Marshal(full)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := appendMessage(nil, proto.Clone(o).(*ordersv1.Order))
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range [][]byte{stored, old} {
			want, err := readBody("o-1", "c-1", body)
			if err != nil {
				t.Fatal(err)
			}
			wire, err := appendOrderWire([]byte("prefix"), "o-1", "c-1", body)
			if err != nil {
				t.Fatalf("order %d: %v", i, err)
			}
			if string(wire[:6]) != "prefix" {
				t.Fatalf("order %d: dst not appended to", i)
			}
			got := &ordersv1.Order{}
			if err := proto.Unmarshal(wire[6:], got); err != nil {
				t.Fatalf("order %d: wire does not parse: %v", i, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("order %d: wire reads as\n%v\nreadBody gives\n%v", i, got, want)
			}
		}
	}
}

// A body readBody refuses is refused: malformed fields at the top and in
// a line, and strings that are not UTF-8 in the order, a line and the
// address.
func TestOrderWireRefusesWhatReadBodyRefuses(t *testing.T) {
	bad := func(o *ordersv1.Order, field func(*ordersv1.Order) *string) []byte {
		*field(o) = "?-marker"
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Replace(b, []byte("?-marker"), []byte("\xff-marker"), 1)
	}
	for name, body := range map[string][]byte{
		"truncated tag":        {0x80},
		"truncated length":     protowire.AppendTag(nil, 4, protowire.BytesType),
		"field number zero":    {0x00, 0x01},
		"bad line":             protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), []byte{0x10}),
		"currency not UTF-8":   bad(&ordersv1.Order{}, func(o *ordersv1.Order) *string { return &o.Currency }),
		"sku not UTF-8":        bad(&ordersv1.Order{Lines: []*ordersv1.LineItem{{}}}, func(o *ordersv1.Order) *string { return &o.Lines[0].Sku }),
		"address not UTF-8":    bad(&ordersv1.Order{ShippingAddress: &ordersv1.Address{}}, func(o *ordersv1.Order) *string { return &o.ShippingAddress.City }),
		"end group at the top": protowire.AppendTag(nil, 3, protowire.EndGroupType),
	} {
		if _, err := readBody("o-1", "c-1", body); err == nil {
			t.Fatalf("%s: readBody takes it; the case tests nothing", name)
		}
		if _, err := appendOrderWire(nil, "o-1", "c-1", body); err == nil {
			t.Errorf("%s: appendOrderWire takes a body readBody refuses", name)
		}
	}
}

// Whatever the stored bytes, the wire encoding is refused exactly when
// readBody refuses the body, and otherwise reads as readBody's message.
func FuzzOrderWire(f *testing.F) {
	for _, o := range wireOrders() {
		b, err := proto.Marshal(o)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "o-1", "c-1")
	}
	f.Add([]byte{0x2a, 0x02, 0x20, 0x05}, "", "")               // a line holding only a line total
	f.Add([]byte{0x0a, 0x01, 0xff, 0x08, 0x01}, "x", "y")       // an order id of invalid UTF-8, overwritten
	f.Add([]byte{0x70, 0x05, 0x72, 0x01, 0x00}, "x", "y")       // version, then field 14 as bytes
	f.Add([]byte{0xab, 0x01, 0x08, 0x01, 0xac, 0x01}, "x", "y") // an unknown group
	f.Fuzz(func(t *testing.T, body []byte, id, customer string) {
		want, wantErr := readBody(id, customer, body)
		wire, err := appendOrderWire(nil, id, customer, body)
		switch {
		case wantErr != nil && err == nil:
			t.Fatalf("readBody refuses the body (%v), appendOrderWire does not", wantErr)
		case wantErr == nil && err != nil:
			t.Fatalf("appendOrderWire refuses a body readBody takes: %v", err)
		case err != nil:
			return
		}
		got := &ordersv1.Order{}
		if err := proto.Unmarshal(wire, got); err != nil {
			if errors.Is(err, proto.Error) && (!utf8.ValidString(id) || !utf8.ValidString(customer)) {
				return // ids come from the row's columns, which hold valid UTF-8
			}
			t.Fatalf("wire does not parse: %v", err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("wire reads as\n%v\nreadBody gives\n%v", got, want)
		}
	})
}

// BenchmarkOrderWire compares a point read's two ways from a stored body
// to the bytes a client receives: the wire encoding made from the body,
// and the message readBody builds, marshalled.
func BenchmarkOrderWire(b *testing.B) {
	body, err := appendMessage(nil, wireOrders()[2])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := appendOrderWire(make([]byte, 0, 512), "o-1", "c-1", body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			o, err := readBody("o-1", "c-1", body)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := proto.Marshal(o); err != nil {
				b.Fatal(err)
			}
		}
	})
}
