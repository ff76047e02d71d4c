package deadlines_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/services/deadlines"
)

// failFirstSchedule is the DEADLINES stream whose first Schedule under
// prefix fails, after running before (which moves the order on): the
// follower Naks the event with a delay and handles the next ones first.
type failFirstSchedule struct {
	*schedule.Stream
	prefix string
	before func(ctx context.Context, id string)
	failed atomic.Bool
}

func (w *failFirstSchedule) Schedule(ctx context.Context, subject, target string, at time.Time, data []byte, id string) error {
	if oid, ok := strings.CutPrefix(subject, w.prefix); ok && w.failed.CompareAndSwap(false, true) {
		w.before(ctx, oid)
		return errors.New("injected: schedule lost")
	}
	return w.Stream.Schedule(ctx, subject, target, at, data, id)
}

// logSettled waits until the log follower has acknowledged every event.
func logSettled(t *testing.T, e *env) {
	t.Helper()
	consumerReaches(t, e, e.store.Load().StreamName(), deadlines.LogConsumer, "the log follower never settled", func(info *jetstream.ConsumerInfo) bool {
		return info.Delivered.Consumer > 0 && info.NumAckPending == 0 && info.NumPending == 0 && info.NumRedelivered == 0
	})
}

// logDelivered waits until the log follower was handed every event of the
// log (acknowledged or not).
func logDelivered(t *testing.T, e *env) {
	t.Helper()
	consumerReaches(t, e, e.store.Load().StreamName(), deadlines.LogConsumer, "the log follower was never handed every event", func(info *jetstream.ConsumerInfo) bool {
		return info.NumPending == 0
	})
}

// consumerReaches polls the consumer name of stream until its info
// satisfies ok, and fails t with failure after 30 s.
func consumerReaches(t *testing.T, e *env, stream, name, failure string, ok func(*jetstream.ConsumerInfo) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := e.js.Consumer(t.Context(), stream, name); err == nil {
			if info, err := c.Info(t.Context()); err == nil && ok(info) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal(failure)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An OrderPlaced whose schedule failed once is retried after the order's
// later events were handled: the payment timeout is not scheduled for an
// order already paid (or cancelled). It was, and stayed listed as pending.
func TestRetriedPlacementSchedulesNoTimeoutForAPaidOrder(t *testing.T) {
	for _, move := range []string{"paid", "cancelled"} {
		t.Run(move, func(t *testing.T) {
			e := start(t)
			timers := &failFirstSchedule{Stream: e.timers(t), prefix: deadlines.SubjectRoot + ".schedule.payment_timeout."}
			timers.before = func(ctx context.Context, id string) {
				if move == "paid" {
					// On the manager's goroutine: Errorf, not Fatal.
					if err := e.recordPayment(ctx, id); err != nil {
						t.Errorf("pay: %v", err)
					}
					return
				}
				if _, err := e.cmd.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: "redelivered-cancel-" + id, OrderId: id, Reason: "changed my mind"}); err != nil {
					t.Errorf("cancel: %v", err)
				}
			}
			m, _ := e.runTimers(t, timers, time.Hour, time.Hour)
			id := e.place(t, "redelivered-"+move)
			deadline := time.Now().Add(30 * time.Second)
			for !timers.failed.Load() {
				if time.Now().After(deadline) {
					t.Fatal("the placement's schedule was never attempted")
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The event Naked with a delay counts as pending until it is
			// handled again and acknowledged.
			logSettled(t, e)
			// No payment timeout: a paid order has its shipping SLA
			// alone, a cancelled one nothing.
			want := map[string][]string{"paid": {"shipping_sla"}, "cancelled": nil}[move]
			listed(t, m, id, want...)
		})
	}
}

// blockPlacement is the DEADLINES stream of a manager that is stopped
// while it schedules a payment timeout: the call lasts until the handler's
// context ends.
type blockPlacement struct {
	*schedule.Stream
	entered chan string
	once    atomic.Bool
}

func (w *blockPlacement) Schedule(ctx context.Context, subject, target string, at time.Time, data []byte, id string) error {
	if oid, ok := strings.CutPrefix(subject, deadlines.SubjectRoot+".schedule.payment_timeout."); ok && w.once.CompareAndSwap(false, true) {
		w.entered <- oid
		<-ctx.Done()
		return ctx.Err()
	}
	return w.Stream.Schedule(ctx, subject, target, at, data, id)
}

// The pinned log consumer moves to a standby when the manager holding it
// stops (a rolling restart): the event it was handling is handed back with
// a delay, the later ones it held at once, and the standby handles them out
// of order: the payment timeout of an order paid meanwhile is not
// scheduled after its payment, as it was.
func TestHandOverSchedulesNoTimeoutAfterPayment(t *testing.T) {
	e := start(t)
	blocked := &blockPlacement{Stream: e.timers(t), entered: make(chan string, 1)}
	_, stop1 := e.runTimers(t, blocked, time.Hour, time.Hour)
	id := e.place(t, "redelivered-handover")
	select {
	case <-blocked.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first manager never scheduled the placement")
	}
	e.pay(t, id)
	logDelivered(t, e) // the payment is in the first manager's buffer
	m2, _ := e.run(t, time.Hour, time.Hour)
	stop1()
	// What the first manager held is pending until the standby, pinned
	// once the first one's pin lapses, handles it.
	logSettled(t, e)
	// No payment timeout; the paid order's shipping SLA.
	listed(t, m2, id, "shipping_sla")
}
