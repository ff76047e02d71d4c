package command_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/order"
)

// lostLog is a command service on a NATS server whose log can go back
// (estest.PowerLoss): the events after save are lost, and other orders'
// events take their positions.
type lostLog struct {
	client     ordersv1.OrderCommandServiceClient
	url        string
	save, lose func()
}

// stepDown is the store's WithLeaderStepDown here: short, so that an
// answer below what the service saw before the loss is soon taken for the
// log's, not a former leader's.
const stepDown = 50 * time.Millisecond

func startLostLog(t *testing.T) *lostLog {
	t.Helper()
	power := estest.StartPowerLoss(t)
	store := power.Store(eventstore.WithLeaderStepDown(stepDown))
	return &lostLog{client: serve(t, newService(t, store)), url: power.URL,
		save: func() {
			power.Save()
			created(t, store, "other-after-save")
		},
		lose: func() {
			power.Lose()
			for _, id := range []string{"other-1", "other-2", "other-3", "other-4", "other-5"} {
				created(t, store, id)
			}
		}}
}

// freshStore is another process's store on the same server.
func (l *lostLog) freshStore(t *testing.T) *eventstore.Store {
	t.Helper()
	_, js := estest.ConnectURL(t, l.url)
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.FileStorage))
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// created creates order id, retried while the server recovers.
func created(t *testing.T, store *eventstore.Store, id string) {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	estest.AppendRetried(t, store, id, eventstore.EventData{Type: typ, Data: data, Meta: eventstore.Metadata{RequestID: id, OccurredAt: time.Now()}})
}

// retried makes a call while it answers UNAVAILABLE, up to 20 times, as a
// client retries.
func retried(t *testing.T, do func() error) error {
	t.Helper()
	var err error
	for range 20 {
		if err = do(); status.Code(err) != codes.Unavailable {
			return err
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
}

// After its log went back (a NATS server restarted without its last
// events), a command node answers what the log holds, as another node
// does: it refused the leader's shorter history as a former leader's, and
// every answer that needs it was UNAVAILABLE for the life of the process.
func TestCommandNodeAnswersAfterTheLogLostItsLastEvents(t *testing.T) {
	l := startLostLog(t)
	ctx := t.Context()
	if _, err := l.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-kept", CustomerId: "c", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	l.save()
	if _, err := l.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-kept", Sku: "A", Quantity: 1, UnitPrice: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-gone", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	l.lose() // o-kept without its item, o-gone never created

	other := serve(t, newService(t, l.freshStore(t)))
	place := &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: "o-kept"}
	add := &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-gone", Sku: "A", Quantity: 1, UnitPrice: 100}
	if _, err := other.PlaceOrder(ctx, place); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("another node: PlaceOrder of an order without lines: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := other.AddItem(ctx, add); status.Code(err) != codes.NotFound {
		t.Fatalf("another node: AddItem to an order the log lacks: %v, want NOT_FOUND", err)
	}
	err := retried(t, func() error { _, err := l.client.PlaceOrder(ctx, place); return err })
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("PlaceOrder of an order without lines, 20 tries: %v, want FAILED_PRECONDITION", err)
	}
	err = retried(t, func() error { _, err := l.client.AddItem(ctx, add); return err })
	if status.Code(err) != codes.NotFound {
		t.Errorf("AddItem to an order the log lacks, 20 tries: %v, want NOT_FOUND", err)
	}
}

// A retry of a request whose event the log lost since is not answered as
// recorded from the histories cached here: it was answered OK at a
// position the log holds another order's event at, a lost write reported
// done. It is recorded again.
func TestRetryAfterTheLogLostItsEventsIsNotAnsweredFromTheCache(t *testing.T) {
	l := startLostLog(t)
	ctx := t.Context()
	if _, err := l.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-retry", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	l.save()
	add := &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-retry", Sku: "A", Quantity: 1, UnitPrice: 100}
	if _, err := l.client.AddItem(ctx, add); err != nil {
		t.Fatal(err)
	}
	l.lose()
	var res *ordersv1.AddItemResponse
	err := retried(t, func() (err error) { res, err = l.client.AddItem(ctx, add); return err })
	if err != nil {
		t.Fatalf("retried AddItem: %v", err)
	}
	recs, err := l.freshStore(t).LoadLatest(ctx, "o-retry")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Meta.RequestID == add.GetRequestId() && r.Position == res.GetPosition() {
			return
		}
	}
	t.Fatalf("retried AddItem answered OK at revision %d, position %d; the log holds %d event(s) of the order, none of the request's there",
		res.GetRevision(), res.GetPosition(), len(recs))
}
