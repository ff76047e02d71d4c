package deadlines_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/services/deadlines"
)

// While the command side refuses cancels, payment timeouts that fired wait
// (Naked, retried every second); a shipping SLA needs no command side and
// is still reported overdue. With 100 payment timeouts waiting (the firing
// consumer's MaxAckPending), the server delivers no other firing: no paid
// order is reported overdue until the command side is back.
func TestWaitingPaymentTimeoutsDoNotHideOverdueShipments(t *testing.T) {
	e := start(t)
	srv := &closedCancel{commandRef: commandRef{e: e}, refused: make(chan struct{})}
	e.cmd = serveCommands(t, srv)
	m, _ := e.run(t, time.Second, time.Second)
	const waiting = 100
	for i := range waiting {
		e.place(t, fmt.Sprintf("abandoned-%d", i))
	}
	consumerReaches(t, e, deadlines.StreamName, deadlines.FiredConsumer, "the payment timeouts never all fired", func(info *jetstream.ConsumerInfo) bool {
		return info.NumAckPending >= waiting
	})
	paid := e.place(t, "paid-not-shipped")
	e.pay(t, paid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) { // polling the list
		ds, _, err := m.List(t.Context(), paid, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Overdue {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s, paid with a 1 s shipping SLA, not reported overdue after 30 s while %d payment timeouts wait for the command side: %+v", paid, waiting, ds)
		}
	}
}
