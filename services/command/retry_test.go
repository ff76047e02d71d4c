package command_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A retry whose append meets its original in the store is answered with
// the original, even when that append was its last attempt: the turn that
// reads the original is not a conflict's and spends none. A CreateOrder
// without an order id always meets it so (its first turn skips the load);
// another command does when the node's cached history predates the
// original, written through another node.
func TestRetryMeetingItsOriginalInTheStoreSpendsNoAttempt(t *testing.T) {
	ctx := t.Context()
	t.Run("CreateOrder without an order id", func(t *testing.T) {
		svc := newService(t, memstore.New(), command.WithMaxAttempts(1))
		req := &ordersv1.CreateOrderRequest{RequestId: "retry-create", CustomerId: "c", Currency: "EUR"}
		first, err := svc.CreateOrder(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := svc.CreateOrder(ctx, req)
		if err != nil || !proto.Equal(first, again) {
			t.Fatalf("retry = %v, %v; want the original %v", again, err, first)
		}
	})
	t.Run("AddItem on a node whose history is stale", func(t *testing.T) {
		store := memstore.New()
		a := newService(t, store, command.WithMaxAttempts(1))
		b := newService(t, store, command.WithMaxAttempts(1))
		if _, err := a.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "retry-c", OrderId: "retry-o", CustomerId: "c", Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
		add := &ordersv1.AddItemRequest{RequestId: "retry-add", OrderId: "retry-o", Sku: "A", Quantity: 1, UnitPrice: 1}
		first, err := b.AddItem(ctx, add) // a still holds the order as created
		if err != nil {
			t.Fatal(err)
		}
		again, err := a.AddItem(ctx, add)
		if err != nil || !proto.Equal(first, again) {
			t.Fatalf("retry through the other node = %v, %v; want the original %v", again, err, first)
		}
	})
}

// A ForgetCustomer under a request id an order's command already used
// learns it only from its append, after the customer's key is destroyed:
// the erasure is recorded all the same, under an id of its own, and a retry
// answers it. Before, the call answered REQUEST_ID_REUSED, leaving the key
// destroyed and no CustomerForgotten for the read models to erase their
// plaintext by.
func TestForgetCustomerUnderAnOrdersRequestIDIsRecorded(t *testing.T) {
	ctx := t.Context()
	store := memstore.New()
	svc := newKeyedService(t, store)
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "shared", OrderId: "o-shared", CustomerId: "cust-x", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	pos, err := svc.ForgetCustomer(ctx, "cust-y", "shared")
	if err != nil {
		t.Fatalf("ForgetCustomer under an order's request id: %v", err)
	}
	recs, err := store.LoadLatest(ctx, order.CustomersSubjectID)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Position != pos || recs[0].Type != "CustomerForgotten" {
		t.Fatalf("the customers' subject holds %d events; want the erasure at %d", len(recs), pos)
	}
	if again, err := svc.ForgetCustomer(ctx, "cust-y", "shared"); err != nil || again != pos {
		t.Fatalf("retry = %d, %v; want %d", again, err, pos)
	}
	// A customer with personal data (and so a key) is not forgotten under
	// a request id taken for another: the reuse is refused.
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "w-create", OrderId: "o-w", CustomerId: "cust-w", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ForgetCustomer(ctx, "cust-w", "shared"); !rpcerr.IsRequestIDReused(status.Convert(err)) {
		t.Fatalf("the same request id for another customer = %v; want REQUEST_ID_REUSED", err)
	}
}

// forgetFirst is a store that lets another erasure land on the customers'
// subject just before the first append there: what a ForgetCustomer meets
// when another, under the same request id for another customer, looked at
// the subject at the same moment and appended first.
// With fail set, that first append then fails with it instead of storing
// anything, as if the stream had not answered.
type forgetFirst struct {
	command.Store
	before func() // run once, by the first append to the customers' subject
	fail   error
}

func (s *forgetFirst) Append(ctx context.Context, orderID string, rev uint64, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	if f := s.before; f != nil && orderID == order.CustomersSubjectID {
		s.before = nil // the erasure it runs appends through here too
		f()
		if s.fail != nil {
			return eventstore.AppendResult{}, s.fail
		}
	}
	return s.Store.Append(ctx, orderID, rev, evs)
}

// forgotten returns the customers the customers' subject records as
// forgotten, by position, and how many events it holds.
func forgotten(t *testing.T, store command.Store) (map[uint64]string, int) {
	t.Helper()
	recs, err := store.LoadLatest(t.Context(), order.CustomersSubjectID)
	if err != nil {
		t.Fatal(err)
	}
	forgot := map[uint64]string{}
	for _, r := range recs {
		e, err := convert.DecodeEvent(r.Type, r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if f, ok := e.(order.CustomerForgotten); ok {
			forgot[r.Position] = f.CustomerID
		}
	}
	return forgot, len(recs)
}

// Two ForgetCustomers under one request id for two customers, at once:
// both destroy their customer's key before appending, and the one whose
// append comes second has its erasure recorded under an id of its own.
// Before, it answered REQUEST_ID_REUSED with the key already gone and no
// CustomerForgotten recorded, so read models kept the customer's data.
func TestForgetCustomersRacingForOneRequestIDAreBothRecorded(t *testing.T) {
	ctx := t.Context()
	store := &forgetFirst{Store: memstore.New()}
	svc := newKeyedService(t, store)
	var first uint64
	store.before = func() {
		var err error
		if first, err = svc.ForgetCustomer(ctx, "cust-a", "same-rid"); err != nil {
			t.Errorf("the first erasure: %v", err)
		}
	}
	second, err := svc.ForgetCustomer(ctx, "cust-b", "same-rid")
	if err != nil {
		t.Fatalf("the erasure that lost the race for its request id = %v; want it recorded", err)
	}
	if forgot, n := forgotten(t, store); n != 2 || forgot[first] != "cust-a" || forgot[second] != "cust-b" {
		t.Fatalf("the customers' subject forgot %v (%d events); want cust-a at %d and cust-b at %d", forgot, n, first, second)
	}
	for cust, want := range map[string]uint64{"cust-a": first, "cust-b": second} {
		if again, err := svc.ForgetCustomer(ctx, cust, "same-rid"); err != nil || again != want {
			t.Errorf("retry for %s = %d, %v; want %d", cust, again, err, want)
		}
	}
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "c-create", OrderId: "o-c", CustomerId: "cust-c", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ForgetCustomer(ctx, "cust-c", "same-rid"); !rpcerr.IsRequestIDReused(status.Convert(err)) {
		t.Fatalf("the same request id for a third customer = %v; want REQUEST_ID_REUSED", err)
	}
}

// A ForgetCustomer that destroyed the key, lost its request id to another
// customer's erasure and then failed to append is retried by its client:
// the retry records the erasure under an id of its own. Before, the retry
// found the id taken and answered REQUEST_ID_REUSED, with the key gone and
// nothing recorded.
func TestForgetCustomerRetriedAfterLosingItsRequestIDIsRecorded(t *testing.T) {
	ctx := t.Context()
	store := &forgetFirst{Store: memstore.New(), fail: fmt.Errorf("%w: no answer", eventstore.ErrUnavailable)}
	svc := newKeyedService(t, store)
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "b-create", OrderId: "o-b", CustomerId: "cust-b", Currency: "EUR", ShippingAddress: address()}); err != nil {
		t.Fatal(err)
	}
	store.before = func() {
		if _, err := svc.ForgetCustomer(ctx, "cust-a", "same-rid"); err != nil {
			t.Errorf("the other erasure: %v", err)
		}
	}
	if _, err := svc.ForgetCustomer(ctx, "cust-b", "same-rid"); status.Code(err) != codes.Unavailable {
		t.Fatalf("the erasure whose append got no answer = %v; want UNAVAILABLE", err)
	}
	pos, err := svc.ForgetCustomer(ctx, "cust-b", "same-rid")
	if err != nil {
		t.Fatalf("its retry = %v; want the erasure recorded", err)
	}
	if forgot, n := forgotten(t, store); forgot[pos] != "cust-b" {
		t.Fatalf("no CustomerForgotten for cust-b at %d among %d events (%v)", pos, n, forgot)
	}
}

