package projections

import (
	"path/filepath"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// A customer's lifetime spend does not depend on how the log's events came
// in batches, even at int64's bound: ten orders at the largest total put it
// there, and an eleventh paid and refunded in one batch leaves what it
// leaves applied event by event. Before, the batch summed the payment and
// the refund to nothing first, and the spend stayed at the bound.
func TestSaturatedSpendDoesNotDependOnBatching(t *testing.T) {
	ctx := t.Context()
	items := paidOrders(t, "big", 11)
	head, tail := items[:30], items[30:] // ten paid orders; the eleventh's create, place and pay
	last := tail[len(tail)-1].Rec
	pay := tail[len(tail)-1].Event.(order.PaymentAuthorized)
	tail = append(tail,
		Item{Rec: eventstore.Recorded{OrderID: last.OrderID, Position: last.Position + 1, Version: 4, Type: "OrderCancelled", Time: last.Time}, Event: order.OrderCancelled{Reason: "r"}},
		Item{Rec: eventstore.Recorded{OrderID: last.OrderID, Position: last.Position + 2, Version: 5, Type: "RefundIssued", Time: last.Time}, Event: order.RefundIssued{PaymentRef: pay.PaymentRef, RefundRef: "r1", Amount: pay.Amount}})
	spend := map[bool]int64{}
	for _, oneBatch := range []bool{false, true} {
		m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
		if _, _, err := m.Apply(ctx, head); err != nil {
			t.Fatal(err)
		}
		batches := [][]Item{tail}
		if !oneBatch {
			batches = nil
			for _, it := range tail {
				batches = append(batches, []Item{it})
			}
		}
		for _, b := range batches {
			if _, _, err := m.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		s, _, err := m.GetCustomerSummary(ctx, "big")
		if err != nil {
			t.Fatal(err)
		}
		spend[oneBatch] = s.Spend["EUR"]
	}
	if spend[false] != spend[true] {
		t.Fatalf("lifetime spend %d applied event by event, %d applied in one batch", spend[false], spend[true])
	}
}
