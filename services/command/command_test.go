package command_test

import (
	"context"
	"fmt"
	"iter"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// store is what the tests use of an event store: what the command service
// needs, the log's head and reading it, and the subject of an order.
type store interface {
	command.Store
	Head(ctx context.Context) (uint64, error)
	Read(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error]
	Subject(orderID string) string
}

type env struct {
	client ordersv1.OrderCommandServiceClient
	svc    *command.Service
	store  store
	js     jetstream.JetStream // startNATS only
	nc     *nats.Conn          // startNATS only
}

// start runs a command service on a real loopback listener over the
// in-memory event store, which obeys the JetStream store's contract
// (estest.Run).
func start(t *testing.T) *env {
	t.Helper()
	store := memstore.New()
	svc := newService(t, store)
	return &env{client: serve(t, svc), svc: svc, store: store}
}

// startNATS is start over the JetStream store, configured by opts, on a
// memory-backed stream of a new embedded nats-server: for what only
// JetStream does, its outages and its duplicate window.
func startNATS(t *testing.T, opts ...eventstore.Option) *env {
	t.Helper()
	srv := estest.StartServer(t)
	nc, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js, append([]eventstore.Option{eventstore.WithStorage(jetstream.MemoryStorage)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, store)
	return &env{client: serve(t, svc), svc: svc, store: store, js: js, nc: nc}
}

// serve runs svc on a real loopback gRPC listener and returns a client.
func serve(t *testing.T, svc *command.Service) ordersv1.OrderCommandServiceClient {
	t.Helper()
	gs := grpc.NewServer()
	ordersv1.RegisterOrderCommandServiceServer(gs, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ordersv1.NewOrderCommandServiceClient(conn)
}

var reqSeq struct {
	sync.Mutex
	n int
}

func rid() string {
	reqSeq.Lock()
	defer reqSeq.Unlock()
	reqSeq.n++
	return fmt.Sprintf("req-%d-%d", time.Now().UnixNano(), reqSeq.n)
}

func address() *ordersv1.Address {
	return &ordersv1.Address{Name: "Ada", Line1: "1 Analytical Way", City: "London", PostalCode: "N1", Country: "GB"}
}

func createDraft(t *testing.T, e *env) *ordersv1.CreateOrderResponse {
	t.Helper()
	res, err := e.client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{
		RequestId: rid(), CustomerId: "cust-1", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "BOOK-1", Quantity: 2, UnitPrice: 1250}},
		ShippingAddress: address(),
	})
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return res
}

func TestLifecycle(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	created := createDraft(t, e)
	id := created.GetOrder().GetOrderId()
	if id == "" || created.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_DRAFT {
		t.Fatalf("created = %v", created.GetOrder())
	}
	if created.GetPosition() == 0 || created.GetRevision() != created.GetPosition() {
		t.Fatalf("revision %d position %d", created.GetRevision(), created.GetPosition())
	}
	last := created.GetPosition()
	step := func(name string, r interface {
		GetOrder() *ordersv1.Order
		GetPosition() uint64
	}, err error, want ordersv1.OrderStatus) *ordersv1.Order {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := r.GetOrder().GetStatus(); got != want {
			t.Fatalf("%s: status %v, want %v", name, got, want)
		}
		if r.GetPosition() <= last {
			t.Fatalf("%s: position %d not after %d", name, r.GetPosition(), last)
		}
		last = r.GetPosition()
		return r.GetOrder()
	}
	rev := func() *uint64 { v := last; return &v }

	add, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "PEN-9", Quantity: 3, UnitPrice: 199, ExpectedRevision: rev()})
	o := step("AddItem", add, err, ordersv1.OrderStatus_ORDER_STATUS_DRAFT)
	if o.GetTotal() != 2*1250+3*199 || len(o.GetLines()) != 2 {
		t.Fatalf("after AddItem: total %d lines %d", o.GetTotal(), len(o.GetLines()))
	}
	chg, err := e.client.ChangeItemQuantity(ctx, &ordersv1.ChangeItemQuantityRequest{RequestId: rid(), OrderId: id, Sku: "PEN-9", Quantity: 1})
	o = step("ChangeItemQuantity", chg, err, ordersv1.OrderStatus_ORDER_STATUS_DRAFT)
	if o.GetTotal() != 2*1250+199 {
		t.Fatalf("after ChangeItemQuantity: total %d", o.GetTotal())
	}
	rm, err := e.client.RemoveItem(ctx, &ordersv1.RemoveItemRequest{RequestId: rid(), OrderId: id, Sku: "PEN-9"})
	o = step("RemoveItem", rm, err, ordersv1.OrderStatus_ORDER_STATUS_DRAFT)
	if len(o.GetLines()) != 1 || o.GetTotal() != 2500 {
		t.Fatalf("after RemoveItem: %v", o)
	}
	addr := address()
	addr.City = "Cambridge"
	sa, err := e.client.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: rid(), OrderId: id, ShippingAddress: addr})
	o = step("SetShippingAddress", sa, err, ordersv1.OrderStatus_ORDER_STATUS_DRAFT)
	if o.GetShippingAddress().GetCity() != "Cambridge" {
		t.Fatalf("address not replaced: %v", o.GetShippingAddress())
	}
	pl, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id, ExpectedRevision: rev()})
	o = step("PlaceOrder", pl, err, ordersv1.OrderStatus_ORDER_STATUS_PLACED)
	if o.GetPlacedAt() == nil {
		t.Fatal("placed_at not set")
	}
	pay, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: id, Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "psp-123", Amount: 2500, Currency: "EUR"})
	o = step("RecordPayment", pay, err, ordersv1.OrderStatus_ORDER_STATUS_PAID)
	if o.GetPaymentRef() != "psp-123" || o.GetPaidAt() == nil {
		t.Fatalf("payment not recorded: %v", o)
	}
	sh, err := e.client.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: rid(), OrderId: id, Carrier: "DHL", TrackingNumber: "JD0001"})
	step("ShipOrder", sh, err, ordersv1.OrderStatus_ORDER_STATUS_SHIPPED)
	dl, err := e.client.ConfirmDelivery(ctx, &ordersv1.ConfirmDeliveryRequest{RequestId: rid(), OrderId: id})
	o = step("ConfirmDelivery", dl, err, ordersv1.OrderStatus_ORDER_STATUS_DELIVERED)
	if o.GetVersion() != 9 || o.GetRevision() != last {
		t.Fatalf("final version %d revision %d (want 9, %d)", o.GetVersion(), o.GetRevision(), last)
	}
	recs, err := e.store.Load(ctx, id)
	if err != nil || len(recs) != 9 {
		t.Fatalf("stored events: %d, %v", len(recs), err)
	}
}