// A ForgetCustomer refuses the process managers' reserved request ids, as
// every method but the manager's does, and those erasures are recorded
// under when the client's was taken.
func TestForgetCustomerRefusesReservedRequestIDs(t *testing.T) {
	svc := newKeyedService(t, memstore.New())
	for _, rid := range []string{command.PaymentRequestPrefix + "3", command.RefundRequestPrefix + "3", command.DeadlineRequestPrefix + "payment:3", "forget:6:cust-y:shared"} {
		if _, err := svc.ForgetCustomer(t.Context(), "cust-r", rid); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ForgetCustomer under %q = %v; want INVALID_ARGUMENT", rid, err)
		}
	}
}

// A CreateOrder without an order id under an erasure's request id is not
// taken for a retry of a creation on the customers' subject: it is
// refused as a request id used for another order.
func TestCreateOrderUnderAnErasuresRequestID(t *testing.T) {
	ctx := t.Context()
	svc := newKeyedService(t, memstore.New())
	if _, err := svc.ForgetCustomer(ctx, "cust-gone", "shared-rid"); err != nil {
		t.Fatal(err)
	}
	res, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "shared-rid", CustomerId: "c", Currency: "EUR"})
	if res != nil {
		t.Fatalf("CreateOrder under an erasure's request id = order %q at %d", res.GetOrder().GetOrderId(), res.GetPosition())
	}
	reused(t, "CreateOrder under an erasure's request id", err)
}

