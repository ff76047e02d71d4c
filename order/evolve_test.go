package order_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/order"
)

func TestEvolveLifecycle(t *testing.T) {
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	a := homeAddress()
	events := []order.Event{
		order.OrderCreated{OrderID: "o-1", CustomerID: "c-1", Currency: "USD", Lines: []order.Line{{SKU: "A", Quantity: 1, UnitPrice: 100}}},
		order.ItemAdded{SKU: "B", Quantity: 3, UnitPrice: 50},
		order.ItemQuantityChanged{SKU: "A", Quantity: 2},
		order.ItemAdded{SKU: "C", Quantity: 1, UnitPrice: 7},
		order.ItemRemoved{SKU: "C"},
		order.ShippingAddressSet{Address: a},
		order.OrderPlaced{Total: 350},
		order.PaymentDeclined{PaymentRef: "p-1", Reason: "insufficient funds"},
		order.PaymentAuthorized{PaymentRef: "p-2", Amount: 350},
		order.OrderShipped{Carrier: "USPS", TrackingNumber: "9400"},
		order.OrderDelivered{},
	}
	times := make([]time.Time, len(events))
	for i := range times {
		times[i] = at(i)
	}
	got := order.Fold(events, times)
	var pointers []order.Event
	for _, e := range events {
		pointers = append(pointers, pointerTo(e))
	}
	if fromPointers := order.Fold(pointers, times); !reflect.DeepEqual(fromPointers, got) {
		t.Errorf("pointer events fold to\n%+v\nvalues to\n%+v", fromPointers, got)
	}
	want := order.State{
		ID: "o-1", CustomerID: "c-1", Currency: "USD",
		Status:     order.StatusDelivered,
		Lines:      []order.Line{{SKU: "A", Quantity: 2, UnitPrice: 100}, {SKU: "B", Quantity: 3, UnitPrice: 50}},
		Shipping:   &a,
		Total:      350,
		PaymentRef: "p-2", PaidAmount: 350,
		Carrier: "USPS", TrackingNumber: "9400",
		Version:   len(events),
		CreatedAt: at(0), UpdatedAt: at(10), PlacedAt: at(6), PaidAt: at(8), ShippedAt: at(9), DeliveredAt: at(10),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fold =\n%+v\nwant\n%+v", got, want)
	}

	cancelled := order.Fold([]order.Event{events[0], order.OrderCancelled{Reason: "fraud"}}, []time.Time{at(0), at(5)})
	if cancelled.Status != order.StatusCancelled || cancelled.CancelReason != "fraud" || !cancelled.CancelledAt.Equal(at(5)) || !cancelled.UpdatedAt.Equal(at(5)) {
		t.Errorf("cancelled: %+v", cancelled)
	}
}

func TestFoldTimes(t *testing.T) {
	events := []order.Event{order.OrderCreated{OrderID: "o"}, order.OrderPlaced{}}
	if s := order.Fold(events, nil); s.Version != 2 || !s.CreatedAt.IsZero() || !s.UpdatedAt.IsZero() {
		t.Errorf("Fold without times: %+v", s)
	}
	s := order.Fold(events, []time.Time{t0})
	if !s.CreatedAt.Equal(t0) || !s.PlacedAt.IsZero() {
		t.Errorf("Fold with short times: created %v placed %v", s.CreatedAt, s.PlacedAt)
	}
	if s := order.Fold(nil, nil); !reflect.DeepEqual(s, order.State{}) || s.Exists() {
		t.Errorf("Fold(nil) = %+v, want zero State", s)
	}
}

// TestEvolveDoesNotAlias guards states kept by callers (the command
// service keeps the loaded state while evolving a candidate).
func TestEvolveDoesNotAlias(t *testing.T) {
	s0 := stateIn(t, order.StatusDraft)
	s0.Lines = slices.Grow(s0.Lines, 10) // spare capacity invites append aliasing
	snapshot := cloneState(s0)

	s1 := order.Evolve(s0, order.ItemAdded{SKU: "X", Quantity: 1, UnitPrice: 1}, t0)
	s2 := order.Evolve(s0, order.ItemAdded{SKU: "Y", Quantity: 1, UnitPrice: 2}, t0)
	s3 := order.Evolve(s0, order.ItemQuantityChanged{SKU: "SKU-1", Quantity: 9}, t0)
	s4 := order.Evolve(s0, order.ItemRemoved{SKU: "SKU-1"}, t0)
	s5 := order.Evolve(s0, order.OrderPlaced{}, t0)
	s5.Lines[0].Quantity = 1234
	s5.Shipping.City = "Elsewhere"

	if !reflect.DeepEqual(s0, snapshot) {
		t.Fatalf("Evolve changed its input:\n%+v\nwant\n%+v", s0, snapshot)
	}
	if s1.Lines[2].SKU != "X" || s2.Lines[2].SKU != "Y" {
		t.Errorf("sibling states share lines: %v / %v", s1.Lines, s2.Lines)
	}
	if s3.Lines[0].Quantity != 9 || len(s4.Lines) != 1 {
		t.Errorf("s3 %v, s4 %v", s3.Lines, s4.Lines)
	}

	ev := order.OrderCreated{OrderID: "o", Lines: []order.Line{{SKU: "A", Quantity: 1}}, Shipping: new(homeAddress())}
	s := order.Evolve(order.State{}, ev, t0)
	s.Lines[0].Quantity = 5
	s.Shipping.City = "Elsewhere"
	if ev.Lines[0].Quantity != 1 || ev.Shipping.City != "London" {
		t.Errorf("state shares memory with its event")
	}
}

