package order

import (
	"slices"
	"time"
)

// Evolve returns the state after event e, which occurred at time at (taken
// from the event's metadata, so replays are deterministic). It sets
// UpdatedAt to at, and the matching time field (CreatedAt, PlacedAt, PaidAt,
// ShippedAt, DeliveredAt, CancelledAt) for the events that have one.
//
// Evolve applies facts: it never validates and never fails, because a
// stored event happened whatever today's rules say. It does not panic on
// any event sequence, including ones Decide would never produce; such
// sequences give a best-effort state (an ItemAdded for a SKU already present
// replaces that line, so SKUs stay unique; removing or changing an absent
// line changes nothing). Every event, including nil and unknown ones,
// increments Version, so that Version keeps counting the events in the
// stream when an older binary reads an event type it does not know.
//
// The result shares no Lines or Shipping memory with s or e.
func Evolve(s State, e Event, at time.Time) State {
	s.Version++
	s.UpdatedAt = at
	s.Lines = cloneLines(s.Lines)
	if s.Shipping != nil {
		a := *s.Shipping
		s.Shipping = &a
	}

	switch e := EventValue(e).(type) {
	case OrderCreated:
		s.ID, s.CustomerID, s.Currency = e.OrderID, e.CustomerID, e.Currency
		s.Status = StatusDraft
		s.Lines = nil
		for _, l := range e.Lines {
			s.Lines = putLine(s.Lines, l)
		}
		s.Shipping = nil
		if e.Shipping != nil {
			a := *e.Shipping
			s.Shipping = &a
		}
		s.CreatedAt = at
	case ItemAdded:
		s.Lines = putLine(s.Lines, Line{SKU: e.SKU, Quantity: e.Quantity, UnitPrice: e.UnitPrice})
	case ItemRemoved:
		if i := lineIndex(s.Lines, e.SKU); i >= 0 {
			s.Lines = slices.Delete(s.Lines, i, i+1)
			if len(s.Lines) == 0 {
				s.Lines = nil
			}
		}
	case ItemQuantityChanged:
		if i := lineIndex(s.Lines, e.SKU); i >= 0 {
			s.Lines[i].Quantity = e.Quantity
		}
	case ShippingAddressSet:
		a := e.Address
		s.Shipping = &a
	case OrderPlaced:
		s.Status = StatusPlaced
		s.Tax = e.Tax
		s.PlacedAt = at
	case PaymentAuthorized:
		s.Status = StatusPaid
		s.PaymentRef = e.PaymentRef
		s.PaidAmount = e.Amount
		s.DeclineReason = ""
		s.PaidAt = at
	case PaymentDeclined:
		s.Status = StatusPaymentDeclined
		s.PaymentRef = e.PaymentRef
		s.DeclineReason = e.Reason
	case OrderCancelled:
		s.Status = StatusCancelled
		s.CancelReason = e.Reason
		s.CancelledAt = at
	case OrderShipped:
		s.Status = StatusShipped
		s.Carrier, s.TrackingNumber, s.TrackingNumberErased = e.Carrier, e.TrackingNumber, e.TrackingNumberErased
		s.ShippedAt = at
	case OrderDelivered:
		s.Status = StatusDelivered
		s.DeliveredAt = at
	case RefundIssued:
		s.RefundRef = e.RefundRef
		s.RefundedAt = at
	}
	// Recomputed rather than taken from OrderPlaced.Total so that Total is
	// the sum of Lines for every history, even one that changed lines after
	// placing; for histories Decide produced the two are equal.
	s.Total = sumLines(s.Lines)
	return s
}

// putLine appends l, or replaces the line with the same SKU.
func putLine(lines []Line, l Line) []Line {
	if i := lineIndex(lines, l.SKU); i >= 0 {
		lines[i] = l
		return lines
	}
	return append(lines, l)
}

// Fold replays events from the zero State. at[i] is the occurrence time of
// events[i]; missing entries (including a nil or short at) count as the
// zero time, and extra entries are ignored.
func Fold(events []Event, at []time.Time) State {
	var s State
	for i, e := range events {
		var t time.Time
		if i < len(at) {
			t = at[i]
		}
		s = Evolve(s, e, t)
	}
	return s
}
