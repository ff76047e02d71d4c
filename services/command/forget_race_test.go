package command_test

import (
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

// racedErasure is a service on store whose keyring, on keys, has the
// order o-race of customer cust-r created while that customer's erasure
// runs: between the key's destruction and the erasure's event.
func racedErasure(t *testing.T, keys pii.Store, store command.Store) *command.Service {
	t.Helper()
	ring := &racingKeyring{Keyring: pii.NewKeyring(keys, testMaster(t))}
	svc, err := command.New(store, command.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	ring.during = func() {
		if _, err := svc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "race-1", OrderId: "o-race", CustomerId: "cust-r",
			Currency: "EUR", ShippingAddress: address()}); err != nil {
			t.Errorf("the order created during the erasure: %v", err)
		}
	}
	return svc
}

// racedAddress reads o-race's creation from store as any process would,
// with a keyring on keys without the service's cache: its shipping
// address and its position.
func racedAddress(t *testing.T, keys pii.Store, store command.Store) (*order.Address, uint64) {
	t.Helper()
	recs, err := store.Load(t.Context(), "o-race")
	if err != nil || len(recs) != 1 {
		t.Fatalf("the racing order: %d events, %v", len(recs), err)
	}
	e, err := convert.OpenEvent(t.Context(), pii.NewKeyring(keys, testMaster(t)), "o-race", recs[0].Type, recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	return e.(order.OrderCreated).Shipping, recs[0].Position
}

// An order created while its customer is being forgotten, whose event
// lands before the erasure's, is erased with the customer's other data. Its
// command found no key (the erasure had just destroyed it) and made a new
// one; before, that key outlived the erasure, and the order's address read
// in clear from the log for good, before the erasure's position.
func TestOrderRacingAnErasureIsErasedWithIt(t *testing.T) {
	ctx := t.Context()
	keys, store := pii.NewMemStore(), memstore.New()
	svc := racedErasure(t, keys, store)
	pos, err := svc.ForgetCustomer(ctx, "cust-r", "forget-r")
	if err != nil {
		t.Fatalf("ForgetCustomer: %v", err)
	}
	a, created := racedAddress(t, keys, store)
	if created > pos {
		t.Fatalf("the racing order was created at %d; want it before the erasure at %d", created, pos)
	}
	if a == nil || !a.Erased {
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
	keys := ctxKeys{pii.NewMemStore()}
	cctx, cancel := context.WithCancel(t.Context())
	store := &cancelAfterErasure{Store: memstore.New(), cancel: cancel}
	svc := racedErasure(t, keys, store)
	_, _ = svc.ForgetCustomer(cctx, "cust-r", "forget-r") // its answer may be its context's end
	if a, _ := racedAddress(t, keys, store); a == nil || !a.Erased {
		t.Fatalf("the racing order's address reads %+v; want it erased", a)
	}
}

// erasureAnswer is a store that appends the first erasure and answers it
// as answer says: ErrUnavailable, as a publish whose acknowledgement
// never came, or a duplicate, as the store's own retry of an unanswered
// publish that meets the first try does.
type erasureAnswer struct {
	command.Store
	answer   func(eventstore.AppendResult) (eventstore.AppendResult, error)
	answered bool
}

func (s *erasureAnswer) Append(ctx context.Context, orderID string, expected uint64, events []eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.Store.Append(ctx, orderID, expected, events)
	if orderID == order.CustomersSubjectID && err == nil && !s.answered {
		s.answered = true
		return s.answer(res)
	}
	return res, err
}

// The key a command made while its customer was being forgotten is
// destroyed whatever the erasure's append answered: an erasure whose
// answer was lost (and which the client's retry then finds done), or one
// answered as a duplicate (found on the next look), left it in place
// before, and the racing order's address read in clear from the log.
func TestRacingKeyIsDestroyedWhateverTheErasureWasAnswered(t *testing.T) {
	for name, store := range map[string]command.Store{
		"lost answer": &erasureAnswer{Store: memstore.New(), answer: func(eventstore.AppendResult) (eventstore.AppendResult, error) {
			return eventstore.AppendResult{}, eventstore.ErrUnavailable
		}},
		"duplicate": &erasureAnswer{Store: memstore.New(), answer: func(res eventstore.AppendResult) (eventstore.AppendResult, error) {
			res.Duplicate = true
			return res, nil
		}},
	} {
		t.Run(name, func(t *testing.T) {
			keys := pii.NewMemStore()
			svc := racedErasure(t, keys, store)
			pos, err := svc.ForgetCustomer(t.Context(), "cust-r", "forget-r")
			if err != nil {
				// The client retries an answer that never came, and finds
				// the erasure done.
				if pos, err = svc.ForgetCustomer(t.Context(), "cust-r", "forget-r"); err != nil {
					t.Fatalf("retried ForgetCustomer: %v", err)
				}
			}
			a, created := racedAddress(t, keys, store)
			if created > pos {
				t.Fatalf("the racing order was created at %d; want it before the erasure at %d", created, pos)
			}
			if a == nil || !a.Erased {
				t.Fatalf("the racing order's address reads %+v after the erasure at %d; want it erased", a, pos)
			}
		})
	}
}
