package command_test

import (
	"context"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/services/command"
)

// tick is a clock that moves a second each time it is read.
func tick() func() time.Time {
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
}

// A command that lost a race and was decided again on the new history is
// stamped when it was decided, not when its call came in: before, its
// event read as older than the one it lost to, and updated_at went back.
func TestRetriedCommandIsStampedAfterTheChangeItLostTo(t *testing.T) {
	store := memstore.New()
	rs := &racingStore{Store: store}
	svc := newService(t, rs, command.WithClock(tick()))
	ctx := t.Context()
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-clock", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	var winner *ordersv1.AddItemResponse
	rs.race = func() {
		var err error
		if winner, err = svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-clock", Sku: "B", Quantity: 1, UnitPrice: 1}); err != nil {
			t.Errorf("racing change: %v", err)
		}
	}
	loser, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-clock", Sku: "A", Quantity: 1, UnitPrice: 1})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.Load(ctx, "o-clock")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := recs[1].Meta.OccurredAt, recs[2].Meta.OccurredAt; b.Before(a) {
		t.Errorf("event v3, decided after v2 landed, occurred at %s, before v2 at %s", b.Format(time.TimeOnly), a.Format(time.TimeOnly))
	}
	if w, l := winner.GetOrder().GetUpdatedAt().AsTime(), loser.GetOrder().GetUpdatedAt().AsTime(); l.Before(w) {
		t.Errorf("updated_at went back: %s after the winner, %s after the retried command", w.Format(time.TimeOnly), l.Format(time.TimeOnly))
	}
}

// placingStore places the order (through place) before the leader's read
// that confirms a refusal.
type placingStore struct {
	*memstore.Store
	place func()
}

func (p *placingStore) LoadLatest(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	if f := p.place; f != nil {
		p.place = nil
		f()
	}
	return p.Store.LoadLatest(ctx, id)
}

// A payment first refused on a draft, then decided on the leader's history
// where the order was placed meanwhile, is not stamped before the
// placement.
func TestPaymentDecidedAfterPlacementIsStampedAfterIt(t *testing.T) {
	ps := &placingStore{Store: memstore.New()}
	svc := newService(t, ps, command.WithClock(tick()))
	ctx := t.Context()
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-paid", CustomerId: "c", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}}, ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	ps.place = func() {
		if _, err := svc.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: "o-paid"}); err != nil {
			t.Errorf("place: %v", err)
		}
	}
	paid, err := svc.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: "o-paid",
		Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "till-1", Amount: 100})
	if err != nil {
		t.Fatal(err)
	}
	if o := paid.GetOrder(); o.GetPaidAt().AsTime().Before(o.GetPlacedAt().AsTime()) {
		t.Errorf("paid_at %s is before placed_at %s", o.GetPaidAt().AsTime().Format(time.TimeOnly), o.GetPlacedAt().AsTime().Format(time.TimeOnly))
	}
}

// A node whose clock is behind the one that wrote an order's last event
// stamps its own no earlier than that event.
func TestEventIsNotStampedBeforeTheOneBeforeIt(t *testing.T) {
	store := memstore.New()
	ctx := t.Context()
	ahead := newService(t, store, command.WithClock(func() time.Time { return time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC) }))
	behind := newService(t, store, command.WithClock(func() time.Time { return time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) }))
	if _, err := ahead.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-skew", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	res, err := behind.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-skew", Sku: "A", Quantity: 1, UnitPrice: 1})
	if err != nil {
		t.Fatal(err)
	}
	if u, c := res.GetOrder().GetUpdatedAt().AsTime(), res.GetOrder().GetCreatedAt().AsTime(); u.Before(c) {
		t.Fatalf("updated_at %s before created_at %s", u.Format(time.TimeOnly), c.Format(time.TimeOnly))
	}
}
