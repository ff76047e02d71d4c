package order

import (
	"errors"
	"fmt"
)

// Limits enforced by Decide. They are untyped so they compare with both int
// and int64 fields. Together they keep any order total below 10^18, inside
// int64, and keep a single order's history small enough to load in one go.
const (
	// MaxIDLen is the maximum length in bytes of order_id, customer_id, sku
	// and payment_ref.
	MaxIDLen = 64
	// MaxQuantity is the maximum quantity of one line.
	MaxQuantity = 10000
	// MaxLines is the maximum number of lines in an order.
	MaxLines = 100
	// MaxUnitPrice is the maximum unit price in minor units (10^12).
	MaxUnitPrice = 1_000_000_000_000
	// MaxTax is the maximum tax on one order in minor units (10^12).
	MaxTax = 1_000_000_000_000
	// MaxTextLen is the maximum length in characters (Unicode code points)
	// of free text: address fields, reasons, carrier and tracking number.
	MaxTextLen = 256
	// MaxChanges is how many events an order's history may hold before the
	// commands that can repeat without moving the order on (AddItem,
	// RemoveItem, ChangeItemQuantity, SetShippingAddress and a declined
	// RecordPayment after a decline) are refused. Every other command records at most one
	// event in an order's life, so a history never exceeds MaxChanges + 6
	// events, and loading an order stays bounded however a client edits it.
	MaxChanges = 1000
)

// Sentinel errors returned (wrapped) by Decide. Test with errors.Is; every
// Decide error matches exactly one of them.
var (
	// ErrInvalid: the command is malformed, whatever the order's state.
	// Field-level problems are reported as *FieldError, which wraps it.
	ErrInvalid = errors.New("order: invalid command")
	// ErrNotFound: the order does not exist, or the SKU a command names is
	// not in the order.
	ErrNotFound = errors.New("order: not found")
	// ErrAlreadyExists: CreateOrder for an order that exists, or AddItem for
	// a SKU that is already in the order.
	ErrAlreadyExists = errors.New("order: already exists")
	// ErrFailedPrecondition: the order's status or contents do not allow the
	// command; the wrapping message says which status and command.
	ErrFailedPrecondition = errors.New("order: not allowed in the order's current status")
)

// FieldError reports one invalid field of a command. Field is the
// proto-style snake_case path of the field ("lines[3].sku",
// "shipping_address.country"), so the edge can return it as a
// BadRequest field violation. It matches ErrInvalid with errors.Is.
type FieldError struct {
	Field  string
	Reason string
}

// Error returns "order: invalid command: <field>: <reason>".
func (e *FieldError) Error() string {
	return ErrInvalid.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, reason string) error {
	return &FieldError{Field: field, Reason: reason}
}

// notAllowed is the transition error: what the command would do, and the
// status that forbids it.
func notAllowed(action string, s Status) error {
	return fmt.Errorf("%w: cannot %s %s", ErrFailedPrecondition, action, s.phrase())
}

// full refuses a repeatable change to an order whose history holds
// MaxChanges events already.
func full(action string, s State) error {
	if s.Version < MaxChanges {
		return nil
	}
	return fmt.Errorf("%w: cannot %s an order that has had %d changes, the most it takes; cancel it and create a new order", ErrFailedPrecondition, action, MaxChanges)
}
