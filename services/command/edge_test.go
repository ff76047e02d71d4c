package command_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// racingStore lets another change land between a command's load and its
// append, exactly once.
type racingStore struct {
	*memstore.Store
	race func()
}

func (r *racingStore) Append(ctx context.Context, id string, rev uint64, ev []eventstore.EventData) (eventstore.AppendResult, error) {
	if f := r.race; f != nil {
		r.race = nil
		f()
	}
	return r.Store.Append(ctx, id, rev, ev)
}

// A client that sent an expected revision and lost the race to another
// change gets ABORTED, and the event store's own words stay on the server.
func TestLostRaceWithExpectedRevisionIsAborted(t *testing.T) {
	store := memstore.New()
	rs := &racingStore{Store: store}
	svc := newService(t, rs)
	c := serve(t, svc)
	ctx := t.Context()
	cr, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-race", CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	rev := cr.GetRevision()
	rs.race = func() {
		if _, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-race", Sku: "B", Quantity: 1, UnitPrice: 1}); err != nil {
			t.Errorf("racing change: %v", err)
		}
	}
	_, lost := c.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-race", Sku: "A", Quantity: 1, UnitPrice: 1, ExpectedRevision: &rev})
	if status.Code(lost) != codes.Aborted {
		t.Fatalf("lost race: %v, want ABORTED", lost)
	}
	if msg := strings.ToLower(status.Convert(lost).Message()); strings.Contains(msg, "nats") || strings.Contains(msg, "eventstore") {
		t.Fatalf("store internals reached the client: %q", msg)
	}
	recs, err := store.Load(ctx, "o-race")
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d events, %v: the losing command must not be applied", len(recs), err)
	}
	// It says where the order is, for the client to read it there: a
	// read model behind the racing change shows the revision it lost on.
	if r, p, ok := rpcerr.RevisionChanged(status.Convert(lost)); !ok || r != 2 || p != recs[1].Position {
		t.Fatalf("lost race: revision %d at position %d (%v), want 2 at %d", r, p, ok, recs[1].Position)
	}
	stale := uint64(1)
	_, err = c.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: "o-race", ExpectedRevision: &stale})
	if r, p, ok := rpcerr.RevisionChanged(status.Convert(err)); !ok || r != 2 || p != recs[1].Position {
		t.Fatalf("stale expected revision: %v; want ABORTED saying revision 2 at %d", err, recs[1].Position)
	}
}

// A CreateOrder without an order id whose request id another order already
// used is refused; it never answers with that other order.
func TestGeneratedCreateDoesNotFollowAForeignRequestID(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	a, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "order-of-a", CustomerId: "cust-a", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: "shared-1", OrderId: a.GetOrder().GetOrderId(), Sku: "SECRET", Quantity: 1, UnitPrice: 999}); err != nil {
		t.Fatal(err)
	}
	b, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "shared-1", CustomerId: "cust-b", Currency: "USD"})
	if b != nil {
		t.Fatalf("CreateOrder reusing another order's request id answered with order %v", b.GetOrder())
	}
	reused(t, "CreateOrder reusing another order's request id", err)
	// The genuine retry of a generated-id create still finds its order.
	first, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "gen-1", CustomerId: "cust-c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "gen-1", CustomerId: "cust-c", Currency: "EUR"})
	if err != nil || again.GetOrder().GetOrderId() != first.GetOrder().GetOrderId() {
		t.Fatalf("retry: %v %v, want order %s", again.GetOrder(), err, first.GetOrder().GetOrderId())
	}
}

// A CreateOrder without an order id that an older build served, under an
// id it generated (a UUIDv7), and that is retried within the server's
// duplicate window answers with that order, not a second one under the id
// derived from the request id.
func TestCreateByOlderBuildRetriedWithinDuplicateWindow(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	// The older build's create: the same request, under a generated id,
	// written as that build wrote it (no request fingerprint).
	const older = "0190b2a4-7c1e-7d3a-9b2f-4e5d6c7b8a90"
	req := &ordersv1.CreateOrderRequest{RequestId: "old-build-1", CustomerId: "c", Currency: "EUR"}
	createUnfingerprinted(t, e, older, "old-build-1")
	again, err := e.client.CreateOrder(ctx, req)
	if err != nil || again.GetOrder().GetOrderId() != older {
		t.Fatalf("retry: %v %v, want order %s", again.GetOrder(), err, older)
	}
	n := 0
	for _, err := range e.store.Read(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d events in the log, want the one OrderCreated", n)
	}
}

// Who and why headers with surrounding whitespace are recorded trimmed;
// values no header can carry are ignored; neither fails the command.
func TestHeaderValuesAreTrimmedNotFatal(t *testing.T) {
	e := start(t)
	ctx := metadata.AppendToOutgoingContext(t.Context(), command.MDActor, " bob ", command.MDCorrelationID, "corr-9 ", command.MDCausationID, "  cause")
	res, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(t.Context(), res.GetOrder().GetOrderId())
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d events, %v", len(recs), err)
	}
	if m := recs[0].Meta; m.Actor != "bob" || m.CorrelationID != "corr-9" || m.CausationID != "cause" {
		t.Fatalf("metadata %+v", m)
	}
}