// No order command takes the customers' subject for an order: it holds
// erasures, and a command on it under an erasure's request id was
// answered as that erasure's retry.
func TestOrderCommandsRefuseTheCustomersSubject(t *testing.T) {
	ctx := t.Context()
	svc := newKeyedService(t, memstore.New())
	if _, err := svc.ForgetCustomer(ctx, "cust-z", "forget-z"); err != nil {
		t.Fatal(err)
	}
	for _, rid := range []string{"forget-z", "new-request"} {
		_, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid, OrderId: order.CustomersSubjectID, Sku: "A", Quantity: 1, UnitPrice: 1})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("AddItem on %q with request id %s = %v; want INVALID_ARGUMENT", order.CustomersSubjectID, rid, err)
		}
	}
}

// conflictAfterStoring is a store whose next Append stores the events and
// then reports a conflict: what a retry meets when its first try's answer
// was lost and the store's settling read, from a replica that lags, after
// the duplicate window, did not find the original.
type conflictAfterStoring struct {
	command.Store
	armed bool
}

func (s *conflictAfterStoring) Append(ctx context.Context, orderID string, rev uint64, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.Store.Append(ctx, orderID, rev, evs)
	if s.armed && err == nil {
		s.armed = false
		return eventstore.AppendResult{}, fmt.Errorf("%w: the settling read did not find the original", eventstore.ErrConflict)
	}
	return res, err
}

// A command with an expected revision whose append is reported as a
// conflict looks once at the order as the leader has it before answering
// ABORTED: when its own events are there, it answers with them, as a retry
// does. Before, it answered ABORTED, "another change landed first", for a
// change that was its own and had landed.
func TestConflictThatIsTheRequestsOwnAppendIsAnswered(t *testing.T) {
	ctx := t.Context()
	store := &conflictAfterStoring{Store: memstore.New()}
	svc := newService(t, store)
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "own-c", OrderId: "own", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	one := uint64(1)
	store.armed = true
	res, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "own-add", OrderId: "own", Sku: "A", Quantity: 1, UnitPrice: 1, ExpectedRevision: &one})
	if err != nil || res.GetRevision() != 2 || len(res.GetOrder().GetLines()) != 1 {
		t.Fatalf("AddItem whose append landed but was reported a conflict = %v, %v; want revision 2 with the item", res, err)
	}
	// A real conflict is still ABORTED.
	_, err = svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "late-add", OrderId: "own", Sku: "B", Quantity: 1, UnitPrice: 1, ExpectedRevision: &one})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("AddItem at a stale expected revision = %v; want ABORTED", err)
	}
}
