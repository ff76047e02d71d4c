package query_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Events that decode but make no sense for their order's state are
// dead-lettered, counted and skipped; nothing bogus is served, later valid
// events still apply, and a rebuild treats them the same way.
func TestInapplicableEventsAreDeadLettered(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	a, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "dl-a", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 2, UnitPrice: 300}}})
	if err != nil {
		t.Fatal(err)
	}
	aID := a.GetOrder().GetOrderId()
	type bogus struct {
		pos     uint64
		orderID string
		typ     string
		reason  string
	}
	var want []bogus
	bad := func(orderID string, ev order.Event, reason string) {
		want = append(want, bogus{publishEvent(t, e, orderID, ev), orderID, ev.EventType(), reason})
	}
	// An item for an order nobody created, then the order's real creation
	// and an item: the history from the creation on applies.
	bad("dl-ghost", order.ItemAdded{SKU: "X", Quantity: 1, UnitPrice: 999}, "ItemAdded before the order was created")
	publishEvent(t, e, "dl-ghost", order.OrderCreated{OrderID: "dl-ghost", CustomerID: "dl-g", Currency: "USD"})
	publishEvent(t, e, "dl-ghost", order.ItemAdded{SKU: "Y", Quantity: 3, UnitPrice: 10})
	// A second creation of an existing order, under another customer.
	bad(aID, order.OrderCreated{OrderID: aID, CustomerID: "dl-intruder", Currency: "USD"}, "already exists")
	// A creation whose payload names another order than its subject.
	bad("dl-subject", order.OrderCreated{OrderID: "dl-payload", CustomerID: "dl-m", Currency: "EUR"}, `payload order id "dl-payload" differs`)
	// Which leaves dl-subject uncreated: its payment is refused too.
	bad("dl-subject", order.PaymentAuthorized{PaymentRef: "p", Amount: 500}, "PaymentAuthorized before the order was created")
	// Creations without customer or currency.
	bad("dl-nocust", order.OrderCreated{OrderID: "dl-nocust", Currency: "EUR"}, "without a customer")
	bad("dl-nocur", order.OrderCreated{OrderID: "dl-nocur", CustomerID: "dl-n"}, "without a currency")
	// Later valid commands on the existing order still apply.
	last, err := e.cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: aID, Sku: "B", Quantity: 1, UnitPrice: 50})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.runner.WaitForCommitted(ctx, last.GetPosition()); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, what string) {
		t.Helper()
		for _, id := range []string{"dl-subject", "dl-payload", "dl-nocust", "dl-nocur"} {
			if g, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: id}); status.Code(err) != codes.NotFound {
				t.Fatalf("%s: order %s served from dead-lettered events: %v %v", what, id, g, err)
			}
		}
		exp := expectFromLog(t, e, last.GetPosition())
		if len(exp.skipped) != len(want) {
			t.Fatalf("the log fold skips %v, the test published %d bogus events", exp.skipped, len(want))
		}
		checkServed(t, e, exp, "dl-intruder", "dl-m", "dl-n")
		g, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: aID})
		if err != nil {
			t.Fatal(err)
		}
		if o := g.GetOrder(); o.GetCustomerId() != "dl-a" || o.GetCurrency() != "EUR" || len(o.GetLines()) != 2 || o.GetTotal() != 650 {
			t.Fatalf("%s: order %s altered by a second creation: %v", what, aID, o)
		}
		dl, err := e.runner.ReadModel().DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(dl) != len(want) {
			t.Fatalf("%s: dead letters %+v, want %d", what, dl, len(want))
		}
		for i, w := range want {
			d := dl[i]
			if d.Position != w.pos || d.OrderID != w.orderID || d.Type != w.typ || !strings.Contains(d.Reason, w.reason) {
				t.Fatalf("%s: dead letter %+v, want %+v", what, d, w)
			}
		}
		st, err := e.admin.GetProjectionStatus(ctx, &ordersv1.GetProjectionStatusRequest{})
		if err != nil || st.GetDeadLettered() != uint64(len(want)) {
			t.Fatalf("%s: status %v %v", what, st, err)
		}
	}
	check(t, "live")
	if n := e.runner.DeadLettered(); n != uint64(len(want)) {
		t.Fatalf("runner counted %d dead letters, want %d", n, len(want))
	}
	if _, err := rebuildRPC(ctx, e); err != nil {
		t.Fatal(err)
	}
	check(t, "rebuilt")

	// A restarted runner on the rebuilt files keeps them and goes on.
	e.stop()
	e.startRunner(t)
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "dl-after", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(), Consistency: consistency(c.GetPosition())}); err != nil {
		t.Fatal(err)
	}
	if dl, err := e.runner.ReadModel().DeadLetters(ctx); err != nil || len(dl) != len(want) {
		t.Fatalf("dead letters after restart: %+v %v", dl, err)
	}
}

// The runner is ready at start-up even when the log head's own sequence
// will never be delivered to it: the message was deleted, or it is on a
// subject outside the log's.
func TestReadyWhenHeadIsNeverDelivered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		append func(t *testing.T, e *env)
	}{
		{"head deleted", func(t *testing.T, e *env) {
			seq := publishEvent(t, e, "ready-deleted", order.OrderCreated{OrderID: "ready-deleted", CustomerID: "r", Currency: "EUR"})
			s, err := e.js.Stream(t.Context(), e.nstore.StreamName())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteMsg(t.Context(), seq); err != nil {
				t.Fatal(err)
			}
		}},
		{"head on another subject", func(t *testing.T, e *env) {
			s, err := e.js.Stream(t.Context(), e.nstore.StreamName())
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			cfg.Subjects = append(cfg.Subjects, "ready-other.>")
			if _, err := e.js.UpdateStream(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			if _, err := e.js.PublishMsg(t.Context(), &nats.Msg{Subject: "ready-other.x", Data: []byte("not an event")}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startNATS(t, []eventstore.Option{eventstore.WithMutableStream()}, 0) // to delete the head
			ctx := t.Context()
			c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "ready", Currency: "EUR"})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.runner.WaitForCommitted(ctx, c.GetPosition()); err != nil {
				t.Fatal(err)
			}
			e.stop()
			tc.append(t, e)
			head, err := e.store.Head(ctx)
			if err != nil || head <= c.GetPosition() {
				t.Fatalf("head %d (%v), want beyond %d", head, err, c.GetPosition())
			}
			e.startRunner(t, projections.WithBatch(10, time.Millisecond))
			// Not a timing assertion: the bound only turns a hang into a
			// failure; readiness needs no new event to arrive.
			select {
			case <-e.runner.Ready():
			case <-time.After(30 * time.Second):
				t.Fatalf("runner at %d not ready with head %d", e.runner.Position(), head)
			}
		})
	}
}