func TestDeclinedThenCancelled(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id := createDraft(t, e).GetOrder().GetOrderId()
	if _, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id}); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: id, Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED, Reason: "insufficient funds"})
	if err != nil || res.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED {
		t.Fatalf("decline: %v %v", res.GetOrder(), err)
	}
	c, err := e.client.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: rid(), OrderId: id, Reason: "customer gave up"})
	if err != nil || c.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED || c.GetOrder().GetCancelledAt() == nil {
		t.Fatalf("cancel: %v %v", c.GetOrder(), err)
	}
}

func TestErrorCodes(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	draft := createDraft(t, e).GetOrder()
	placed := createDraft(t, e).GetOrder()
	if _, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: placed.GetOrderId()}); err != nil {
		t.Fatal(err)
	}
	paid := createDraft(t, e).GetOrder()
	if _, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: paid.GetOrderId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: paid.GetOrderId(), Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "p", Amount: paid.GetTotal()}); err != nil {
		t.Fatal(err)
	}
	stale := draft.GetRevision() - 1
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"missing request id", func() error {
			_, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c", Currency: "EUR"})
			return err
		}, codes.InvalidArgument},
		{"request id too long", func() error {
			_, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: strings.Repeat("x", 65), OrderId: draft.GetOrderId()})
			return err
		}, codes.InvalidArgument},
		{"bad currency", func() error {
			_, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "euro"})
			return err
		}, codes.InvalidArgument},
		{"quantity out of range", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Sku: "X", Quantity: 10001, UnitPrice: 1})
			return err
		}, codes.InvalidArgument},
		{"order id with subject wildcard", func() error {
			_, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "a.>", CustomerId: "c", Currency: "EUR"})
			return err
		}, codes.InvalidArgument},
		{"negative tax", func() error {
			_, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Tax: -1})
			return err
		}, codes.InvalidArgument},
		{"unknown payment outcome", func() error {
			_, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: placed.GetOrderId(), Outcome: ordersv1.PaymentOutcome(42)})
			return err
		}, codes.InvalidArgument},
		{"unknown order", func() error {
			_, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: "no-such-order"})
			return err
		}, codes.NotFound},
		{"unknown line", func() error {
			_, err := e.client.RemoveItem(ctx, &ordersv1.RemoveItemRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Sku: "NOPE"})
			return err
		}, codes.NotFound},
		{"order exists", func() error {
			_, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: draft.GetOrderId(), CustomerId: "c", Currency: "EUR"})
			return err
		}, codes.AlreadyExists},
		{"line exists", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Sku: "BOOK-1", Quantity: 1, UnitPrice: 1})
			return err
		}, codes.AlreadyExists},
		{"add item to placed order", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: placed.GetOrderId(), Sku: "Y", Quantity: 1, UnitPrice: 1})
			return err
		}, codes.FailedPrecondition},
		{"ship unpaid order", func() error {
			_, err := e.client.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: rid(), OrderId: placed.GetOrderId()})
			return err
		}, codes.FailedPrecondition},
		{"refund of an order that was not cancelled", func() error {
			_, err := e.client.RecordRefund(ctx, &ordersv1.RecordRefundRequest{RequestId: rid(), OrderId: paid.GetOrderId(), RefundRef: "rf", Amount: paid.GetTotal()})
			return err
		}, codes.FailedPrecondition},
		{"payment amount differs from total", func() error {
			_, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: placed.GetOrderId(), Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "p", Amount: 1})
			return err
		}, codes.InvalidArgument},
		{"stale expected revision", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Sku: "Z", Quantity: 1, UnitPrice: 1, ExpectedRevision: &stale})
			return err
		}, codes.Aborted},
		// Whatever the revision, a malformed command is malformed and a
		// missing order missing: reloading would not help. A refusal
		// that depends on the order's state is the stale revision's.
		{"malformed with a stale expected revision", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Sku: "Z", Quantity: -5, UnitPrice: 1, ExpectedRevision: &stale})
			return err
		}, codes.InvalidArgument},
		{"missing order with an expected revision", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "missing-order", Sku: "Z", Quantity: 1, UnitPrice: 1, ExpectedRevision: &stale})
			return err
		}, codes.NotFound},
		// A payment's amount is checked against the order's total: at
		// a stale revision that is a check against a state the client
		// has not seen (its amount was the total it saw). It was
		// refused as INVALID_ARGUMENT, as if malformed.
		{"payment amount differs from total, at a stale expected revision", func() error {
			_, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: placed.GetOrderId(), Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "p", Amount: 1, ExpectedRevision: &stale})
			return err
		}, codes.Aborted},
		{"line exists, at a stale expected revision", func() error {
			_, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: draft.GetOrderId(), Sku: "BOOK-1", Quantity: 1, UnitPrice: 1, ExpectedRevision: &stale})
			return err
		}, codes.Aborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

