package projections_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
)

// A customer forgotten twice (a second ForgetCustomer under another
// request id records a second CustomerForgotten: forgottenBy matches by
// request id). The read model's forget records a change only for an order
// that still holds personal data (holdsPersonalData), so live watchers get
// one change, at the first erasure. HistoryChanges took an order with a
// Shipping at all (erased included) as having personal data, and a watch
// resumed through the log got a second change at the second erasure.
func TestHistoryChangesSecondErasureChangesNothing(t *testing.T) {
	enc := func(e order.Event) (string, []byte) {
		typ, data, err := convert.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		return typ, data
	}
	rec := func(pos uint64, subject string, e order.Event) eventstore.Recorded {
		typ, data := enc(e)
		return eventstore.Recorded{OrderID: subject, Position: pos, Type: typ, Data: data,
			Meta: eventstore.Metadata{RequestID: "r" + typ, OccurredAt: time.Unix(int64(pos), 0)}}
	}
	const id, customer = "o-1", "c-1"
	recs := []eventstore.Recorded{
		rec(1, id, order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR",
			Lines: []order.Line{{SKU: "A", Quantity: 1, UnitPrice: 100}}, Shipping: &order.Address{Line1: "1", City: "Bern", Country: "CH"}}),
		rec(2, order.CustomersSubjectID, order.CustomerForgotten{CustomerID: customer}),
		rec(3, order.CustomersSubjectID, order.CustomerForgotten{CustomerID: customer}),
	}
	cs, err := projections.HistoryChanges(t.Context(), nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	if got := positions(cs); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("changes at %v, want [1 2]: the second erasure (3) found nothing left to erase, the read model records no change there", got)
	}
}

func positions(cs []projections.Change) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.Position)
	}
	return out
}

// A watch resumed through the log on a node whose keyring still caches a
// customer's key (it opened their data before) and which has not yet
// applied the customer's erasure: an event another node sealed before the
// erasure and appended after it opened with the cached key, and the
// watcher was sent the tracking number in the clear after the erasure,
// which nothing sent later corrected. The key is dropped at the erasure,
// as the runner drops it.
func TestHistoryChangesAfterAnErasureDoNotOpenWithACachedKey(t *testing.T) {
	ctx := t.Context()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{5}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys := pii.NewMemStore()
	sealer, reader := pii.NewKeyring(keys, master), pii.NewKeyring(keys, master)
	const id, customer, tracking = "o-1", "c-1", "TRK-4711"
	now := time.Now()
	rec := func(subject string, pos, ver uint64, typ string, data []byte) eventstore.Recorded {
		return eventstore.Recorded{OrderID: subject, Position: pos, Version: ver, Type: typ, Data: data, Time: now, Meta: eventstore.Metadata{OccurredAt: now}}
	}
	seal := sealing(t, sealer, id, customer)
	typ, data := seal(order.OrderCreated{OrderID: id, CustomerID: customer, Currency: "EUR",
		Shipping: &order.Address{Name: "Ada", Line1: "1 Analytical Way", City: "London", Country: "GB"}})
	created := rec(id, 1, 1, typ, data)
	if cs, err := projections.HistoryChanges(ctx, reader, []eventstore.Recorded{created}); err != nil || len(cs) != 1 || cs[0].State.Shipping == nil || cs[0].State.Shipping.Line1 == "" {
		t.Fatalf("before the erasure: %+v, %v; want the order with its address", cs, err)
	}
	shipTyp, shipData := seal(order.OrderShipped{Carrier: "DHL", TrackingNumber: tracking})
	if err := sealer.Forget(ctx, customer); err != nil {
		t.Fatal(err)
	}
	ftyp, fdata, err := convert.EncodeEvent(order.CustomerForgotten{CustomerID: customer})
	if err != nil {
		t.Fatal(err)
	}
	forgot := rec(order.CustomersSubjectID, 2, 1, ftyp, fdata)
	cs, err := projections.HistoryChanges(ctx, reader, []eventstore.Recorded{created, forgot, rec(id, 3, 2, shipTyp, shipData)})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) == 0 || cs[len(cs)-1].Position != 3 {
		t.Fatalf("changes %+v: want the shipment's at 3 last", cs)
	}
	for _, c := range cs {
		if c.Position > forgot.Position && c.State.TrackingNumber == tracking {
			t.Errorf("change at %d, after the erasure at %d: tracking number in the clear", c.Position, forgot.Position)
		}
	}
}
