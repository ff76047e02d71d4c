package order

// Event is a fact in an order's history. EventType returns the event's
// stable name, which is stored with the event and must never change.
// The concrete events are the value types OrderCreated through
// OrderDelivered; Decide returns values, Evolve also accepts pointers.
type Event interface {
	EventType() string
}

// Stable event type names. They are stored in history; never rename one.
const (
	typeOrderCreated        = "OrderCreated"
	typeItemAdded           = "ItemAdded"
	typeItemRemoved         = "ItemRemoved"
	typeItemQuantityChanged = "ItemQuantityChanged"
	typeShippingAddressSet  = "ShippingAddressSet"
	typeOrderPlaced         = "OrderPlaced"
	typePaymentAuthorized   = "PaymentAuthorized"
	typePaymentDeclined     = "PaymentDeclined"
	typeOrderCancelled      = "OrderCancelled"
	typeOrderShipped        = "OrderShipped"
	typeOrderDelivered      = "OrderDelivered"
	typeRefundIssued        = "RefundIssued"
	typeCustomerForgotten   = "CustomerForgotten"
)

// EventTypes lists the names returned by EventType for every event of this
// package, in the order the events were introduced. Codecs use it to check
// that they handle every event. Do not modify it.
var EventTypes = []string{
	typeOrderCreated,
	typeItemAdded,
	typeItemRemoved,
	typeItemQuantityChanged,
	typeShippingAddressSet,
	typeOrderPlaced,
	typePaymentAuthorized,
	typePaymentDeclined,
	typeOrderCancelled,
	typeOrderShipped,
	typeOrderDelivered,
	typeRefundIssued,
	typeCustomerForgotten,
}

// OrderCreated starts an order's history as a draft, with its initial lines
// (possibly none) and shipping address (possibly nil).
type OrderCreated struct {
	OrderID, CustomerID, Currency string
	Lines                         []Line
	Shipping                      *Address
}

// ItemAdded adds a line to a draft order.
type ItemAdded struct {
	SKU                 string
	Quantity, UnitPrice int64
}

// ItemRemoved removes the line with SKU.
type ItemRemoved struct {
	SKU string
}

// ItemQuantityChanged sets the quantity of the line with SKU.
type ItemQuantityChanged struct {
	SKU      string
	Quantity int64
}

// ShippingAddressSet sets or replaces the shipping address.
type ShippingAddressSet struct {
	Address Address
}

// OrderPlaced submits the order for payment. Subtotal is the sum of the
// lines at the moment of placing, Tax the tax given with PlaceOrder, and
// Total their sum: the amount to charge, carried so that consumers such as
// the payment process can charge it without folding the lines. (Orders
// placed before tax existed recorded only Total; the codec reads them as
// Subtotal = Total and no tax.)
type OrderPlaced struct {
	Subtotal, Tax, Total int64
}

// PaymentAuthorized records a successful authorization of Amount, which
// equals the order total, under the provider reference PaymentRef.
type PaymentAuthorized struct {
	PaymentRef string
	Amount     int64
}

// PaymentDeclined records a declined payment attempt. PaymentRef may be
// empty when the provider gave none.
type PaymentDeclined struct {
	PaymentRef, Reason string
}

// OrderCancelled ends the order. Reason may be empty.
type OrderCancelled struct {
	Reason string
}

// OrderShipped records the hand-over to a carrier. Both fields may be
// empty. TrackingNumberErased marks a tracking number erased because the
// customer was forgotten; only history read back sets it.
type OrderShipped struct {
	Carrier, TrackingNumber string
	TrackingNumberErased    bool
}

// OrderDelivered records delivery to the customer.
type OrderDelivered struct{}

// EventType returns "OrderCreated".
func (OrderCreated) EventType() string { return typeOrderCreated }

// EventType returns "ItemAdded".
func (ItemAdded) EventType() string { return typeItemAdded }

// EventType returns "ItemRemoved".
func (ItemRemoved) EventType() string { return typeItemRemoved }

// EventType returns "ItemQuantityChanged".
func (ItemQuantityChanged) EventType() string { return typeItemQuantityChanged }

// EventType returns "ShippingAddressSet".
func (ShippingAddressSet) EventType() string { return typeShippingAddressSet }

// EventType returns "OrderPlaced".
func (OrderPlaced) EventType() string { return typeOrderPlaced }

// EventType returns "PaymentAuthorized".
func (PaymentAuthorized) EventType() string { return typePaymentAuthorized }

// EventType returns "PaymentDeclined".
func (PaymentDeclined) EventType() string { return typePaymentDeclined }

// EventType returns "OrderCancelled".
func (OrderCancelled) EventType() string { return typeOrderCancelled }

// EventType returns "OrderShipped".
func (OrderShipped) EventType() string { return typeOrderShipped }

// EventType returns "OrderDelivered".
func (OrderDelivered) EventType() string { return typeOrderDelivered }

// RefundIssued records that the payment of a cancelled order was refunded.
type RefundIssued struct {
	PaymentRef string // the refunded payment
	RefundRef  string // the provider's reference of the refund
	Amount     int64  // minor units; the whole paid amount
}

// EventType returns "RefundIssued".
func (RefundIssued) EventType() string { return typeRefundIssued }

// CustomerForgotten records that a customer's personal data was erased:
// the customer's data key is destroyed, so the personal fields of every
// event of the customer's orders read as erased from then on. It is stored
// once, outside any order's history (see CustomersSubjectID), and Evolve
// leaves an order's state as it is.
type CustomerForgotten struct {
	CustomerID string
}

// EventType returns "CustomerForgotten".
func (CustomerForgotten) EventType() string { return typeCustomerForgotten }

// CustomersSubjectID is the reserved id under which customer events
// (CustomerForgotten) are stored, beside the orders' histories. No order
// may have it.
const CustomersSubjectID = "_customers"

// EventValue returns e with a pointer to one of this package's events
// replaced by the event it points to (a nil pointer by nil), and any other
// e as it is: code that switches on an event's type, Evolve among it, then
// needs one case per event and treats an event and a pointer to it alike.
func EventValue(e Event) Event {
	switch p := e.(type) {
	case *OrderCreated:
		return deref[Event](p)
	case *ItemAdded:
		return deref[Event](p)
	case *ItemRemoved:
		return deref[Event](p)
	case *ItemQuantityChanged:
		return deref[Event](p)
	case *ShippingAddressSet:
		return deref[Event](p)
	case *OrderPlaced:
		return deref[Event](p)
	case *PaymentAuthorized:
		return deref[Event](p)
	case *PaymentDeclined:
		return deref[Event](p)
	case *OrderCancelled:
		return deref[Event](p)
	case *OrderShipped:
		return deref[Event](p)
	case *OrderDelivered:
		return deref[Event](p)
	case *RefundIssued:
		return deref[Event](p)
	case *CustomerForgotten:
		return deref[Event](p)
	}
	return e
}

// deref returns *p as an I, or nil for a nil p; it keeps a nil pointer from
// becoming a non-nil interface holding a nil pointer.
func deref[I any, T any](p *T) I {
	if p == nil {
		var zero I
		return zero
	}
	return any(*p).(I)
}
