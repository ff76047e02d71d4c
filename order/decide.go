package order

import (
	"fmt"
	"slices"
	"strconv"
)

// Decide returns the events that record the effect of c on the order in
// state s, or an error that matches one of ErrInvalid, ErrNotFound,
// ErrAlreadyExists or ErrFailedPrecondition (see the package documentation
// for the rules and the order in which they are checked). On error it
// returns no events. It may return no events and a nil error for a command
// that would change nothing. It never modifies s or c.
func Decide(s State, c Command) ([]Event, error) {
	switch c := commandValue(c).(type) {
	case nil:
		return nil, fmt.Errorf("%w: no command", ErrInvalid)
	case CreateOrder:
		return decideCreate(s, c)
	case AddItem:
		return decideAddItem(s, c)
	case RemoveItem:
		return decideRemoveItem(s, c)
	case ChangeItemQuantity:
		return decideChangeQuantity(s, c)
	case SetShippingAddress:
		return decideSetShipping(s, c)
	case PlaceOrder:
		return decidePlace(s, c)
	case RecordPayment:
		return decidePayment(s, c)
	case CancelOrder:
		return decideCancel(s, c)
	case ShipOrder:
		return decideShip(s, c)
	case ConfirmDelivery:
		return decideDeliver(s)
	case RecordRefund:
		return decideRefund(s, c)
	default:
		// Reachable only by embedding Command in a foreign type.
		return nil, fmt.Errorf("%w: unsupported command %T", ErrInvalid, c)
	}
}

// one wraps a single event; most commands yield exactly one (design
// decision 4: one event per command keeps appends to a single publish).
func one(e Event) ([]Event, error) { return []Event{e}, nil }

func errNoOrder() error { return fmt.Errorf("%w: the order does not exist", ErrNotFound) }

func errNoLine(sku string) error {
	return fmt.Errorf("%w: the order has no line with SKU %q", ErrNotFound, sku)
}

func decideCreate(s State, c CreateOrder) ([]Event, error) {
	if err := validateID("order_id", c.OrderID); err != nil {
		return nil, err
	}
	if c.OrderID == CustomersSubjectID {
		return nil, invalid("order_id", "is reserved")
	}
	if err := validateID("customer_id", c.CustomerID); err != nil {
		return nil, err
	}
	if err := validateCurrency("currency", c.Currency); err != nil {
		return nil, err
	}
	if len(c.Lines) > MaxLines {
		return nil, invalid("lines", "must have at most "+strconv.Itoa(MaxLines)+" lines")
	}
	for i, l := range c.Lines {
		// The SKU whole (a duplicate included) before the quantity and
		// price: the first bad field in declaration order is reported.
		if r := idProblem(l.SKU); r != "" {
			return nil, invalid(lineField(i, "sku"), r)
		}
		if j := lineIndex(c.Lines[:i], l.SKU); j >= 0 {
			return nil, invalid(lineField(i, "sku"), fmt.Sprintf("duplicates lines[%d].sku %q; a SKU may appear once per order", j, l.SKU))
		}
		if field, reason := lineProblem(l); reason != "" {
			return nil, invalid(lineField(i, field), reason)
		}
	}
	if _, ok := total(c.Lines); !ok {
		return nil, invalid("lines", "the order total overflows")
	}
	if c.Shipping != nil {
		if err := validateAddress("shipping_address.", *c.Shipping); err != nil {
			return nil, err
		}
	}
	if s.Exists() {
		return nil, fmt.Errorf("%w: order %q", ErrAlreadyExists, s.ID)
	}
	e := OrderCreated{
		OrderID:    c.OrderID,
		CustomerID: c.CustomerID,
		Currency:   c.Currency,
		Lines:      cloneLines(c.Lines),
	}
	if c.Shipping != nil {
		a := *c.Shipping
		e.Shipping = &a
	}
	return one(e)
}

