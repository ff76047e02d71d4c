package convert

import (
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// OrderFromProto is the inverse of OrderToProto: the folded state an Order
// message describes. Line totals, the grand total and the revision are
// derived from the lines, the totals and the version, so they are not read; an unset time is the zero
// time and times come back in UTC. An unknown status value converts to
// StatusUnspecified.
func OrderFromProto(o *ordersv1.Order) order.State {
	st, _ := StatusFromProto(o.GetStatus())
	return order.State{
		ID:             o.GetOrderId(),
		CustomerID:     o.GetCustomerId(),
		Currency:       o.GetCurrency(),
		Status:         st,
		Lines:          LinesFromProto(o.GetLines()),
		Shipping:       storedAddress(o.GetShippingAddress()),
		Total:          o.GetTotal(),
		Tax:            o.GetTax(),
		PaymentRef:     o.GetPaymentRef(),
		DeclineReason:  o.GetDeclineReason(),
		PaidAmount:     o.GetPaidAmount(),
		RefundRef:      o.GetRefundRef(),
		CancelReason:   o.GetCancelReason(),
		Carrier:        o.GetCarrier(),
		TrackingNumber: o.GetTrackingNumber(),
		// Read back, unlike in requests: the read model stores erased
		// state as this message.
		TrackingNumberErased: o.GetTrackingNumberErased(),
		Version:              int(o.GetVersion()),
		CreatedAt:            fromTimestamp(o.GetCreatedAt()),
		UpdatedAt:            fromTimestamp(o.GetUpdatedAt()),
		PlacedAt:             fromTimestamp(o.GetPlacedAt()),
		PaidAt:               fromTimestamp(o.GetPaidAt()),
		ShippedAt:            fromTimestamp(o.GetShippedAt()),
		DeliveredAt:          fromTimestamp(o.GetDeliveredAt()),
		CancelledAt:          fromTimestamp(o.GetCancelledAt()),
		RefundedAt:           fromTimestamp(o.GetRefundedAt()),
	}
}

// storedAddress is AddressFromProto keeping the erased flag, for state
// the system itself stored.
func storedAddress(a *ordersv1.Address) *order.Address {
	out := AddressFromProto(a)
	if out != nil {
		out.Erased = a.GetErased()
	}
	return out
}

// fromTimestamp is the inverse of Timestamp: unset is the zero time.
func fromTimestamp(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}
