package corpus_test

import (
	"reflect"
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/order"
)

// fact is what one stored event means: the domain event and the metadata a
// reader relies on. Written by hand when a set is added, never derived from
// today's decoder, so a decoder that changes meaning fails.
type fact struct {
	file      string
	orderID   string
	version   uint64
	requestID string
	event     order.Event
}

var (
	ada  = order.Address{Name: "Ada Lovelace", Line1: "12 St James's Square", Line2: "Flat 3", City: "London", Region: "Greater London", PostalCode: "SW1Y 4JH", Country: "GB"}
	home = order.Address{Name: "Ada King", Line1: "Ockham Park", City: "Ockham", PostalCode: "GU23 6NG", Country: "GB"}
)

// history is what the generator's three orders mean: a delivered order (a),
// one cancelled after payment and refunded (b), one declined (c). Each set
// recorded the same steps; what differs between sets is written out by the
// caller.
func history(placedA, placedB, placedC order.OrderPlaced, paidA int64) []fact {
	return []fact{
		{"001-OrderCreated.json", "corpus-a", 1, "a-create", order.OrderCreated{OrderID: "corpus-a", CustomerID: "cust-ada", Currency: "GBP", Lines: []order.Line{{SKU: "BOOK-1", Quantity: 2, UnitPrice: 1250}}, Shipping: &ada}},
		{"002-ItemAdded.json", "corpus-a", 2, "a-add", order.ItemAdded{SKU: "PEN-2", Quantity: 1, UnitPrice: 499}},
		{"003-ItemQuantityChanged.json", "corpus-a", 3, "a-qty", order.ItemQuantityChanged{SKU: "BOOK-1", Quantity: 3}},
		{"004-ItemRemoved.json", "corpus-a", 4, "a-remove", order.ItemRemoved{SKU: "PEN-2"}},
		{"005-ShippingAddressSet.json", "corpus-a", 5, "a-ship-to", order.ShippingAddressSet{Address: home}},
		{"006-OrderPlaced.json", "corpus-a", 6, "a-place", placedA},
		{"007-PaymentAuthorized.json", "corpus-a", 7, "a-pay", order.PaymentAuthorized{PaymentRef: "pay-a", Amount: paidA}},
		{"008-OrderShipped.json", "corpus-a", 8, "a-ship", order.OrderShipped{Carrier: "Royal Mail", TrackingNumber: "RM123456785GB"}},
		{"009-OrderDelivered.json", "corpus-a", 9, "a-deliver", order.OrderDelivered{}},
		{"010-OrderCreated.json", "corpus-b", 1, "b-create", order.OrderCreated{OrderID: "corpus-b", CustomerID: "cust-bob", Currency: "EUR", Lines: []order.Line{{SKU: "MUG-3", Quantity: 1, UnitPrice: 900}}, Shipping: &home}},
		{"011-OrderPlaced.json", "corpus-b", 2, "b-place", placedB},
		{"012-PaymentAuthorized.json", "corpus-b", 3, "b-pay", order.PaymentAuthorized{PaymentRef: "pay-b", Amount: 900}},
		{"013-OrderCancelled.json", "corpus-b", 4, "b-cancel", order.OrderCancelled{Reason: "customer changed their mind"}},
		{"014-RefundIssued.json", "corpus-b", 5, "b-refund", order.RefundIssued{PaymentRef: "pay-b", RefundRef: "ref-b", Amount: 900}},
		{"015-OrderCreated.json", "corpus-c", 1, "c-create", order.OrderCreated{OrderID: "corpus-c", CustomerID: "cust-cy", Currency: "USD", Lines: []order.Line{{SKU: "LAMP-4", Quantity: 1, UnitPrice: 15000}}, Shipping: &ada}},
		{"016-OrderPlaced.json", "corpus-c", 2, "c-place", placedC},
		{"017-PaymentDeclined.json", "corpus-c", 3, "c-pay", order.PaymentDeclined{PaymentRef: "pay-c", Reason: "insufficient funds"}},
	}
}

// sets maps each corpus set to its facts.
var sets = map[string][]fact{
	// v1: OrderPlaced recorded only the amount to charge, the lines' sum.
	// It means that subtotal and no tax (the codec's upcast).
	"v1": history(
		order.OrderPlaced{Subtotal: 3750, Total: 3750},
		order.OrderPlaced{Subtotal: 900, Total: 900},
		order.OrderPlaced{Subtotal: 15000, Total: 15000},
		3750),
	// v2: OrderPlaced records subtotal, tax and total; order a was placed
	// with tax.
	"v2": history(
		order.OrderPlaced{Subtotal: 3750, Tax: 300, Total: 4050},
		order.OrderPlaced{Subtotal: 900, Total: 900},
		order.OrderPlaced{Subtotal: 15000, Total: 15000},
		4050),
	// v3: the same events as v2, their type and metadata in one
	// Orders-Meta header instead of one Orders-* header per field.
	"v3": history(
		order.OrderPlaced{Subtotal: 3750, Tax: 300, Total: 4050},
		order.OrderPlaced{Subtotal: 900, Total: 900},
		order.OrderPlaced{Subtotal: 15000, Total: 15000},
		4050),
}

