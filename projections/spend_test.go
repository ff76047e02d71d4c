package projections

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// paidOrders returns the events of n orders of customer c, each created at
// the largest total an order may have, placed and paid in full, at
// positions from 1.
func paidOrders(t *testing.T, c string, n int) []Item {
	t.Helper()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	addr := order.Address{Line1: "1 Way", City: "Oslo", Country: "NO"}
	var pos uint64
	var items []Item
	for k := range n {
		id := fmt.Sprint(c, "-o-", k)
		create := order.CreateOrder{OrderID: id, CustomerID: c, Currency: "EUR", Shipping: &addr}
		for i := range order.MaxLines {
			create.Lines = append(create.Lines, order.Line{SKU: fmt.Sprint("S", i), Quantity: order.MaxQuantity, UnitPrice: order.MaxUnitPrice})
		}
		var s order.State
		for _, cmd := range []order.Command{create, order.PlaceOrder{}, nil} {
			if cmd == nil {
				cmd = order.RecordPayment{Authorized: true, PaymentRef: "p", Amount: s.GrandTotal()}
			}
			evs, err := order.Decide(s, cmd)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				s = order.Evolve(s, e, at)
				pos++
				items = append(items, Item{Rec: eventstore.Recorded{OrderID: id, Position: pos, Version: uint64(s.Version), Type: e.EventType(), Time: at}, Event: e})
			}
		}
	}
	return items
}

// A customer's lifetime spend past int64 (ten orders at the largest total
// an order may have) reads as the largest amount, whether the events were
// applied one by one (the sum in SQL, which turned into a REAL the summary
// could not read) or in one batch (the sum in Go, which wrapped negative).
func TestSpendPastInt64IsHeldAtTheLargest(t *testing.T) {
	items := paidOrders(t, "big", 10)
	for _, batched := range []bool{false, true} {
		m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
		if batched {
			if _, _, err := m.Apply(t.Context(), items); err != nil {
				t.Fatal(err)
			}
		} else {
			for _, it := range items {
				if _, _, err := m.Apply(t.Context(), []Item{it}); err != nil {
					t.Fatal(err)
				}
			}
		}
		s, _, err := m.GetCustomerSummary(t.Context(), "big")
		if err != nil || s.Spend["EUR"] != math.MaxInt64 || s.ByStatus[order.StatusPaid] != 10 {
			t.Errorf("batched %v: summary %+v, %v; want the spend held at %d over 10 paid orders", batched, s, err, int64(math.MaxInt64))
		}
	}
}
