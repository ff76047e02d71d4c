package convert

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

// ErrKeyUnavailable reports that the keyring could not be asked for a key
// (the keys bucket did not answer): nothing is known about the event's
// personal data, so it must be read again later rather than shown as
// erased.
var ErrKeyUnavailable = errors.New("convert: personal data key unavailable")

// Keyring is what sealing and opening need of customers' data keys;
// *pii.Keyring implements it.
type Keyring interface {
	// DataKey returns the customer's current key, creating one.
	DataKey(ctx context.Context, customerID string) (pii.Key, error)
	// Key returns the key of a version; pii.ErrForgotten when erased.
	Key(ctx context.Context, customerID string, version uint64) (pii.Key, error)
}

// sealAD is the additional data binding a sealed envelope to its event.
func sealAD(orderID, eventType, customerID string, version uint64) []byte {
	return []byte("orderstream-pii/v1\x00" + orderID + "\x00" + eventType + "\x00" + customerID + "\x00" + strconv.FormatUint(version, 10))
}

// takePersonal moves the personal fields out of pb into a PersonalData,
// leaving them empty in pb; nil when pb has none.
func takePersonal(pb *ordersv1.Event) *ordersv1.PersonalData {
	switch e := pb.GetEvent().(type) {
	case *ordersv1.Event_OrderCreated:
		if a := e.OrderCreated.GetShippingAddress(); a != nil {
			e.OrderCreated.ShippingAddress = nil
			return &ordersv1.PersonalData{ShippingAddress: a}
		}
	case *ordersv1.Event_ShippingAddressSet:
		a := e.ShippingAddressSet.GetShippingAddress()
		e.ShippingAddressSet.ShippingAddress = nil
		return &ordersv1.PersonalData{ShippingAddress: a}
	case *ordersv1.Event_OrderShipped:
		if t := e.OrderShipped.GetTrackingNumber(); t != "" {
			e.OrderShipped.TrackingNumber = ""
			return &ordersv1.PersonalData{TrackingNumber: t}
		}
	}
	return nil
}

// putPersonal puts opened personal fields back into pb.
func putPersonal(pb *ordersv1.Event, pd *ordersv1.PersonalData) {
	switch e := pb.GetEvent().(type) {
	case *ordersv1.Event_OrderCreated:
		e.OrderCreated.ShippingAddress = pd.GetShippingAddress()
	case *ordersv1.Event_ShippingAddressSet:
		e.ShippingAddressSet.ShippingAddress = pd.GetShippingAddress()
	case *ordersv1.Event_OrderShipped:
		e.OrderShipped.TrackingNumber = pd.GetTrackingNumber()
	}
}

// markErased marks the personal fields of an event whose sealed envelope
// cannot be opened. An envelope exists only when there were personal
// fields, so the event had an address or a tracking number.
func markErased(e order.Event) order.Event {
	switch e := e.(type) {
	case order.OrderCreated:
		e.Shipping = &order.Address{Erased: true}
		return e
	case order.ShippingAddressSet:
		e.Address = order.Address{Erased: true}
		return e
	case order.OrderShipped:
		e.TrackingNumber, e.TrackingNumberErased = "", true
		return e
	}
	return e
}

// SealEvent is EncodeEvent with the event's personal fields (shipping
// address, tracking number) sealed with customerID's data key, bound to
// orderID and the event type, in the payload's Sealed envelope. An event
// without personal fields is stored as EncodeEvent stores it. Errors are
// the keyring's, wrapped in ErrKeyUnavailable, or EncodeEvent's.
func SealEvent(ctx context.Context, keys Keyring, orderID, customerID string, e order.Event) (eventType string, data []byte, err error) {
	pb, err := EventToProto(e)
	if err != nil {
		return "", nil, err
	}
	eventType = e.EventType()
	if pd := takePersonal(pb); pd != nil {
		k, err := keys.DataKey(ctx, customerID)
		if err != nil {
			return "", nil, fmt.Errorf("%w: customer %s: %w", ErrKeyUnavailable, customerID, err)
		}
		pt, err := proto.MarshalOptions{Deterministic: true}.Marshal(pd)
		if err != nil {
			return "", nil, fmt.Errorf("convert: marshal personal data of %s: %w", eventType, err)
		}
		ct, err := k.Seal(pt, sealAD(orderID, eventType, customerID, k.Version))
		if err != nil {
			return "", nil, err
		}
		pb.Sealed = &ordersv1.Sealed{CustomerId: customerID, KeyVersion: k.Version, Ciphertext: ct}
	}
	data, err = proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return "", nil, fmt.Errorf("convert: marshal %s: %w", eventType, err)
	}
	return eventType, data, nil
}

// OpenEvent is DecodeEvent that opens sealed personal fields with keys.
// When the key is gone (the customer was forgotten), or keys is nil, they
// read as erased (order.Address.Erased, order.OrderShipped.TrackingNumberErased),
// never as an error. An envelope that does not authenticate (altered, or
// moved from another event), or names a customer id no command accepts, is
// ErrCorruptEvent; a keyring that does not answer is ErrKeyUnavailable.
func OpenEvent(ctx context.Context, keys Keyring, orderID, eventType string, data []byte) (order.Event, error) {
	pb, err := unmarshalEvent(eventType, data)
	if err != nil {
		return nil, err
	}
	s := pb.GetSealed()
	if s == nil || keys == nil {
		return DecodeEvent(eventType, data)
	}
	// No event was sealed for a customer id a command refuses: an envelope
	// naming one was altered. Asked for, a key store that refuses the id
	// (too long for its entry keys) made it unavailable, and every reader
	// of the log waited for it for ever. The id's error is kept as text,
	// not wrapped: it is an order.FieldError, which the service edge
	// answers as the client's INVALID_ARGUMENT on customer_id, where this
	// is a corrupt log, for the operator (INTERNAL, logged).
	if err := order.ValidateID("customer_id", s.GetCustomerId()); err != nil {
		return nil, fmt.Errorf("%w: %s: sealed personal data: %v", ErrCorruptEvent, eventType, err)
	}
	k, err := keys.Key(ctx, s.GetCustomerId(), s.GetKeyVersion())
	if errors.Is(err, pii.ErrForgotten) {
		return DecodeEvent(eventType, data)
	}
	if errors.Is(err, pii.ErrCorrupt) {
		return nil, fmt.Errorf("%w: %s: sealed personal data: %w", ErrCorruptEvent, eventType, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: customer %s: %w", ErrKeyUnavailable, s.GetCustomerId(), err)
	}
	pt, err := k.Open(s.GetCiphertext(), sealAD(orderID, eventType, s.GetCustomerId(), s.GetKeyVersion()))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: sealed personal data: %w", ErrCorruptEvent, eventType, err)
	}
	var pd ordersv1.PersonalData
	if err := proto.Unmarshal(pt, &pd); err != nil {
		return nil, fmt.Errorf("%w: %s: personal data: %v", ErrCorruptEvent, eventType, err)
	}
	putPersonal(pb, &pd)
	return eventFromStored(eventType, pb)
}
