// Package convert holds the named converters between the protobuf contract
// (package ordersv1) and the domain (package order): requests to commands,
// domain state to the Order message, and domain events to and from the stored
// event payload. Keeping them in one place means the command side, the
// projections and the audit service agree byte for byte on what history
// means.
package convert

import (
	"errors"
	"fmt"
	"slices"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrUnknownEventType reports a stored event whose type this build does not
// know: written by a newer version, or not by this system at all.
var ErrUnknownEventType = errors.New("convert: unknown event type")

// ErrCorruptEvent reports a stored payload that does not decode, or whose
// payload case disagrees with its type header.
var ErrCorruptEvent = errors.New("convert: corrupt event payload")

// StatusToProto maps a domain status to its enum value.
func StatusToProto(s order.Status) ordersv1.OrderStatus {
	switch s {
	case order.StatusDraft:
		return ordersv1.OrderStatus_ORDER_STATUS_DRAFT
	case order.StatusPlaced:
		return ordersv1.OrderStatus_ORDER_STATUS_PLACED
	case order.StatusPaid:
		return ordersv1.OrderStatus_ORDER_STATUS_PAID
	case order.StatusPaymentDeclined:
		return ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED
	case order.StatusShipped:
		return ordersv1.OrderStatus_ORDER_STATUS_SHIPPED
	case order.StatusDelivered:
		return ordersv1.OrderStatus_ORDER_STATUS_DELIVERED
	case order.StatusCancelled:
		return ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
	default:
		return ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
	}
}

// StatusFromProto maps an enum value to a domain status; ok is false for
// UNSPECIFIED and for values this build does not know.
func StatusFromProto(s ordersv1.OrderStatus) (order.Status, bool) {
	switch s {
	case ordersv1.OrderStatus_ORDER_STATUS_DRAFT:
		return order.StatusDraft, true
	case ordersv1.OrderStatus_ORDER_STATUS_PLACED:
		return order.StatusPlaced, true
	case ordersv1.OrderStatus_ORDER_STATUS_PAID:
		return order.StatusPaid, true
	case ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED:
		return order.StatusPaymentDeclined, true
	case ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:
		return order.StatusShipped, true
	case ordersv1.OrderStatus_ORDER_STATUS_DELIVERED:
		return order.StatusDelivered, true
	case ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return order.StatusCancelled, true
	default:
		return order.StatusUnspecified, false
	}
}

// AddressToProto converts an address; nil stays nil.
func AddressToProto(a *order.Address) *ordersv1.Address { return addressInto(nil, a) }

// addressInto is AddressToProto into dst when dst is not nil.
func addressInto(dst *ordersv1.Address, a *order.Address) *ordersv1.Address {
	if a == nil {
		return nil
	}
	if dst == nil {
		dst = new(ordersv1.Address)
	}
	*dst = ordersv1.Address{
		Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City,
		Region: a.Region, PostalCode: a.PostalCode, Country: a.Country,
		Erased: a.Erased,
	}
	return dst
}

// AddressFromProto converts an address; nil stays nil. The output-only
// erased flag is ignored: only OpenEvent marks an address erased.
func AddressFromProto(a *ordersv1.Address) *order.Address {
	if a == nil {
		return nil
	}
	return &order.Address{
		Name: a.GetName(), Line1: a.GetLine1(), Line2: a.GetLine2(), City: a.GetCity(),
		Region: a.GetRegion(), PostalCode: a.GetPostalCode(), Country: a.GetCountry(),
	}
}

// LinesToProto converts lines, filling each line total.
func LinesToProto(lines []order.Line) []*ordersv1.LineItem { return linesInto(nil, lines) }

// linesInto is LinesToProto into dst's array and its line messages, as far
// as they go.
func linesInto(dst []*ordersv1.LineItem, lines []order.Line) []*ordersv1.LineItem {
	if len(lines) == 0 {
		return nil
	}
	dst = slices.Grow(dst[:0], len(lines))[:len(lines)]
	for i, l := range lines {
		if dst[i] == nil {
			dst[i] = new(ordersv1.LineItem)
		}
		*dst[i] = ordersv1.LineItem{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: l.UnitPrice, LineTotal: l.Quantity * l.UnitPrice}
	}
	return dst
}

// LinesFromProto converts lines; line_total is output only and ignored.
func LinesFromProto(lines []*ordersv1.LineItem) []order.Line {
	if len(lines) == 0 {
		return nil
	}
	out := make([]order.Line, len(lines))
	for i, l := range lines {
		out[i] = order.Line{SKU: l.GetSku(), Quantity: l.GetQuantity(), UnitPrice: l.GetUnitPrice()}
	}
	return out
}

// OrderToProto converts a folded state. Its revision is the state's
// version: the number of events in the order's history.
func OrderToProto(s order.State) *ordersv1.Order {
	o := new(ordersv1.Order)
	OrderIntoProto(o, s)
	return o
}

// OrderIntoProto sets o to what OrderToProto returns for s, filling the
// line, address and time messages o already holds rather than allocating
// new ones: for a caller that converts states one after another and keeps
// none of the messages, as the read model does when it marshals each
// order's row. o and the messages it holds must be the caller's alone.
func OrderIntoProto(o *ordersv1.Order, s order.State) {
	lines, addr := o.Lines, o.ShippingAddress
	t := [...]*timestamppb.Timestamp{o.CreatedAt, o.UpdatedAt, o.PlacedAt, o.PaidAt, o.ShippedAt, o.DeliveredAt, o.CancelledAt, o.RefundedAt}
	*o = ordersv1.Order{
		OrderId:         s.ID,
		CustomerId:      s.CustomerID,
		Status:          StatusToProto(s.Status),
		Currency:        s.Currency,
		Lines:           linesInto(lines, s.Lines),
		ShippingAddress: addressInto(addr, s.Shipping),
		Total:           s.Total,
		Tax:             s.Tax,
		GrandTotal:      s.GrandTotal(),
		PaymentRef:      s.PaymentRef,
		DeclineReason:   s.DeclineReason,
		CancelReason:    s.CancelReason,
		Carrier:         s.Carrier,
		TrackingNumber:  s.TrackingNumber,
		// Output only, from history read back after the customer was
		// forgotten.
		TrackingNumberErased: s.TrackingNumberErased,
		PersonalDataErased:   s.PersonalDataErased(),
		Revision:             uint64(s.Version),
		Version:              uint32(s.Version),
		CreatedAt:            timestampInto(t[0], s.CreatedAt),
		UpdatedAt:            timestampInto(t[1], s.UpdatedAt),
		PlacedAt:             timestampInto(t[2], s.PlacedAt),
		PaidAt:               timestampInto(t[3], s.PaidAt),
		ShippedAt:            timestampInto(t[4], s.ShippedAt),
		DeliveredAt:          timestampInto(t[5], s.DeliveredAt),
		CancelledAt:          timestampInto(t[6], s.CancelledAt),
		PaidAmount:           s.PaidAmount,
		RefundRef:            s.RefundRef,
		RefundedAt:           timestampInto(t[7], s.RefundedAt),
	}
}

// Timestamp converts a time, leaving the zero time unset rather than 1970.
func Timestamp(t time.Time) *timestamppb.Timestamp { return timestampInto(nil, t) }

// timestampInto is Timestamp into dst when dst is not nil.
func timestampInto(dst *timestamppb.Timestamp, t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	if dst == nil {
		return timestamppb.New(t)
	}
	*dst = timestamppb.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
	return dst
}

// EncodeEvent marshals a domain event into the stored payload, an
// ordersv1.Event with the matching case set, and returns its type name.
func EncodeEvent(e order.Event) (eventType string, data []byte, err error) {
	pb, err := EventToProto(e)
	if err != nil {
		return "", nil, err
	}
	data, err = proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return "", nil, fmt.Errorf("convert: marshal %s: %w", e.EventType(), err)
	}
	return e.EventType(), data, nil
}

