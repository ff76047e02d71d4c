package command

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
)

// keyedPrefix starts a fingerprint keyed with the customer's data key.
const keyedPrefix = "k1:"

// encodeEvent stores e sealed with customerID's key when the service has a
// keyring, in plain text otherwise. An OrderCreated names its customer
// itself.
func (s *Service) encodeEvent(ctx context.Context, orderID, customerID string, e order.Event) (string, []byte, error) {
	if s.keys == nil {
		return convert.EncodeEvent(e)
	}
	if c, ok := e.(order.OrderCreated); ok {
		customerID = c.CustomerID
	}
	return convert.SealEvent(ctx, s.keys, orderID, customerID, e)
}

// customerOf returns the customer a request acts for: the order's, or,
// for a CreateOrder of an order not there yet, the one it names. A
// CreateOrder's retry is fingerprinted with the key of the customer its
// original named: one naming another customer is another request
// (REQUEST_ID_REUSED) whatever key it meets, and must not create a key
// for the customer it names.
func customerOf(req request, st order.State) string {
	if c, ok := req.(*ordersv1.CreateOrderRequest); ok && !st.Exists() {
		return c.GetCustomerId()
	}
	return st.CustomerID
}

// personal reports whether req carries personal data: a shipping address
// or a tracking number.
func personal(req request) bool {
	switch r := req.(type) {
	case *ordersv1.CreateOrderRequest:
		return r.GetShippingAddress() != nil
	case *ordersv1.SetShippingAddressRequest:
		return true
	case *ordersv1.ShipOrderRequest:
		return r.GetTrackingNumber() != ""
	}
	return false
}

// firstEventType is the type of the first event the command of a request
// that may be personal records, "" for another request.
func firstEventType(req request) string {
	switch req.(type) {
	case *ordersv1.CreateOrderRequest:
		return order.OrderCreated{}.EventType()
	case *ordersv1.SetShippingAddressRequest:
		return order.ShippingAddressSet{}.EventType()
	case *ordersv1.ShipOrderRequest:
		return order.OrderShipped{}.EventType()
	}
	return ""
}

// fingerprint is what an event's request fingerprint (Metadata) records of a
// request (digest: requestDigest). A plain SHA-256 of a request that holds
// an address would let anyone who reads the log confirm a guessed address,
// even after the customer was forgotten; so with a keyring, a request with
// personal data is fingerprinted "k1:" + HMAC-SHA256 under a key derived
// from the customer's data key, which dies with it. Other requests keep the
// plain SHA-256 (plainFingerprint). A retry after the customer was
// forgotten cannot be checked against its original (call.retryFingerprint).
//
// A customer id that is not a valid one (a retry's, compared before the
// request is checked) gets the plain fingerprint: no original was recorded
// under it, and the keyring is never asked for such a customer's key.
func (s *Service) fingerprint(ctx context.Context, req request, digest []byte, customerID string) (string, error) {
	if s.keys == nil || !personal(req) || order.ValidateID("customer_id", customerID) != nil {
		return plainFingerprint(digest), nil
	}
	k, err := s.keys.DataKey(ctx, customerID)
	if err != nil {
		return "", fmt.Errorf("%w: customer %s: %w", convert.ErrKeyUnavailable, customerID, err)
	}
	mac, err := k.Digest(digest)
	if err != nil {
		return "", err
	}
	// Built on the stack and copied once: a concatenation with
	// EncodeToString allocates three times.
	var buf [len(keyedPrefix) + 2*sha256.Size]byte
	return string(hex.AppendEncode(append(buf[:0], keyedPrefix...), mac)), nil
}