// TestCorpusDecodes decodes every stored event of every set with today's
// code and requires the facts it meant when it was written.
func TestCorpusDecodes(t *testing.T) {
	for set, facts := range sets {
		t.Run(set, func(t *testing.T) {
			names, recs := readSet(t, set)
			if len(names) != len(facts) {
				t.Fatalf("%d files, %d facts: every file needs its fact", len(names), len(facts))
			}
			for i, f := range facts {
				checkFact(t, names[i], recs[i], f)
			}
		})
	}
}

func checkFact(t *testing.T, name string, rec eventstore.Recorded, f fact) {
	t.Helper()
	if name != f.file {
		t.Fatalf("file %s where the facts expect %s", name, f.file)
	}
	if rec.OrderID != f.orderID || rec.Version != f.version || rec.Meta.RequestID != f.requestID || rec.Meta.Actor != "corpus-writer" {
		t.Errorf("%s: order %s version %d request %s actor %s; want %s %d %s corpus-writer",
			name, rec.OrderID, rec.Version, rec.Meta.RequestID, rec.Meta.Actor, f.orderID, f.version, f.requestID)
	}
	if rec.Meta.OccurredAt.IsZero() || rec.Time.IsZero() {
		t.Errorf("%s: occurred-at %v, stored %v: both must survive", name, rec.Meta.OccurredAt, rec.Time)
	}
	got, err := convert.DecodeEvent(rec.Type, rec.Data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !reflect.DeepEqual(got, f.event) {
		t.Errorf("%s decodes to\n  %#v\nwant\n  %#v", name, got, f.event)
	}
}

// TestCorpusChainsVerify checks that the hash chain of every stored order
// still verifies: the chain's layout is as permanent as the events.
func TestCorpusChainsVerify(t *testing.T) {
	for set := range sets {
		_, recs := readSet(t, set)
		if b := chain.Verify(recs); b != nil {
			t.Errorf("%s: chain breaks: %+v", set, b)
		}
	}
}

// TestCorpusFolds folds each stored order and checks where its history
// leads, so events that decode alike but apply differently are caught too.
func TestCorpusFolds(t *testing.T) {
	type outcome struct {
		status          order.Status
		total, tax, due int64
		paid            int64
		shippingCity    string
	}
	want := map[string]map[string]outcome{
		"v1": {
			"corpus-a": {order.StatusDelivered, 3750, 0, 3750, 3750, "Ockham"},
			"corpus-b": {order.StatusCancelled, 900, 0, 900, 900, "Ockham"},
			"corpus-c": {order.StatusPaymentDeclined, 15000, 0, 15000, 0, "London"},
		},
		"v2": {
			"corpus-a": {order.StatusDelivered, 3750, 300, 4050, 4050, "Ockham"},
			"corpus-b": {order.StatusCancelled, 900, 0, 900, 900, "Ockham"},
			"corpus-c": {order.StatusPaymentDeclined, 15000, 0, 15000, 0, "London"},
		},
		"v3": {
			"corpus-a": {order.StatusDelivered, 3750, 300, 4050, 4050, "Ockham"},
			"corpus-b": {order.StatusCancelled, 900, 0, 900, 900, "Ockham"},
			"corpus-c": {order.StatusPaymentDeclined, 15000, 0, 15000, 0, "London"},
		},
	}
	for set, orders := range want {
		_, recs := readSet(t, set)
		events := map[string][]order.Event{}
		for _, r := range recs {
			e, err := convert.DecodeEvent(r.Type, r.Data)
			if err != nil {
				t.Fatal(err)
			}
			events[r.OrderID] = append(events[r.OrderID], e)
		}
		for id, w := range orders {
			s := order.Fold(events[id], nil)
			got := outcome{s.Status, s.Total, s.Tax, s.GrandTotal(), s.PaidAmount, ""}
			if s.Shipping != nil {
				got.shippingCity = s.Shipping.City
			}
			if got != w {
				t.Errorf("%s %s folds to %+v, want %+v", set, id, got, w)
			}
		}
	}
}
