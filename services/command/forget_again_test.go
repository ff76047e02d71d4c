package command_test

import (
	"context"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/command"
)

// hookedKeyring runs before ahead of its nth Forget and after once it
// succeeded.
type hookedKeyring struct {
	*pii.Keyring
	mu            sync.Mutex
	n             int
	before, after func(n int)
}

func (k *hookedKeyring) Forget(ctx context.Context, customerID string) error {
	k.mu.Lock()
	k.n++
	n := k.n
	k.mu.Unlock()
	k.before(n)
	err := k.Keyring.Forget(ctx, customerID)
	if err == nil {
		k.after(n)
	}
	return err
}

// heldOrder holds the append of one order until open is closed, telling
// arrived as it reaches it.
type heldOrder struct {
	command.Store
	id            string
	arrived, open chan struct{}
	once          sync.Once
}

func (s *heldOrder) Append(ctx context.Context, id string, rev uint64, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	if id == s.id {
		s.once.Do(func() { close(s.arrived) })
		<-s.open
	}
	return s.Store.Append(ctx, id, rev, evs)
}

// erasureTold closes done once the customers' subject takes an event.
type erasureTold struct {
	command.Store
	done chan struct{}
	once sync.Once
}

func (s *erasureTold) Append(ctx context.Context, id string, rev uint64, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.Store.Append(ctx, id, rev, evs)
	if id == order.CustomersSubjectID && err == nil {
		s.once.Do(func() { close(s.done) })
	}
	return res, err
}

// An order created on another node while its customer is being forgotten
// (after the key's destruction, with a key of its own) whose event lands
// after the erasure's, is erased in every read model, also one that
// applied it, in the clear, before the erasure destroyed that key too:
// the erasure is then recorded a second time. Before, that read model
// kept the address for good, where the log, the audit and a rebuild show
// it erased.
func TestReadModelErasesAnOrderSealedWhileItsCustomerWasForgotten(t *testing.T) {
	ctx := t.Context()
	keys, events := pii.NewMemStore(), memstore.New()
	d, err := projections.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	runner, err := projections.NewRunner(events, d, projections.WithKeyring(pii.NewKeyring(keys, testMaster(t))))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { defer close(ended); _ = runner.Run(rctx) }()
	t.Cleanup(func() { stop(); <-ended })

	told := make(chan struct{})
	held := &heldOrder{Store: events, id: "o-race", arrived: make(chan struct{}), open: told}
	other, err := command.New(held, command.WithKeyring(pii.NewKeyring(keys, testMaster(t))))
	if err != nil {
		t.Fatal(err)
	}
	ring := &hookedKeyring{Keyring: pii.NewKeyring(keys, testMaster(t))}
	forgetter, err := command.New(&erasureTold{Store: events, done: told}, command.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	created := make(chan uint64, 1)
	ring.after = func(n int) {
		if n != 1 {
			return
		}
		// The other node's order, after the key's destruction: it makes
		// a key, seals, and appends once the erasure is recorded.
		go func() {
			res, err := other.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "race-1", OrderId: "o-race", CustomerId: "cust-r",
				Currency: "EUR", ShippingAddress: address()})
			if err != nil {
				t.Errorf("the order created during the erasure: %v", err)
			}
			created <- res.GetPosition()
		}()
		<-held.arrived
	}
	ring.before = func(n int) {
		if n != 2 {
			return
		}
		// The read model applies that order before the erasure destroys
		// its key.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := runner.WaitForCommitted(wctx, <-created); err != nil {
			t.Errorf("the read model did not apply the order: %v", err)
		}
	}
	forgot, err := forgetter.ForgetCustomer(ctx, "cust-r", "forget-r")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := events.LoadLatest(ctx, order.CustomersSubjectID)
	if err != nil || len(recs) == 0 {
		t.Fatalf("the erasures: %v, %v", recs, err)
	}
	if o, _ := events.Load(ctx, "o-race"); len(o) != 1 || o[0].Position < forgot {
		t.Fatalf("the order: %v; want it after the erasure at %d", o, forgot)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := runner.WaitForCommitted(wctx, recs[len(recs)-1].Position); err != nil {
		t.Fatal(err)
	}
	o, _, err := runner.ReadModel().GetOrder(ctx, "o-race")
	if err != nil {
		t.Fatal(err)
	}
	if a := o.State.Shipping; a == nil || !a.Erased {
		t.Fatalf("the read model's order after ForgetCustomer returned: %+v; want its address erased", a)
	}
}