// Foldable takes the result of DecodeEvent or OpenEvent for a fold of an
// order's history: an event of a type this build does not know (a newer
// build's, during a rolling upgrade) becomes a nil event and no error,
// which order.Evolve counts in the order's version and otherwise skips, as
// docs/schema-evolution.md promises; every other error stays. A fold that
// refused such an event failed every command on the order, and every
// payment job and deadline of it, until the upgrade was over.
func Foldable(e order.Event, err error) (order.Event, error) {
	if errors.Is(err, ErrUnknownEventType) {
		return nil, nil
	}
	return e, err
}

// DecodeEvent unmarshals a stored payload. It returns ErrUnknownEventType
// for a type this build does not know and ErrCorruptEvent when the bytes do
// not decode or carry a different case than eventType says. Sealed personal
// fields are not opened: they read as erased (see OpenEvent).
func DecodeEvent(eventType string, data []byte) (order.Event, error) {
	pb, err := unmarshalEvent(eventType, data)
	if err != nil {
		return nil, err
	}
	e, err := eventFromStored(eventType, pb)
	if err != nil || pb.GetSealed() == nil {
		return e, err
	}
	return markErased(e), nil
}

// unmarshalEvent unmarshals a stored payload; ErrCorruptEvent when the
// bytes do not decode.
func unmarshalEvent(eventType string, data []byte) (*ordersv1.Event, error) {
	var pb ordersv1.Event
	if err := proto.Unmarshal(data, &pb); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptEvent, eventType, err)
	}
	return &pb, nil
}