func decideAddItem(s State, c AddItem) ([]Event, error) {
	if field, reason := lineProblem(Line{SKU: c.SKU, Quantity: c.Quantity, UnitPrice: c.UnitPrice}); reason != "" {
		return nil, invalid(field, reason)
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusDraft {
		return nil, notAllowed("add items to", s.Status)
	}
	if _, ok := s.Line(c.SKU); ok {
		return nil, fmt.Errorf("%w: the order already has a line with SKU %q; change its quantity instead", ErrAlreadyExists, c.SKU)
	}
	if len(s.Lines) >= MaxLines {
		return nil, fmt.Errorf("%w: cannot add items to an order that already has %d lines, the maximum", ErrFailedPrecondition, MaxLines)
	}
	if !totalAfter(s.Lines, Line{SKU: c.SKU, Quantity: c.Quantity, UnitPrice: c.UnitPrice}) {
		return nil, invalid("quantity", "the order total would overflow")
	}
	if err := full("add items to", s); err != nil {
		return nil, err
	}
	return one(ItemAdded{SKU: c.SKU, Quantity: c.Quantity, UnitPrice: c.UnitPrice})
}

func decideRemoveItem(s State, c RemoveItem) ([]Event, error) {
	if err := validateID("sku", c.SKU); err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusDraft {
		return nil, notAllowed("remove items from", s.Status)
	}
	if _, ok := s.Line(c.SKU); !ok {
		return nil, errNoLine(c.SKU)
	}
	if err := full("remove items from", s); err != nil {
		return nil, err
	}
	return one(ItemRemoved{SKU: c.SKU})
}

func decideChangeQuantity(s State, c ChangeItemQuantity) ([]Event, error) {
	if err := validateID("sku", c.SKU); err != nil {
		return nil, err
	}
	if r := quantityProblem(c.Quantity); r != "" {
		return nil, invalid("quantity", r)
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusDraft {
		return nil, notAllowed("change item quantities of", s.Status)
	}
	l, ok := s.Line(c.SKU)
	if !ok {
		return nil, errNoLine(c.SKU)
	}
	if l.Quantity == c.Quantity {
		return nil, nil
	}
	l.Quantity = c.Quantity
	if !totalAfter(s.Lines, l) {
		return nil, invalid("quantity", "the order total would overflow")
	}
	if err := full("change item quantities of", s); err != nil {
		return nil, err
	}
	return one(ItemQuantityChanged{SKU: c.SKU, Quantity: c.Quantity})
}

// totalAfter reports whether the order total stays within int64 once l is
// added to lines or replaces the line with the same SKU.
func totalAfter(lines []Line, l Line) bool {
	var sum int64
	replaced := false
	for _, x := range lines {
		if x.SKU == l.SKU {
			x, replaced = l, true
		}
		t, ok := lineTotal(x.Quantity, x.UnitPrice)
		if !ok {
			return false
		}
		if sum, ok = addMoney(sum, t); !ok {
			return false
		}
	}
	if replaced {
		return true
	}
	t, ok := lineTotal(l.Quantity, l.UnitPrice)
	if !ok {
		return false
	}
	_, ok = addMoney(sum, t)
	return ok
}

func decideSetShipping(s State, c SetShippingAddress) ([]Event, error) {
	if err := validateAddress("shipping_address.", c.Address); err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusDraft && s.Status != StatusPlaced {
		return nil, notAllowed("change the shipping address of", s.Status)
	}
	if s.Shipping != nil && *s.Shipping == c.Address {
		return nil, nil
	}
	if err := full("change the shipping address of", s); err != nil {
		return nil, err
	}
	return one(ShippingAddressSet{Address: c.Address})
}

func decidePlace(s State, c PlaceOrder) ([]Event, error) {
	if c.Tax < 0 || c.Tax > MaxTax {
		return nil, invalid("tax", "must be between 0 and "+strconv.FormatInt(MaxTax, 10))
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusDraft {
		return nil, notAllowed("place", s.Status)
	}
	if len(s.Lines) == 0 {
		return nil, fmt.Errorf("%w: cannot place an order without lines; add an item first", ErrFailedPrecondition)
	}
	if s.Shipping == nil {
		return nil, fmt.Errorf("%w: cannot place an order without a shipping address; set one first", ErrFailedPrecondition)
	}
	sub, ok := total(s.Lines)
	if !ok {
		return nil, fmt.Errorf("%w: the order total overflows", ErrInvalid)
	}
	t, ok := addMoney(sub, c.Tax)
	if !ok {
		return nil, invalid("tax", "makes the order total overflow")
	}
	return one(OrderPlaced{Subtotal: sub, Tax: c.Tax, Total: t})
}

func decidePayment(s State, c RecordPayment) ([]Event, error) {
	// Each field is checked whatever the outcome, though the outcome
	// uses only some of them: a malformed one is a client's mistake to
	// be told of, not silently dropped.
	if c.Authorized || c.PaymentRef != "" {
		if err := validateID("payment_ref", c.PaymentRef); err != nil {
			return nil, err
		}
	}
	if c.Amount < 0 {
		return nil, invalid("amount", "must not be negative")
	}
	if c.Currency != "" {
		if err := validateCurrency("currency", c.Currency); err != nil {
			return nil, err
		}
	}
	if err := validateText("reason", c.Reason, false); err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusPlaced && s.Status != StatusPaymentDeclined {
		return nil, notAllowed("record a payment for", s.Status)
	}
	if !c.Authorized {
		// The first decline moves a placed order on, once; only the
		// declines after it can repeat.
		if s.Status == StatusPaymentDeclined {
			if err := full("record another declined payment for", s); err != nil {
				return nil, err
			}
		}
		return one(PaymentDeclined{PaymentRef: c.PaymentRef, Reason: c.Reason})
	}
	if c.Currency != "" && c.Currency != s.Currency {
		return nil, invalid("currency", fmt.Sprintf("must be the order currency %q", s.Currency))
	}
	if c.Amount != s.GrandTotal() {
		return nil, invalid("amount", "must equal the order total with tax "+strconv.FormatInt(s.GrandTotal(), 10))
	}
	return one(PaymentAuthorized{PaymentRef: c.PaymentRef, Amount: c.Amount})
}

func decideCancel(s State, c CancelOrder) ([]Event, error) {
	if err := validateText("reason", c.Reason, false); err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	switch s.Status {
	case StatusDraft, StatusPlaced, StatusPaymentDeclined, StatusPaid:
		// A paid order is cancelled at once; the refund follows as its
		// own fact (RefundIssued) once the provider has made it.
		return one(OrderCancelled{Reason: c.Reason})
	}
	return nil, notAllowed("cancel", s.Status)
}

func decideShip(s State, c ShipOrder) ([]Event, error) {
	if err := validateText("carrier", c.Carrier, false); err != nil {
		return nil, err
	}
	if err := validateText("tracking_number", c.TrackingNumber, false); err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusPaid {
		return nil, notAllowed("ship", s.Status)
	}
	return one(OrderShipped{Carrier: c.Carrier, TrackingNumber: c.TrackingNumber})
}

func decideDeliver(s State) ([]Event, error) {
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.Status != StatusShipped {
		return nil, notAllowed("confirm delivery of", s.Status)
	}
	return one(OrderDelivered{})
}

// cloneLines copies lines so that events and states never share a backing
// array with a command or another state; nil for none keeps empty orders
// comparable.
func cloneLines(lines []Line) []Line {
	if len(lines) == 0 {
		return nil
	}
	return slices.Clone(lines)
}

func decideRefund(s State, c RecordRefund) ([]Event, error) {
	if err := validateID("refund_ref", c.RefundRef); err != nil {
		return nil, err
	}
	if c.Amount <= 0 || c.Amount > maxRefund {
		return nil, invalid("amount", "must be between 1 and "+strconv.FormatInt(maxRefund, 10))
	}
	if !s.Exists() {
		return nil, errNoOrder()
	}
	if s.RefundRef != "" {
		return nil, fmt.Errorf("%w: the order was already refunded", ErrFailedPrecondition)
	}
	if !s.RefundDue() {
		return nil, fmt.Errorf("%w: no refund is due: only a cancelled order that was paid is refunded", ErrFailedPrecondition)
	}
	if c.Amount != s.PaidAmount {
		return nil, invalid("amount", "must equal the paid amount")
	}
	return one(RefundIssued{PaymentRef: s.PaymentRef, RefundRef: c.RefundRef, Amount: c.Amount})
}

// maxRefund bounds a refund as totals are bounded: MaxLines full lines and
// the most tax.
const maxRefund = MaxLines*MaxQuantity*MaxUnitPrice + MaxTax
