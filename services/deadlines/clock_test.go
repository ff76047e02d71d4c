package deadlines_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/command"
)

// skewedCommands is the command service on a node whose clock is off by
// skew (an ordersd whose NTP drifted; the NATS server's clock is right).
type skewedCommands struct {
	commandRef
	skew time.Duration
}

func (c *skewedCommands) skewed() *command.Service {
	svc, err := command.New(c.e.store.Load(), command.WithClock(func() time.Time { return time.Now().Add(c.skew) }))
	if err != nil {
		panic(err)
	}
	return svc
}
func (c *skewedCommands) CreateOrder(ctx context.Context, r *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	return c.skewed().CreateOrder(ctx, r)
}
func (c *skewedCommands) PlaceOrder(ctx context.Context, r *ordersv1.PlaceOrderRequest) (*ordersv1.PlaceOrderResponse, error) {
	return c.skewed().PlaceOrder(ctx, r)
}

// The payment timeout is counted from when the server stored the placing,
// by the clock of the kind that fires it. It was counted from the command
// node's wall clock (the event's occurred_at): a node two hours behind
// placed an order with a one hour payment timeout, the timer was set an
// hour in the past and fired at once, cancelling the order for
// non-payment within a second of its placing.
func TestPaymentTimeoutOfASlowClockNodeIsCountedFromTheLog(t *testing.T) {
	e := start(t)
	const timeout = time.Hour
	e.cmd = serveCommands(t, &skewedCommands{commandRef: commandRef{e: e}, skew: -2 * timeout})
	m, _ := e.run(t, timeout, time.Hour)
	id := e.place(t, "slow-clock")
	var placed time.Time // as the log (the NATS server) recorded it
	for _, r := range e.events(t, id) {
		if r.Type == "OrderPlaced" {
			placed = r.Time
		}
	}
	logSettled(t, e)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polling the list
		ds, _, err := m.List(t.Context(), id, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 1 {
			if d := ds[0]; d.Fired || d.Due.Before(placed.Add(timeout-time.Second)) {
				// What the customer sees: the order cancelled at once.
				recs := e.waitEvent(t, id, "OrderCancelled")
				t.Fatalf("order placed at %s (log time) with a %v payment timeout: deadline due %s, %v before the placing; cancelled by %q %v after it was placed",
					placed.Format(time.RFC3339), timeout, d.Due.Format(time.RFC3339), placed.Sub(d.Due).Round(time.Second),
					recs[len(recs)-1].Meta.Actor, recs[len(recs)-1].Time.Sub(placed).Round(100*time.Millisecond))
			}
			break
		}
		for _, r := range e.events(t, id) {
			if r.Type == "OrderCancelled" {
				t.Fatalf("order cancelled (%s) %v after it was placed, with a %v payment timeout", r.Meta.Actor, r.Time.Sub(placed).Round(time.Millisecond), timeout)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no deadline listed for %s: %v", id, ds)
		}
	}
	for _, r := range e.events(t, id) {
		if r.Type == "OrderCancelled" {
			t.Fatalf("order cancelled %v after it was placed, with a %v payment timeout", r.Time.Sub(placed).Round(time.Millisecond), timeout)
		}
	}
}
