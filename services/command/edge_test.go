package command_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// racingStore lets another change land between a command's load and its
// append, exactly once.
type racingStore struct {
	*eventstore.Store
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
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	rs := &racingStore{Store: store}
	svc := command.New(rs)
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
	c := ordersv1.NewOrderCommandServiceClient(conn)
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
	_, err = c.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: "o-race", Sku: "A", Quantity: 1, UnitPrice: 1, ExpectedRevision: &rev})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("lost race: %v, want ABORTED", err)
	}
	if msg := strings.ToLower(status.Convert(err).Message()); strings.Contains(msg, "nats") || strings.Contains(msg, "eventstore") {
		t.Fatalf("store internals reached the client: %q", msg)
	}
	recs, err := store.Load(ctx, "o-race")
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d events, %v: the losing command must not be applied", len(recs), err)
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
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateOrder reusing another order's request id: %v %v, want INVALID_ARGUMENT", b.GetOrder(), err)
	}
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
