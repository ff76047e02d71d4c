package order

import "time"

// Address is a postal shipping address. Line1, City and Country are
// required; Country is an ISO 3166-1 alpha-2 code in upper case ("DE").
//
// Erased marks an address whose content was erased because its customer
// was forgotten: an address was given, and nothing more is known. Every
// other field is then empty. Only history read back sets it; commands never
// do.
type Address struct {
	Name, Line1, Line2, City, Region, PostalCode, Country string
	Erased                                                bool
}

// Line is one product line of an order. UnitPrice is in minor units of the
// order currency (cents for USD).
type Line struct {
	SKU       string
	Quantity  int64
	UnitPrice int64
}

// State is an order as folded from its events. The zero State is an order
// that does not exist yet. Treat a State as a value: Evolve never modifies
// one in place, so older states stay valid after newer ones are derived.
type State struct {
	ID, CustomerID, Currency string
	Status                   Status
	// Lines are in the order they were added; nil when there are none.
	Lines []Line
	// Shipping is nil until an address is set.
	Shipping *Address
	// Total is the sum of Quantity*UnitPrice over Lines, in minor units.
	Total int64
	// Tax is the tax given when the order was placed; 0 before that, and
	// for orders placed before tax was recorded.
	Tax int64
	// PaymentRef is the provider reference of the authorized payment, or of
	// the last declined one while no payment is authorized.
	PaymentRef string
	// DeclineReason is why the last payment was declined; cleared when a
	// payment is authorized.
	DeclineReason string
	// PaidAmount is the authorized amount, in minor units; 0 if never paid.
	PaidAmount int64
	// RefundRef is the provider's reference of the refund, once issued.
	RefundRef      string
	CancelReason   string
	Carrier        string
	TrackingNumber string
	// TrackingNumberErased: the tracking number was erased because the
	// customer was forgotten.
	TrackingNumberErased bool
	// Version is the number of events applied: 1 after OrderCreated.
	Version int
	// CreatedAt and the other times are the occurrence times of the events
	// that set them; UpdatedAt is that of the last event applied.
	CreatedAt, UpdatedAt, PlacedAt, PaidAt, ShippedAt, DeliveredAt, CancelledAt, RefundedAt time.Time
}

// RefundDue reports whether the order was cancelled after being paid and
// the refund has not been recorded yet.
func (s State) RefundDue() bool {
	return s.Status == StatusCancelled && s.PaidAmount > 0 && s.RefundRef == ""
}

// GrandTotal is the amount the order is charged: its lines' total plus the
// tax given when it was placed.
func (s State) GrandTotal() int64 { return s.Total + s.Tax }

// PersonalDataErased reports whether personal data of the order was erased
// because its customer was forgotten.
func (s State) PersonalDataErased() bool {
	return s.TrackingNumberErased || (s.Shipping != nil && s.Shipping.Erased)
}

// Exists reports whether the order has been created, that is whether its
// status is not StatusUnspecified.
func (s State) Exists() bool { return s.Status != StatusUnspecified }

// Line returns the line with the given SKU and true, or the zero Line and
// false when the order has no such line.
func (s State) Line(sku string) (Line, bool) {
	if i := lineIndex(s.Lines, sku); i >= 0 {
		return s.Lines[i], true
	}
	return Line{}, false
}

// lineIndex is a linear scan: orders hold at most MaxLines lines, so a map
// would cost more (allocation, copying on every Evolve) than it saves.
func lineIndex(lines []Line, sku string) int {
	for i := range lines {
		if lines[i].SKU == sku {
			return i
		}
	}
	return -1
}