// eventFromStored converts a stored payload, checking its case against
// the type header.
func eventFromStored(eventType string, pb *ordersv1.Event) (order.Event, error) {
	e, err := EventFromProto(pb)
	if err != nil {
		if knownType(eventType) {
			// The payload holds no case (or one from a newer build)
			// while the header names a type this build knows.
			return nil, fmt.Errorf("%w: %s: payload holds no %s", ErrCorruptEvent, eventType, eventType)
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownEventType, eventType)
	}
	if e.EventType() != eventType {
		if !knownType(eventType) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownEventType, eventType)
		}
		return nil, fmt.Errorf("%w: header says %s, payload holds %s", ErrCorruptEvent, eventType, e.EventType())
	}
	return e, nil
}

func knownType(t string) bool {
	for _, k := range order.EventTypes {
		if k == t {
			return true
		}
	}
	return false
}

// EventToAPI is EventToProto for clients: the lines of an OrderCreated
// carry their line totals, which the stored event leaves out as derived.
func EventToAPI(e order.Event) (*ordersv1.Event, error) {
	pb, err := EventToProto(e)
	if err != nil {
		return nil, err
	}
	if c := pb.GetOrderCreated(); c != nil {
		for _, l := range c.GetLines() {
			l.LineTotal = l.GetQuantity() * l.GetUnitPrice() // Decide refused lines whose total overflows
		}
	}
	return pb, nil
}

// EventToProto converts a domain event to its contract message.
func EventToProto(e order.Event) (*ordersv1.Event, error) {
	var pb ordersv1.Event
	switch e := e.(type) {
	case order.OrderCreated:
		pb.Event = &ordersv1.Event_OrderCreated{OrderCreated: &ordersv1.OrderCreated{
			OrderId: e.OrderID, CustomerId: e.CustomerID, Currency: e.Currency,
			Lines: linesToEventProto(e.Lines), ShippingAddress: AddressToProto(e.Shipping),
		}}
	case order.ItemAdded:
		pb.Event = &ordersv1.Event_ItemAdded{ItemAdded: &ordersv1.ItemAdded{Sku: e.SKU, Quantity: e.Quantity, UnitPrice: e.UnitPrice}}
	case order.ItemRemoved:
		pb.Event = &ordersv1.Event_ItemRemoved{ItemRemoved: &ordersv1.ItemRemoved{Sku: e.SKU}}
	case order.ItemQuantityChanged:
		pb.Event = &ordersv1.Event_ItemQuantityChanged{ItemQuantityChanged: &ordersv1.ItemQuantityChanged{Sku: e.SKU, Quantity: e.Quantity}}
	case order.ShippingAddressSet:
		pb.Event = &ordersv1.Event_ShippingAddressSet{ShippingAddressSet: &ordersv1.ShippingAddressSet{ShippingAddress: AddressToProto(&e.Address)}}
	case order.OrderPlaced:
		pb.Event = &ordersv1.Event_OrderPlaced{OrderPlaced: &ordersv1.OrderPlaced{Total: e.Total, Subtotal: &e.Subtotal, Tax: e.Tax}}
	case order.PaymentAuthorized:
		pb.Event = &ordersv1.Event_PaymentAuthorized{PaymentAuthorized: &ordersv1.PaymentAuthorized{PaymentRef: e.PaymentRef, Amount: e.Amount}}
	case order.PaymentDeclined:
		pb.Event = &ordersv1.Event_PaymentDeclined{PaymentDeclined: &ordersv1.PaymentDeclined{PaymentRef: e.PaymentRef, Reason: e.Reason}}
	case order.OrderCancelled:
		pb.Event = &ordersv1.Event_OrderCancelled{OrderCancelled: &ordersv1.OrderCancelled{Reason: e.Reason}}
	case order.OrderShipped:
		pb.Event = &ordersv1.Event_OrderShipped{OrderShipped: &ordersv1.OrderShipped{Carrier: e.Carrier, TrackingNumber: e.TrackingNumber, TrackingNumberErased: e.TrackingNumberErased}}
	case order.OrderDelivered:
		pb.Event = &ordersv1.Event_OrderDelivered{OrderDelivered: &ordersv1.OrderDelivered{}}
	case order.RefundIssued:
		pb.Event = &ordersv1.Event_RefundIssued{RefundIssued: &ordersv1.RefundIssued{PaymentRef: e.PaymentRef, RefundRef: e.RefundRef, Amount: e.Amount}}
	case order.CustomerForgotten:
		pb.Event = &ordersv1.Event_CustomerForgotten{CustomerForgotten: &ordersv1.CustomerForgotten{CustomerId: e.CustomerID}}
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnknownEventType, e)
	}
	return &pb, nil
}