// TestEvolveOddSequences feeds histories Decide never writes; Evolve must
// still apply them without panicking and keep SKUs unique.
func TestEvolveOddSequences(t *testing.T) {
	tests := []struct {
		name   string
		events []order.Event
		check  func(t *testing.T, s order.State)
	}{
		{"events before creation", []order.Event{order.OrderPlaced{Total: 5}, order.ItemRemoved{SKU: "A"}, order.ItemQuantityChanged{SKU: "A", Quantity: 2}}, func(t *testing.T, s order.State) {
			if s.Status != order.StatusPlaced || s.Version != 3 || s.Total != 0 {
				t.Errorf("%+v", s)
			}
		}},
		{"duplicate ItemAdded replaces", []order.Event{order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 10}, order.ItemAdded{SKU: "A", Quantity: 3, UnitPrice: 10}}, func(t *testing.T, s order.State) {
			if len(s.Lines) != 1 || s.Total != 30 {
				t.Errorf("lines %v total %d", s.Lines, s.Total)
			}
		}},
		{"duplicate SKUs in OrderCreated", []order.Event{order.OrderCreated{Lines: []order.Line{{SKU: "A", Quantity: 1}, {SKU: "A", Quantity: 2}}}}, func(t *testing.T, s order.State) {
			if len(s.Lines) != 1 || s.Lines[0].Quantity != 2 {
				t.Errorf("lines %v", s.Lines)
			}
		}},
		{"nil, unknown and nil-pointer events count but change nothing", []order.Event{nil, unknownEvent{}, (*order.OrderPlaced)(nil)}, func(t *testing.T, s order.State) {
			if s.Version != 3 || s.Exists() {
				t.Errorf("%+v", s)
			}
		}},
		{"pointer events apply like values", []order.Event{&order.OrderCreated{OrderID: "o"}, &order.ItemAdded{SKU: "A", Quantity: 2, UnitPrice: 3}, &order.OrderDelivered{}}, func(t *testing.T, s order.State) {
			if s.ID != "o" || s.Total != 6 || s.Status != order.StatusDelivered {
				t.Errorf("%+v", s)
			}
		}},
		{"overflowing lines wrap instead of panicking", []order.Event{order.ItemAdded{SKU: "A", Quantity: 1 << 62, UnitPrice: 1 << 62}}, func(t *testing.T, s order.State) {
			if s.Version != 1 {
				t.Errorf("%+v", s)
			}
		}},
		{"second OrderCreated restarts", []order.Event{order.OrderCreated{OrderID: "a", Lines: []order.Line{{SKU: "X", Quantity: 1, UnitPrice: 1}}}, order.OrderCancelled{}, order.OrderCreated{OrderID: "b"}}, func(t *testing.T, s order.State) {
			if s.ID != "b" || s.Status != order.StatusDraft || len(s.Lines) != 0 || s.Total != 0 || s.Version != 3 {
				t.Errorf("%+v", s)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.check(t, order.Fold(tt.events, nil)) })
	}
}

type unknownEvent struct{}

func (unknownEvent) EventType() string { return "FromTheFuture" }

func TestEventTypes(t *testing.T) {
	events := []order.Event{
		order.OrderCreated{}, order.ItemAdded{}, order.ItemRemoved{}, order.ItemQuantityChanged{},
		order.ShippingAddressSet{}, order.OrderPlaced{}, order.PaymentAuthorized{}, order.PaymentDeclined{},
		order.OrderCancelled{}, order.OrderShipped{}, order.OrderDelivered{}, order.RefundIssued{},
		order.CustomerForgotten{},
	}
	var got []string
	for _, e := range events {
		if name := reflect.TypeOf(e).Name(); e.EventType() != name {
			t.Errorf("%s.EventType() = %q", name, e.EventType())
		}
		got = append(got, e.EventType())
	}
	if !slices.Equal(got, order.EventTypes) {
		t.Errorf("EventTypes = %v, want %v", order.EventTypes, got)
	}
}

func TestStatusString(t *testing.T) {
	want := []string{"unspecified", "draft", "placed", "paid", "payment_declined", "shipped", "delivered", "cancelled"}
	for i, s := range allStatuses {
		if s.String() != want[i] || int(s) != i {
			t.Errorf("Status(%d).String() = %q, want %q", int(s), s.String(), want[i])
		}
	}
	if got := order.Status(42).String(); got != "Status(42)" {
		t.Errorf("out of range: %q", got)
	}
}

func TestStateLine(t *testing.T) {
	s := stateIn(t, order.StatusDraft)
	if l, ok := s.Line("SKU-2"); !ok || l != (order.Line{SKU: "SKU-2", Quantity: 1, UnitPrice: 999}) {
		t.Errorf("Line(SKU-2) = %v, %v", l, ok)
	}
	if l, ok := s.Line("none"); ok || l != (order.Line{}) {
		t.Errorf("Line(none) = %v, %v", l, ok)
	}
}
