package order_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/order"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

var allStatuses = []order.Status{
	order.StatusUnspecified,
	order.StatusDraft,
	order.StatusPlaced,
	order.StatusPaid,
	order.StatusPaymentDeclined,
	order.StatusShipped,
	order.StatusDelivered,
	order.StatusCancelled,
}

var sentinels = []error{order.ErrInvalid, order.ErrNotFound, order.ErrAlreadyExists, order.ErrFailedPrecondition}

func homeAddress() order.Address {
	return order.Address{Name: "Ada Lovelace", Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"}
}

func otherAddress() order.Address {
	return order.Address{Line1: "Unter den Linden 1", City: "Berlin", Country: "DE"}
}

// newOrder is a valid CreateOrder with two lines and an address: total 2*1250 + 1*999.
func newOrder() order.CreateOrder {
	a := homeAddress()
	return order.CreateOrder{
		OrderID:    "ord-1",
		CustomerID: "cust-1",
		Currency:   "EUR",
		Lines: []order.Line{
			{SKU: "SKU-1", Quantity: 2, UnitPrice: 1250},
			{SKU: "SKU-2", Quantity: 1, UnitPrice: 999},
		},
		Shipping: &a,
	}
}

// apply decides c on s and evolves every event, failing the test on error.
func apply(tb testing.TB, s order.State, c order.Command) order.State {
	tb.Helper()
	events, err := order.Decide(s, c)
	if err != nil {
		tb.Fatalf("Decide(%T) in %v: %v", c, s.Status, err)
	}
	for i, e := range events {
		s = order.Evolve(s, e, t0.Add(time.Duration(s.Version+i+1)*time.Minute))
	}
	return s
}

// stateIn builds, through Decide and Evolve only, an order in status st.
func stateIn(tb testing.TB, st order.Status) order.State {
	tb.Helper()
	var s order.State
	if st == order.StatusUnspecified {
		return s
	}
	s = apply(tb, s, newOrder())
	switch st {
	case order.StatusDraft:
	case order.StatusCancelled:
		s = apply(tb, s, order.CancelOrder{Reason: "changed my mind"})
	default:
		s = apply(tb, s, order.PlaceOrder{})
		switch st {
		case order.StatusPlaced:
		case order.StatusPaymentDeclined:
			s = apply(tb, s, order.RecordPayment{PaymentRef: "pay-declined", Reason: "insufficient funds"})
		default:
			s = apply(tb, s, order.RecordPayment{Authorized: true, PaymentRef: "pay-1", Amount: s.Total})
			switch st {
			case order.StatusPaid:
			case order.StatusShipped:
				s = apply(tb, s, order.ShipOrder{Carrier: "DHL", TrackingNumber: "JD0123"})
			case order.StatusDelivered:
				s = apply(tb, s, order.ShipOrder{Carrier: "DHL", TrackingNumber: "JD0123"})
				s = apply(tb, s, order.ConfirmDelivery{})
			default:
				tb.Fatalf("no fixture for status %v", st)
			}
		}
	}
	if s.Status != st {
		tb.Fatalf("fixture: got status %v, want %v", s.Status, st)
	}
	return s
}

// cloneState deep-copies s so tests can detect mutation of the original.
func cloneState(s order.State) order.State {
	s.Lines = slices.Clone(s.Lines)
	if s.Shipping != nil {
		a := *s.Shipping
		s.Shipping = &a
	}
	return s
}

// sentinelOf returns the one sentinel err matches, or nil if it matches
// none or several.
func sentinelOf(err error) error {
	var found error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			if found != nil {
				return nil
			}
			found = s
		}
	}
	return found
}

// isOnly reports whether err matches want and no other sentinel.
func isOnly(err, want error) bool {
	return errors.Is(err, want) && sentinelOf(err) != nil
}

// sameSentinels reports whether a and b match the same sentinels.
func sameSentinels(a, b error) bool {
	for _, s := range sentinels {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	return true
}

// pointerTo returns a pointer to a copy of v, typed as T: Decide and Evolve
// accept pointers to commands and events as well as values.
func pointerTo[T any](v T) T {
	p := reflect.New(reflect.TypeOf(v))
	p.Elem().Set(reflect.ValueOf(v))
	return p.Interface().(T)
}