// EventFromProto converts a contract message to a domain event, erased
// markers included (EventToProto writes them), so that an event read as
// erased reads so again once encoded. It returns ErrUnknownEventType when
// no case this build knows is set.
func EventFromProto(pb *ordersv1.Event) (order.Event, error) {
	switch e := pb.GetEvent().(type) {
	case *ordersv1.Event_OrderCreated:
		c := e.OrderCreated
		return order.OrderCreated{
			OrderID: c.GetOrderId(), CustomerID: c.GetCustomerId(), Currency: c.GetCurrency(),
			Lines: LinesFromProto(c.GetLines()), Shipping: storedAddress(c.GetShippingAddress()),
		}, nil
	case *ordersv1.Event_ItemAdded:
		return order.ItemAdded{SKU: e.ItemAdded.GetSku(), Quantity: e.ItemAdded.GetQuantity(), UnitPrice: e.ItemAdded.GetUnitPrice()}, nil
	case *ordersv1.Event_ItemRemoved:
		return order.ItemRemoved{SKU: e.ItemRemoved.GetSku()}, nil
	case *ordersv1.Event_ItemQuantityChanged:
		return order.ItemQuantityChanged{SKU: e.ItemQuantityChanged.GetSku(), Quantity: e.ItemQuantityChanged.GetQuantity()}, nil
	case *ordersv1.Event_ShippingAddressSet:
		var a order.Address
		if p := storedAddress(e.ShippingAddressSet.GetShippingAddress()); p != nil {
			a = *p
		}
		return order.ShippingAddressSet{Address: a}, nil
	case *ordersv1.Event_OrderPlaced:
		return placedFromProto(e.OrderPlaced), nil
	case *ordersv1.Event_PaymentAuthorized:
		return order.PaymentAuthorized{PaymentRef: e.PaymentAuthorized.GetPaymentRef(), Amount: e.PaymentAuthorized.GetAmount()}, nil
	case *ordersv1.Event_PaymentDeclined:
		return order.PaymentDeclined{PaymentRef: e.PaymentDeclined.GetPaymentRef(), Reason: e.PaymentDeclined.GetReason()}, nil
	case *ordersv1.Event_OrderCancelled:
		return order.OrderCancelled{Reason: e.OrderCancelled.GetReason()}, nil
	case *ordersv1.Event_OrderShipped:
		return order.OrderShipped{Carrier: e.OrderShipped.GetCarrier(), TrackingNumber: e.OrderShipped.GetTrackingNumber(),
			TrackingNumberErased: e.OrderShipped.GetTrackingNumberErased()}, nil
	case *ordersv1.Event_OrderDelivered:
		return order.OrderDelivered{}, nil
	case *ordersv1.Event_CustomerForgotten:
		return order.CustomerForgotten{CustomerID: e.CustomerForgotten.GetCustomerId()}, nil
	case *ordersv1.Event_RefundIssued:
		r := e.RefundIssued
		return order.RefundIssued{PaymentRef: r.GetPaymentRef(), RefundRef: r.GetRefundRef(), Amount: r.GetAmount()}, nil
	default:
		return nil, ErrUnknownEventType
	}
}

// placedFromProto reads an OrderPlaced, upcasting the first form of the
// event: before tax was recorded OrderPlaced carried only the total, which
// was the lines' sum, so an absent subtotal means subtotal = total and no
// tax. The stored bytes are never rewritten (docs/schema-evolution.md).
func placedFromProto(p *ordersv1.OrderPlaced) order.OrderPlaced {
	if p.Subtotal == nil {
		return order.OrderPlaced{Subtotal: p.GetTotal(), Total: p.GetTotal()}
	}
	return order.OrderPlaced{Subtotal: p.GetSubtotal(), Tax: p.GetTax(), Total: p.GetTotal()}
}

// linesToEventProto stores lines without line_total: history records facts
// given, not values derived from them.
func linesToEventProto(lines []order.Line) []*ordersv1.LineItem {
	out := LinesToProto(lines)
	for _, l := range out {
		l.LineTotal = 0
	}
	return out
}
