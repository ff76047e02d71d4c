package order

import "strconv"

// Status is where an order is in its lifecycle. The zero value,
// StatusUnspecified, means the order does not exist.
type Status int

// Statuses of an order. The numbering matches the OrderStatus enum of the
// API contract so the edge can convert without a table; do not reorder.
const (
	// StatusUnspecified is the status of the zero State: no order yet.
	StatusUnspecified Status = iota
	// StatusDraft: being assembled; items and the shipping address may change.
	StatusDraft
	// StatusPlaced: submitted by the customer and awaiting payment.
	StatusPlaced
	// StatusPaid: payment authorized; may be shipped.
	StatusPaid
	// StatusPaymentDeclined: the last payment attempt was declined; another
	// authorization may follow.
	StatusPaymentDeclined
	// StatusShipped: handed to a carrier.
	StatusShipped
	// StatusDelivered: received by the customer. Final.
	StatusDelivered
	// StatusCancelled: cancelled. Final.
	StatusCancelled
)

// String returns the status's stable snake_case name ("draft", "placed",
// "paid", "payment_declined", "shipped", "delivered", "cancelled",
// "unspecified"), suitable for storage in read models. Values outside the
// defined range render as "Status(N)".
func (s Status) String() string {
	switch s {
	case StatusUnspecified:
		return "unspecified"
	case StatusDraft:
		return "draft"
	case StatusPlaced:
		return "placed"
	case StatusPaid:
		return "paid"
	case StatusPaymentDeclined:
		return "payment_declined"
	case StatusShipped:
		return "shipped"
	case StatusDelivered:
		return "delivered"
	case StatusCancelled:
		return "cancelled"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// phrase names an order in this status for error messages, so they read
// "cannot add items to a placed order".
func (s Status) phrase() string {
	switch s {
	case StatusDraft:
		return "a draft order"
	case StatusPlaced:
		return "a placed order"
	case StatusPaid:
		return "a paid order"
	case StatusPaymentDeclined:
		return "an order whose payment was declined"
	case StatusShipped:
		return "a shipped order"
	case StatusDelivered:
		return "a delivered order"
	case StatusCancelled:
		return "a cancelled order"
	}
	return "an order in status " + s.String()
}
