package projections_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// Node A runs the command side, node B the projection; both keyrings
// share the keys store, and B's learns of A's erasure from the log alone
// (its CustomerForgotten). A ShipOrder on A sealed its tracking number with
// the customer's key before A's ForgetCustomer destroyed the key, and its
// append landed after the CustomerForgotten (they are on different
// subjects: no conflict). B still holds the key in its cache: it opened
// the customer's data before, as a watch resuming from the log does. B's
// runner must drop the key as it decodes the CustomerForgotten, before it
// decodes what follows in the same batch, or the OrderShipped is opened
// with the destroyed key and folded in the clear after the erasure ran,
// where nothing erases it again. A rebuild of the same log agrees.
func TestEventAfterAForgetIsNotOpenedWithTheDestroyedKey(t *testing.T) {
	_, store := fileStore(t)
	ctx := t.Context()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{5}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys := pii.NewMemStore()
	ringA, ringB := pii.NewKeyring(keys, master), pii.NewKeyring(keys, master)
	const id, customer, tracking = "o-1", "c-1", "TRK-FORGETME-4711"
	appendTo := func(subject string, version uint64, typ string, data []byte) uint64 {
		t.Helper()
		res, err := store.Append(ctx, subject, version, []eventstore.EventData{{Type: typ, Data: data,
			Meta: eventstore.Metadata{RequestID: subject + typ, OccurredAt: time.Now()}}})
		if err != nil {
			t.Fatal(err)
		}
		return res.Position
	}
	seal := sealing(t, ringA, id, customer)
	typ, data := seal(order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR",
		Shipping: &order.Address{Name: "Ada", Line1: "17 Forgetmenot Lane", City: "London", Country: "GB"}})
	appendTo(id, 0, typ, data)

	// B opens the customer's data once (here as a watch resuming from the
	// log does), which caches the key in B's keyring.
	recs, err := store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := projections.HistoryChanges(ctx, ringB, recs); err != nil || len(cs) != 1 || cs[0].State.Shipping.Line1 == "" {
		t.Fatalf("B's history read: %+v", cs)
	}

	// A: ShipOrder seals, ForgetCustomer runs, ShipOrder's append lands.
	shipTyp, shipData := seal(order.OrderShipped{Carrier: "DHL", TrackingNumber: tracking})
	if err := ringA.Forget(ctx, customer); err != nil {
		t.Fatal(err)
	}
	ftyp, fdata, err := convert.EncodeEvent(order.CustomerForgotten{CustomerID: customer})
	if err != nil {
		t.Fatal(err)
	}
	forgotAt := appendTo(order.CustomersSubjectID, 0, ftyp, fdata)
	last := appendTo(id, 1, shipTyp, shipData)

	// B's projection, behind the log, reads [created, forgotten, shipped].
	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := projections.NewRunner(store, d, projections.WithKeyring(ringB))
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, r)
	if err := r.WaitForCommitted(ctx, last); err != nil {
		t.Fatal(err)
	}
	o, _, err := r.ReadModel().GetOrder(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if o.State.TrackingNumber != "" {
		t.Errorf("after CustomerForgotten at %d: tracking number %q in the clear (erased %v); the key was destroyed before it was appended",
			forgotAt, o.State.TrackingNumber, o.State.TrackingNumberErased)
	}
	if s := o.State.Shipping; s == nil || !s.Erased {
		t.Errorf("address after the erasure: %+v", s)
	}
	// A rebuild of the same log reads it as erased too.
	if err := r.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	o, _, err = r.ReadModel().GetOrder(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if o.State.TrackingNumber != "" || !o.State.TrackingNumberErased {
		t.Errorf("after a rebuild: tracking number %q, erased %v; want erased", o.State.TrackingNumber, o.State.TrackingNumberErased)
	}
}

// sealing returns what seals an event of order id, for customer, with
// ring's key, as the command side does; it fails t on error.
func sealing(t *testing.T, ring convert.Keyring, id, customer string) func(order.Event) (string, []byte) {
	return func(e order.Event) (string, []byte) {
		t.Helper()
		typ, data, err := convert.SealEvent(t.Context(), ring, id, customer, e)
		if err != nil {
			t.Fatal(err)
		}
		return typ, data
	}
}
