package order

// Command is a request to change an order, handed to Decide. Only the
// command types of this package implement it.
type Command interface {
	isCommand()
}

// CreateOrder starts a draft order. Lines and Shipping are optional.
type CreateOrder struct {
	OrderID, CustomerID, Currency string
	Lines                         []Line
	Shipping                      *Address
}

// AddItem adds a line for a SKU that is not in the order yet.
type AddItem struct {
	SKU                 string
	Quantity, UnitPrice int64
}

// RemoveItem removes the line with SKU.
type RemoveItem struct {
	SKU string
}

// ChangeItemQuantity sets the quantity of the line with SKU.
type ChangeItemQuantity struct {
	SKU      string
	Quantity int64
}

// SetShippingAddress sets or replaces the shipping address.
type SetShippingAddress struct {
	Address Address
}

// PlaceOrder submits a draft order for payment. Tax is the tax on the
// order in minor units, worked out by the caller (orderstream computes no
// tax); it is charged on top of the lines' total.
type PlaceOrder struct {
	Tax int64
}

// RecordPayment records a payment provider's answer. When Authorized,
// PaymentRef is required, Amount must equal the order total and Currency,
// when not empty, the order currency. When declined, PaymentRef and Reason
// are optional and Amount and Currency are ignored. Whatever the outcome,
// each field must be well formed: a PaymentRef an identifier when present,
// Amount not negative, Currency a currency code when present, Reason free
// text.
type RecordPayment struct {
	Authorized bool
	PaymentRef string
	Amount     int64
	Currency   string
	Reason     string
}

// CancelOrder cancels an order that has not shipped. Cancelling a paid order
// leaves a refund due (State.RefundDue). Reason is optional.
type CancelOrder struct {
	Reason string
}

// ShipOrder records that a paid order was handed to a carrier. Carrier and
// TrackingNumber are optional.
type ShipOrder struct {
	Carrier, TrackingNumber string
}

// ConfirmDelivery records that a shipped order was delivered.
type ConfirmDelivery struct{}

// RecordRefund records that the payment of a cancelled order was refunded
// by the provider. RefundRef is required; Amount must equal the paid amount.
type RecordRefund struct {
	RefundRef string
	Amount    int64
}

func (CreateOrder) isCommand()        {}
func (AddItem) isCommand()            {}
func (RemoveItem) isCommand()         {}
func (ChangeItemQuantity) isCommand() {}
func (SetShippingAddress) isCommand() {}
func (PlaceOrder) isCommand()         {}
func (RecordPayment) isCommand()      {}
func (CancelOrder) isCommand()        {}
func (ShipOrder) isCommand()          {}
func (RecordRefund) isCommand()       {}
func (ConfirmDelivery) isCommand()    {}

// commandValue turns a pointer to a command into the value, so Decide has
// one case per command. A nil pointer becomes nil.
func commandValue(c Command) Command {
	switch p := c.(type) {
	case *CreateOrder:
		return deref[Command](p)
	case *AddItem:
		return deref[Command](p)
	case *RemoveItem:
		return deref[Command](p)
	case *ChangeItemQuantity:
		return deref[Command](p)
	case *SetShippingAddress:
		return deref[Command](p)
	case *PlaceOrder:
		return deref[Command](p)
	case *RecordPayment:
		return deref[Command](p)
	case *CancelOrder:
		return deref[Command](p)
	case *ShipOrder:
		return deref[Command](p)
	case *ConfirmDelivery:
		return deref[Command](p)
	case *RecordRefund:
		return deref[Command](p)
	}
	return c
}
