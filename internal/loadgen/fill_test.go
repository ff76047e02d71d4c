package loadgen

import (
	"io"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/rawbench"
)

// The floor's fill with a mix: adds and places work on the orders it
// created, so the log it leaves holds orders of several events, where
// CreateOrder alone leaves one event per order.
func TestFillLogWithAMix(t *testing.T) {
	for _, tc := range []struct {
		mix        Mix
		manyEvents bool // fewer orders than events
	}{
		{Mix{Create: 1}, false},
		{Mix{Create: 2, Add: 2, Place: 1}, true},
	} {
		t.Run(tc.mix.String(), func(t *testing.T) {
			a, g := inProcessOrdersd(t, nil)
			orders, err := rawbench.OpenLog("nats://"+a.NATS, "ORDERS")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(orders.Close)
			const events = 300
			cfg := FloorConfig{Clients: 8, Events: events, FillTimeout: time.Minute, FillMix: tc.mix, Progress: io.Discard}
			if _, err := fillLog(t.Context(), cfg, orders, g); err != nil {
				t.Fatal(err)
			}
			admin := ordersv1.NewOrderAdminServiceClient(g.conn)
			if _, err := settle(t.Context(), admin); err != nil {
				t.Fatal(err)
			}
			n, _, err := orders.Size(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n < events {
				t.Fatalf("log holds %d events after a fill to %d", n, events)
			}
			// Every fill order is customer "bench"'s: the summary counts
			// them, by status.
			res, err := ordersv1.NewOrderQueryServiceClient(g.conn).GetCustomerSummary(t.Context(),
				&ordersv1.GetCustomerSummaryRequest{CustomerId: "bench", Consistency: &ordersv1.Consistency{MinPosition: n}})
			if err != nil {
				t.Fatal(err)
			}
			count := int(res.GetSummary().GetOrderCount())
			placed := count
			for _, sc := range res.GetSummary().GetOrdersByStatus() {
				if sc.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_DRAFT {
					placed -= int(sc.GetCount())
				}
			}
			if tc.manyEvents {
				if count*2 > int(n) || placed == 0 {
					t.Fatalf("%d orders (%d placed) for %d events: want orders of several events, some placed", count, placed, n)
				}
			} else if uint64(count) != n {
				t.Fatalf("%d orders for %d events: want one order per event", count, n)
			}
		})
	}
}
