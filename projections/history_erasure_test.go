package projections_test

import (
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
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
