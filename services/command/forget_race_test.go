package command_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/command"
)

// racingKeyring is a keyring whose first Forget, once the key is
// destroyed, runs during: a command for the same customer that reaches
// the keyring between the key's destruction and the erasure's event.
type racingKeyring struct {
	*pii.Keyring
	once   sync.Once
	during func()
}

func (k *racingKeyring) Forget(ctx context.Context, customerID string) error {
	err := k.Keyring.Forget(ctx, customerID)
	if err == nil {
		k.once.Do(k.during)
	}
	return err
}

// An order created while its customer is being forgotten, whose event
// lands before the erasure's, is erased with the customer's other data. Its
// command found no key (the erasure had just destroyed it) and made a new
// one; before, that key outlived the erasure, and the order's address read
// in clear from the log for good, before the erasure's position.
func TestOrderRacingAnErasureIsErasedWithIt(t *testing.T) {
	ctx := t.Context()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{9}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys := pii.NewMemStore()
	ring := &racingKeyring{Keyring: pii.NewKeyring(keys, master)}
	store := memstore.New()
	svc, err := command.New(store, command.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	var raced error
	ring.during = func() {
		_, raced = svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "race-1", OrderId: "o-race", CustomerId: "cust-r",
			Currency: "EUR", ShippingAddress: address()})
	}
	pos, err := svc.ForgetCustomer(ctx, "cust-r", "forget-r")
	if err != nil || raced != nil {
		t.Fatalf("ForgetCustomer: %v; the order created meanwhile: %v", err, raced)
	}
	recs, err := store.Load(ctx, "o-race")
	if err != nil || len(recs) != 1 || recs[0].Position > pos {
		t.Fatalf("the racing order: %d events, %v; want its creation before the erasure at %d", len(recs), err, pos)
	}
	// Read as any process would: a keyring without this one's cache.
	e, err := convert.OpenEvent(ctx, pii.NewKeyring(keys, master), "o-race", recs[0].Type, recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if a := e.(order.OrderCreated).Shipping; a == nil || !a.Erased {
		t.Fatalf("the racing order's address reads %+v after the erasure; want it erased", a)
	}
	// And so it does to this service, which made the order.
	got, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "race-2", OrderId: "o-race", Sku: "A", Quantity: 1, UnitPrice: 100})
	if err != nil || !got.GetOrder().GetShippingAddress().GetErased() {
		t.Fatalf("the racing order after the erasure: %v, %v; want its address erased", got.GetOrder().GetShippingAddress(), err)
	}
}

// ctxKeys is a key store that, as the JetStream one does, fails an erase
// whose context has ended.
type ctxKeys struct{ *pii.MemStore }

func (s ctxKeys) Erase(ctx context.Context, customerID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.MemStore.Erase(ctx, customerID)
}

// cancelAfterErasure is a store that ends the caller's context once an
// erasure's event is appended: a client giving up at that moment.
type cancelAfterErasure struct {
	command.Store
	cancel context.CancelFunc
}

func (s *cancelAfterErasure) Append(ctx context.Context, orderID string, expected uint64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.Store.Append(ctx, orderID, expected, events)
	if orderID == order.CustomersSubjectID {
		s.cancel()
	}
	return res, err
}

// The second destruction of the key does not end with the call: a client
// that gives up once the erasure's event is in still leaves no key for the
// order created meanwhile.
func TestRacingKeyIsDestroyedWhenTheCallerGivesUp(t *testing.T) {
	ctx := t.Context()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{9}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys := ctxKeys{pii.NewMemStore()}
	ring := &racingKeyring{Keyring: pii.NewKeyring(keys, master)}
	cctx, cancel := context.WithCancel(ctx)
	store := &cancelAfterErasure{Store: memstore.New(), cancel: cancel}
	svc, err := command.New(store, command.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	ring.during = func() {
		if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "race-1", OrderId: "o-race", CustomerId: "cust-r",
			Currency: "EUR", ShippingAddress: address()}); err != nil {
			t.Errorf("the order created meanwhile: %v", err)
		}
	}
	_, _ = svc.ForgetCustomer(cctx, "cust-r", "forget-r") // its answer may be its context's end
	recs, err := store.Load(ctx, "o-race")
	if err != nil || len(recs) != 1 {
		t.Fatalf("the racing order: %d events, %v", len(recs), err)
	}
	e, err := convert.OpenEvent(ctx, pii.NewKeyring(keys, master), "o-race", recs[0].Type, recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if a := e.(order.OrderCreated).Shipping; a == nil || !a.Erased {
		t.Fatalf("the racing order's address reads %+v; want it erased", a)
	}
}
