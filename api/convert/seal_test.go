package convert_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

func keyring(t *testing.T) *pii.Keyring {
	t.Helper()
	m, err := pii.NewMasterKey(bytes.Repeat([]byte{1}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return pii.NewKeyring(pii.NewMemStore(), m)
}

// erasedForm is what an event reads as once its customer is forgotten.
func erasedForm(e order.Event) order.Event {
	switch e := e.(type) {
	case order.OrderCreated:
		if e.Shipping != nil {
			e.Shipping = &order.Address{Erased: true}
		}
		return e
	case order.ShippingAddressSet:
		e.Address = order.Address{Erased: true}
		return e
	case order.OrderShipped:
		if e.TrackingNumber != "" {
			e.TrackingNumber, e.TrackingNumberErased = "", true
		}
		return e
	}
	return e
}

func TestSealOpenAndForget(t *testing.T) {
	ctx := t.Context()
	keys := keyring(t)
	type stored struct {
		typ  string
		data []byte
		e    order.Event
	}
	var all []stored
	for _, e := range allEvents() {
		typ, data, err := convert.SealEvent(ctx, keys, "o-1", "c-1", e)
		if err != nil {
			t.Fatalf("%T: %v", e, err)
		}
		// Long enough that random ciphertext does not hold one by
		// chance: a two-byte "T1" turned up in about one run in 400.
		for _, secret := range []string{"Ada Lovelace", "1 Analytical Way", "London", "TRACK-0042-T1"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Fatalf("%s stores %q in plain text", typ, secret)
			}
		}
		got, err := convert.OpenEvent(ctx, keys, "o-1", typ, data)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: OpenEvent = %#v, %v; want %#v", typ, got, err, e)
		}
		// Without the key, and without a keyring, personal fields read as
		// erased; everything else as it was.
		got, err = convert.DecodeEvent(typ, data)
		if err != nil || !reflect.DeepEqual(got, erasedForm(e)) {
			t.Fatalf("%s: DecodeEvent = %#v, %v", typ, got, err)
		}
		// And it reads so again once encoded: an erased marker is part of
		// what the event says.
		typ2, data2, err := convert.EncodeEvent(got)
		if err != nil {
			t.Fatalf("%s: EncodeEvent of its erased form: %v", typ, err)
		}
		if again, err := convert.DecodeEvent(typ2, data2); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("%s: erased form %#v reads %#v, %v once encoded and decoded", typ, got, again, err)
		}
		all = append(all, stored{typ, data, e})
	}
	// An envelope moved to another order does not open.
	if _, err := convert.OpenEvent(ctx, keys, "o-2", all[0].typ, all[0].data); !errors.Is(err, convert.ErrCorruptEvent) {
		t.Fatalf("moved envelope: %v, want ErrCorruptEvent", err)
	}
	if err := keys.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		got, err := convert.OpenEvent(ctx, keys, "o-1", s.typ, s.data)
		if err != nil || !reflect.DeepEqual(got, erasedForm(s.e)) {
			t.Fatalf("%s after forget: %#v, %v; want %#v", s.typ, got, err, erasedForm(s.e))
		}
	}
}

// TestOpenPlainEvents: events stored before sealing keep decoding as
// written.
func TestOpenPlainEvents(t *testing.T) {
	for _, e := range allEvents() {
		typ, data, err := convert.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := convert.OpenEvent(t.Context(), keyring(t), "o-1", typ, data)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: %#v, %v", typ, got, err)
		}
	}
}

// An envelope naming a customer id no command accepts is a corrupt event,
// and nothing else: not the order package's ErrInvalid, which the service
// edge answers as the client's invalid argument.
func TestEnvelopeWithAnInvalidCustomerIsOnlyCorrupt(t *testing.T) {
	data, err := proto.Marshal(&ordersv1.Event{
		Event:  &ordersv1.Event_OrderCreated{OrderCreated: &ordersv1.OrderCreated{OrderId: "o-1", CustomerId: "c-1", Currency: "EUR"}},
		Sealed: &ordersv1.Sealed{CustomerId: "not an id", KeyVersion: 1, Ciphertext: bytes.Repeat([]byte{1}, 40)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = convert.OpenEvent(t.Context(), keyring(t), "o-1", "OrderCreated", data)
	if !errors.Is(err, convert.ErrCorruptEvent) || errors.Is(err, order.ErrInvalid) {
		t.Fatalf("OpenEvent: %v; want ErrCorruptEvent and not order.ErrInvalid", err)
	}
}
