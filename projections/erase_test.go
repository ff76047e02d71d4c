package projections

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// An order whose shipment the projection decoded only after its customer's
// key was destroyed shows an erased tracking number beside an address
// still in the clear from its creation. The CustomerForgotten that follows
// must erase the address too, whether it comes in the same batch or later.
func TestForgettingErasesWhatALaggingDecodeLeftInTheClear(t *testing.T) {
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	withAddress := created("o-1", "c", 1)
	ev := withAddress.Event.(order.OrderCreated)
	ev.Shipping = &order.Address{Name: "Ada", Line1: "1 Analytical Way", City: "London", Country: "GB"}
	withAddress.Event = ev
	shipped := Item{Rec: eventstore.Recorded{OrderID: "o-1", Position: 2, Version: 2, Type: "OrderShipped", Time: at},
		Event: order.OrderShipped{Carrier: "DHL", TrackingNumberErased: true}}
	forgot := Item{Rec: eventstore.Recorded{OrderID: order.CustomersSubjectID, Position: 3, Version: 1, Type: "CustomerForgotten", Time: at},
		Event: order.CustomerForgotten{CustomerID: "c"}}
	for name, batches := range map[string][][]Item{
		"one batch":          {{withAddress, shipped, forgot}},
		"batch by batch":     {{withAddress}, {shipped}, {forgot}},
		"erasure on its own": {{withAddress, shipped}, {forgot}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			m := openModel(t, filepath.Join(t.TempDir(), "rm.db"))
			for _, b := range batches {
				if _, _, err := m.Apply(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			o, pos, err := m.GetOrder(ctx, "o-1")
			if err != nil || pos != 3 {
				t.Fatalf("GetOrder = at %d, %v; want at 3", pos, err)
			}
			if s := o.State.Shipping; s == nil || !s.Erased || s.Line1 != "" || s.Name != "" {
				t.Errorf("address after the erasure: %+v; want erased", s)
			}
			if !o.State.TrackingNumberErased || o.State.TrackingNumber != "" {
				t.Errorf("tracking after the erasure: %q, erased %v", o.State.TrackingNumber, o.State.TrackingNumberErased)
			}
		})
	}
}