func TestIdempotentRetry(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	req := &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "cust-2", Currency: "USD"}
	first, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatalf("retried CreateOrder: %v", err)
	}
	if !proto.Equal(first, again) {
		t.Fatalf("retry answered differently:\n%v\n%v", first, again)
	}
	id := first.GetOrder().GetOrderId()

	add := &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "A", Quantity: 1, UnitPrice: 100}
	added, err := e.client.AddItem(ctx, add)
	if err != nil {
		t.Fatal(err)
	}
	// Move the order on, then repeat the first AddItem: the answer is the
	// original one, recognised from history, not a new line or an error.
	if _, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "B", Quantity: 1, UnitPrice: 100}); err != nil {
		t.Fatal(err)
	}
	repeated, err := e.client.AddItem(ctx, add)
	if err != nil {
		t.Fatalf("repeated AddItem: %v", err)
	}
	if !proto.Equal(added, repeated) {
		t.Fatalf("repeat answered differently:\n%v\n%v", added, repeated)
	}
	recs, err := e.store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d events, want 3", len(recs))
	}
	head, err := e.store.Head(ctx)
	if err != nil || head != 3 {
		t.Fatalf("log head %d (%v), want 3: the retried create must not have made a second order", head, err)
	}
}

func TestInternalErrorTextDoesNotLeak(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	// A payload this build cannot decode, written behind the service's back.
	corrupt := eventstore.EventData{Type: "OrderCreated", Data: []byte("\xff\xff secret internal detail")}
	if _, err := e.store.Append(ctx, "corrupt-1", 0, []eventstore.EventData{corrupt}); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: "corrupt-1"})
	st, _ := status.FromError(err)
	if st.Code() != codes.Internal {
		t.Fatalf("code %v, want Internal", st.Code())
	}
	if strings.Contains(st.Message(), "secret") || strings.Contains(st.Message(), "convert") || strings.Contains(st.Message(), "corrupt") {
		t.Fatalf("internal detail leaked: %q", st.Message())
	}
}

func TestUnavailableWhenNATSIsDown(t *testing.T) {
	e := startNATS(t)
	id := createDraft(t, e).GetOrder().GetOrderId()
	e.nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code %v, want Unavailable (%v)", status.Code(err), err)
	}
}

func TestActorAndCorrelationAreRecorded(t *testing.T) {
	e := start(t)
	ctx := metadata.AppendToOutgoingContext(t.Context(), command.MDActor, "alice", command.MDCorrelationID, "corr-7")
	res, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(t.Context(), res.GetOrder().GetOrderId())
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d events, %v", len(recs), err)
	}
	if m := recs[0].Meta; m.Actor != "alice" || m.CorrelationID != "corr-7" || m.OccurredAt.IsZero() {
		t.Fatalf("metadata %+v", m)
	}
	var anon *ordersv1.CreateOrderResponse
	if anon, err = e.client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	recs, _ = e.store.Load(t.Context(), anon.GetOrder().GetOrderId())
	if len(recs) != 1 || recs[0].Meta.Actor != "anonymous" {
		t.Fatalf("default actor: %+v", recs)
	}
}

