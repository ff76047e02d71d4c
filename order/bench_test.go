package order_test

import (
	"testing"
	"time"

	"github.com/orderstream/orderstream/order"
)

// BenchmarkDecideEvolve runs one order through its whole lifecycle: the
// domain's share of the cost of serving every command of an order.
func BenchmarkDecideEvolve(b *testing.B) {
	addr := homeAddress()
	create := order.CreateOrder{
		OrderID: "ord-1", CustomerID: "cust-1", Currency: "EUR",
		Lines: []order.Line{
			{SKU: "SKU-1", Quantity: 2, UnitPrice: 1250},
			{SKU: "SKU-2", Quantity: 1, UnitPrice: 999},
			{SKU: "SKU-3", Quantity: 4, UnitPrice: 25},
		},
		Shipping: &addr,
	}
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	step := func(s order.State, c order.Command) order.State {
		events, err := order.Decide(s, c)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range events {
			s = order.Evolve(s, e, at)
		}
		return s
	}
	b.ReportAllocs()
	for b.Loop() {
		s := step(order.State{}, create)
		s = step(s, order.AddItem{SKU: "SKU-4", Quantity: 1, UnitPrice: 5000})
		s = step(s, order.ChangeItemQuantity{SKU: "SKU-1", Quantity: 3})
		s = step(s, order.RemoveItem{SKU: "SKU-3"})
		s = step(s, order.SetShippingAddress{Address: otherAddress()})
		s = step(s, order.PlaceOrder{})
		s = step(s, order.RecordPayment{PaymentRef: "pay-1", Reason: "insufficient funds"})
		s = step(s, order.RecordPayment{Authorized: true, PaymentRef: "pay-2", Amount: s.Total, Currency: "EUR"})
		s = step(s, order.ShipOrder{Carrier: "DHL", TrackingNumber: "JD0123"})
		s = step(s, order.ConfirmDelivery{})
		if s.Status != order.StatusDelivered {
			b.Fatalf("status %v", s.Status)
		}
	}
}
