package convert_test

import (
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/order"
)

func BenchmarkEncodeEvent(b *testing.B) {
	e := order.OrderCreated{OrderID: "0193c1d2-aaaa-7bbb-8ccc-123456789abc", CustomerID: "cust-42", Currency: "EUR",
		Lines:    []order.Line{{SKU: "BOOK-1", Quantity: 2, UnitPrice: 1250}, {SKU: "PEN-9", Quantity: 3, UnitPrice: 199}},
		Shipping: &order.Address{Name: "Ada", Line1: "1 Analytical Way", City: "London", Country: "GB"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := convert.EncodeEvent(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: "0193c1d2-aaaa-7bbb-8ccc-123456789abc", CustomerID: "cust-42", Currency: "EUR",
		Lines:    []order.Line{{SKU: "BOOK-1", Quantity: 2, UnitPrice: 1250}, {SKU: "PEN-9", Quantity: 3, UnitPrice: 199}},
		Shipping: &order.Address{Name: "Ada", Line1: "1 Analytical Way", City: "London", Country: "GB"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := convert.DecodeEvent(typ, data); err != nil {
			b.Fatal(err)
		}
	}
}