// Who and why values with characters free text refuses (a bidi override
// that shows "alice\u202egnp.exe" as "alicexe.png", a line separator) are
// ignored as unfit to record, not written into the audit trail. grpc-go's
// clients send only printable ASCII, but its server takes what other
// HTTP/2 clients send, so the values arrive as the handler sees them here.
func TestUnfitHeaderValuesAreNotRecorded(t *testing.T) {
	store := memstore.New()
	svc := newService(t, store)
	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs(command.MDActor, "alice\u202egnp.exe",
		command.MDCorrelationID, "corr\u2028forged line", command.MDCausationID, "cause\u200b"))
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "unfit-1", OrderId: "o-unfit", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	recs, err := store.Load(t.Context(), "o-unfit")
	if err != nil || len(recs) != 1 {
		t.Fatalf("%d events, %v", len(recs), err)
	}
	if m := recs[0].Meta; m.Actor != "anonymous" || m.CorrelationID != "unfit-1" || m.CausationID != "" {
		t.Fatalf("recorded actor %q, correlation %q, causation %q; want anonymous, the request id and none", m.Actor, m.CorrelationID, m.CausationID)
	}
}

// A command without expected revision that loses the race to other writers
// is loaded and decided again, not answered ABORTED: here it loses three
// times in a row and then lands after the three changes that beat it.
func TestConflictsAreRetriedWithoutExpectedRevision(t *testing.T) {
	store := memstore.New()
	rs := &racingStore{Store: store}
	svc := newService(t, rs)
	ctx := t.Context()
	if _, err := svc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), OrderId: "o-retry", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	const races = 3
	n := 0
	var race func()
	race = func() {
		n++
		if _, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-retry", Sku: fmt.Sprintf("R%d", n), Quantity: 1, UnitPrice: 1}); err != nil {
			t.Errorf("racing change %d: %v", n, err)
		}
		if n < races {
			rs.race = race // beat the command's next attempt too
		}
	}
	rs.race = race
	res, err := svc.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-retry", Sku: "A", Quantity: 2, UnitPrice: 1})
	if err != nil {
		t.Fatalf("AddItem after losing %d races: %v, want it retried to success", races, err)
	}
	if got := svc.ConflictRetries(); got != races {
		t.Fatalf("%d conflicts retried, want %d", got, races)
	}
	recs, err := store.Load(ctx, "o-retry")
	if err != nil {
		t.Fatal(err)
	}
	var skus []string
	for _, l := range res.GetOrder().GetLines() {
		skus = append(skus, fmt.Sprintf("%s×%d", l.GetSku(), l.GetQuantity()))
	}
	if len(recs) != 5 || res.GetPosition() != recs[4].Position || strings.Join(skus, " ") != "R1×1 R2×1 R3×1 A×2" {
		t.Fatalf("%d events, answer at %d with lines %v: want the command applied once, after the three racing changes", len(recs), res.GetPosition(), skus)
	}
}

// Request ids follow the identifier rule of order ids and SKUs: printable
// ASCII without spaces. Characters that do not print as themselves (C0 and
// C1 controls, zero-width and other format characters) and non-ASCII
// look-alikes are refused.
func TestRequestIDMustBePrintableASCII(t *testing.T) {
	e := start(t)
	for _, id := range []string{"a b", "a\tb", "a\x7f", "a\u0085b", "\u009b1", "a\u200bb", "\u200d", "\ufeffx", "a\u00adb", "a\u202eb", "caf\u00e9", "\u0430bc", strings.Repeat("x", 65)} {
		_, err := e.client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: id, CustomerId: "c", Currency: "EUR"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("request id %+q: %v, want INVALID_ARGUMENT", id, err)
		}
	}
	if _, err := e.client.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "Req_1:~!#" + strings.Repeat("x", 55), CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatalf("64 printable ASCII characters: %v", err)
	}
}

// A CreateOrder without order id retried after the server's duplicate
// window has forgotten its message id answers with the order it created,
// which holds its only OrderCreated: the order id follows from the request
// id, so the retry meets the order and its history.
func TestCreateWithoutOrderIDRetriedAfterDuplicateWindow(t *testing.T) {
	// Long enough for the checks "within the window" to run within it on
	// a loaded machine (100 ms, the least nats-server takes, passed
	// during them under a parallel load), short enough to wait out.
	const window = 2 * time.Second
	e := startNATS(t, eventstore.WithDuplicateWindow(window))
	ctx := t.Context()
	req := &ordersv1.CreateOrderRequest{RequestId: "late-retry-1", CustomerId: "c", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 5}}}
	first, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	estest.WaitDuplicateWindow(t, e.js, e.store.Subject("window-probe"), window)
	again, err := e.client.CreateOrder(ctx, req)
	if err != nil {
		t.Fatalf("retry after the duplicate window: %v", err)
	}
	if !proto.Equal(first, again) {
		t.Fatalf("retry answered differently:\n%v\n%v", first, again)
	}
	created := 0
	for rec, err := range e.store.Read(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.OrderID != "window-probe" {
			created++
			if rec.OrderID != first.GetOrder().GetOrderId() {
				t.Errorf("event of another order %s at %d", rec.OrderID, rec.Position)
			}
		}
	}
	if created != 1 {
		t.Fatalf("%d order events in the log, want the one OrderCreated", created)
	}
	// The same request id names the same order whatever the body, but a
	// different create under it is another request: refused.
	other := proto.Clone(req).(*ordersv1.CreateOrderRequest)
	other.CustomerId = "someone-else"
	_, err = e.client.CreateOrder(ctx, other)
	reused(t, "a different create under the request id", err)
}