func TestStoredEventsFormAHashChain(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id := createDraft(t, e).GetOrder().GetOrderId()
	for _, sku := range []string{"X", "Y"} {
		if _, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: sku, Quantity: 1, UnitPrice: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id}); err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(ctx, id)
	if err != nil || len(recs) != 4 {
		t.Fatalf("%d events, %v", len(recs), err)
	}
	if recs[0].Meta.PrevHash != chain.Zero {
		t.Fatalf("first event chains to %q", recs[0].Meta.PrevHash)
	}
	if b := chain.Verify(recs); b != nil {
		t.Fatalf("fresh history does not verify: %+v", b)
	}
}

// While NATS is unreachable (the connection reconnecting), commands fail
// fast with UNAVAILABLE, and they work again by themselves once it is back.
func TestCommandsFailFastDuringOutageAndResume(t *testing.T) {
	srv := estest.StartServer(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := eventstore.New(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, store)
	restart := estest.Stop(t, srv)
	_, err = svc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "outage-1", CustomerId: "c", Currency: "EUR"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("during the outage: %v, want Unavailable", err)
	}
	reconnected := make(chan struct{})
	nc.SetReconnectHandler(func(*nats.Conn) { close(reconnected) })
	restart()
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("no reconnect")
	}
	if _, err := svc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "outage-2", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatalf("after NATS came back: %v", err)
	}
}

// An order's revision counts its own events (1 after CreateOrder, one more
// per event), whatever other orders append to the log in between; it is
// what expected_revision takes. position stays the global log position.
func TestRevisionIsTheOrdersEventCount(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	a, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR", ShippingAddress: address()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	id := a.GetOrder().GetOrderId()
	if a.GetRevision() != 1 || a.GetOrder().GetRevision() != 1 || a.GetPosition() != 1 {
		t.Fatalf("created: revision %d, order revision %d, position %d; want 1 1 1", a.GetRevision(), a.GetOrder().GetRevision(), a.GetPosition())
	}
	one := uint64(1)
	added, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "A", Quantity: 1, UnitPrice: 5, ExpectedRevision: &one})
	if err != nil {
		t.Fatalf("AddItem at revision 1: %v", err)
	}
	if added.GetRevision() != 2 || added.GetOrder().GetRevision() != 2 || added.GetPosition() != 3 {
		t.Fatalf("added: revision %d, order revision %d, position %d; want 2 2 3", added.GetRevision(), added.GetOrder().GetRevision(), added.GetPosition())
	}
	stale := uint64(3) // the log position, not the revision
	_, err = e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id, ExpectedRevision: &stale})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("PlaceOrder at a wrong revision: %v, want ABORTED", err)
	}
	two := uint64(2)
	if p, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id, ExpectedRevision: &two}); err != nil || p.GetRevision() != 3 {
		t.Fatalf("PlaceOrder at revision 2: %v %v", p.GetRevision(), err)
	}
	recs, err := e.store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if r.Version != uint64(i)+1 {
			t.Fatalf("stored event %d has version %d", i, r.Version)
		}
	}
}

// A refused request records nothing, so the same request sent again once
// the order allows it is decided anew (README): a ShipOrder refused before
// the payment ships the order once it is paid, and is then answered with
// that original.
func TestRefusedRequestIsDecidedAnew(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	o := createDraft(t, e).GetOrder()
	ship := &ordersv1.ShipOrderRequest{RequestId: rid(), OrderId: o.GetOrderId(), Carrier: "DHL", TrackingNumber: "T-1"}
	if _, err := e.client.ShipOrder(ctx, ship); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("ShipOrder of a draft: %v, want FAILED_PRECONDITION", err)
	}
	placed, err := e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: o.GetOrderId()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: o.GetOrderId(),
		Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "psp-1", Amount: placed.GetOrder().GetGrandTotal()}); err != nil {
		t.Fatal(err)
	}
	first, err := e.client.ShipOrder(ctx, ship)
	if err != nil || first.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_SHIPPED {
		t.Fatalf("the same ShipOrder once the order is paid: %v, %v; want it shipped", first.GetOrder().GetStatus(), err)
	}
	again, err := e.client.ShipOrder(ctx, ship)
	if err != nil || again.GetRevision() != first.GetRevision() {
		t.Fatalf("sent again: revision %d, %v; want the original answer at %d", again.GetRevision(), err, first.GetRevision())
	}
}