// reused checks that err refuses a request id reused for another request:
// ALREADY_EXISTS with reason REQUEST_ID_REUSED and request_id named.
func reused(t *testing.T, what string, err error) {
	t.Helper()
	st := status.Convert(err)
	var reason, field string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			if v := d.GetFieldViolations(); len(v) > 0 {
				field = v[0].GetField()
			}
		}
	}
	if st.Code() != codes.AlreadyExists || reason != "REQUEST_ID_REUSED" || field != "request_id" {
		t.Errorf("%s: %v (reason %q, field %q), want ALREADY_EXISTS, REQUEST_ID_REUSED on request_id", what, err, reason, field)
	}
}

// A request id names one request: a retry with the same fields gets the
// original answer, another request under the same id is refused, within
// the server's duplicate window and after it.
func TestRequestIDReusedForAnotherRequest(t *testing.T) {
	const window = 100 * time.Millisecond // the smallest duplicate window nats-server accepts
	e := startNATS(t, eventstore.WithDuplicateWindow(window))
	ctx := t.Context()
	create := &ordersv1.CreateOrderRequest{RequestId: "fp-create", CustomerId: "c", Currency: "EUR"}
	created, err := e.client.CreateOrder(ctx, create)
	if err != nil {
		t.Fatal(err)
	}
	id := created.GetOrder().GetOrderId()
	add := &ordersv1.AddItemRequest{RequestId: "fp-add", OrderId: id, Sku: "A", Quantity: 1, UnitPrice: 100}
	added, err := e.client.AddItem(ctx, add)
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		again, err := e.client.AddItem(ctx, add)
		if err != nil || !proto.Equal(added, again) {
			t.Fatalf("%s: retry answered %v, %v; want the original %v", when, again, err, added)
		}
		spelled := proto.CloneOf(create) // the same request, naming the order its id derives
		spelled.OrderId = id
		for _, c := range []*ordersv1.CreateOrderRequest{create, spelled} {
			if again, err := e.client.CreateOrder(ctx, c); err != nil || !proto.Equal(created, again) {
				t.Fatalf("%s: retried create answered %v, %v", when, again, err)
			}
		}
		other := proto.Clone(add).(*ordersv1.AddItemRequest)
		other.Quantity = 2
		_, err = e.client.AddItem(ctx, other)
		reused(t, when+": same id, another quantity", err)
		_, err = e.client.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "fp-add", OrderId: id})
		reused(t, when+": same id, another method", err)
		_, err = e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "fp-create", CustomerId: "d", Currency: "EUR"})
		reused(t, when+": same id, another customer", err)
	}
	check("within the duplicate window")
	// Only the window knows a request id another order used.
	_, err = e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "fp-create", OrderId: "fp-elsewhere", CustomerId: "c", Currency: "EUR"})
	reused(t, "within the duplicate window: same id, another order", err)
	estest.WaitDuplicateWindow(t, e.js, e.store.Subject("window-probe"), window)
	check("after the duplicate window")
	recs, err := e.store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d events, want 2: a refused request must append nothing", len(recs))
	}
	for _, r := range recs {
		if len(r.Meta.RequestFingerprint) != 64 {
			t.Errorf("event at %d: fingerprint %q", r.Position, r.Meta.RequestFingerprint)
		}
	}
}

// Events written before fingerprints were recorded carry none: a request
// id found on them is answered from history as before, whatever the fields.
func TestRequestIDWithoutFingerprintKeepsItsAnswer(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	createUnfingerprinted(t, e, "legacy-1", "legacy-create")
	res, err := e.client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "legacy-create", OrderId: "legacy-1", CustomerId: "other", Currency: "USD"})
	if err != nil {
		t.Fatalf("retry of a request without fingerprint: %v", err)
	}
	if res.GetOrder().GetCustomerId() != "c" || res.GetPosition() != 1 {
		t.Fatalf("retry answered %v, want the original order", res)
	}
}

// createUnfingerprinted appends an OrderCreated (customer "c", EUR) under
// request id rid as builds wrote it before request fingerprints existed.
func createUnfingerprinted(t *testing.T, e *env, orderID, rid string) {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: orderID, CustomerID: "c", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	meta := eventstore.Metadata{RequestID: rid, OccurredAt: time.Now()}
	if _, err := e.store.Append(t.Context(), orderID, 0, []eventstore.EventData{{Type: typ, Data: data, Meta: meta}}); err != nil {
		t.Fatal(err)
	}
}
