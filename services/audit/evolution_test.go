package audit_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
)

// An event of a type a newer build added (docs/schema-evolution.md allows
// it) is intact where its hash matches its bytes: verification does not
// report it as altered. A read that would have to show it answers
// FAILED_PRECONDITION, naming it, rather than DATA_LOSS: nothing is lost.
func TestNewerBuildsEventTypeIsNotTampering(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id, _ := lifecycle(t, e)
	estest.AppendNewerBuildsEvent(t, e.store, id)

	v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !v.GetOk() || v.GetEventsChecked() != 9 {
		t.Fatalf("VerifyOrder of an intact chain with a newer build's event: %v", v)
	}
	_, err = e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "OrderGiftWrapped") {
		t.Fatalf("GetOrderHistory: %v, want FailedPrecondition naming the type", err)
	}
	wantLogBreaks(t, e, map[string]breakAt{})
}

// A read that does not have to show a newer build's event goes on without
// it: the state at an earlier version, a page before it, an export
// filtered to types this build knows. Each answered FAILED_PRECONDITION,
// and a filtered export stopped at the first such event anywhere in the
// log for as long as a rolling upgrade lasted.
func TestNewerBuildsEventBlocksOnlyTheReadsThatShowIt(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id, steps := lifecycle(t, e)
	estest.AppendNewerBuildsEvent(t, e.store, id)
	newer := uint32(len(steps) + 1)

	if _, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}}); err != nil {
		t.Errorf("GetOrderAt version 1: %v", err)
	}
	if _, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: newer}}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("GetOrderAt the newer build's event: %v, want FAILED_PRECONDITION", err)
	}
	page, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id, PageSize: 2})
	if err != nil || len(page.GetEvents()) != 2 {
		t.Fatalf("the history's first page: %v, %v", page, err)
	}
	if placed := collect(t, e, &ordersv1.StreamEventsRequest{EventTypes: []string{"OrderPlaced"}}); len(placed) != 1 {
		t.Errorf("an export of OrderPlaced events: %d events, want the order's one", len(placed))
	}
	if err := drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{})); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("an export of every event: %v, want FAILED_PRECONDITION at the newer build's", err)
	}
}

// A sealed envelope that does not authenticate (here one moved from
// another order's event of the same customer, correctly chained into this
// order) is an event whose content is lost: DATA_LOSS naming its position,
// as for any payload that does not decode, not an internal error.
func TestSealedDataThatDoesNotOpenIsDataLoss(t *testing.T) {
	cmd, aud, store := sealing(t)
	ctx := t.Context()
	ids := make([]string, 2)
	for i := range ids {
		c, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "aud", Currency: "EUR",
			ShippingAddress: &ordersv1.Address{Line1: "1 Analytical Row", City: "Rome", Country: "IT"}})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.GetOrder().GetOrderId()
	}
	if _, err := cmd.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: rid(), OrderId: ids[0],
		ShippingAddress: &ordersv1.Address{Line1: "2 Analytical Row", City: "Rome", Country: "IT"}}); err != nil {
		t.Fatal(err)
	}
	recs, err := store.Load(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	moved := recs[len(recs)-1]
	pos := estest.AppendChained(t, store, ids[1], moved.Type, moved.Data)

	_, err = aud.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: ids[1]})
	if status.Code(err) != codes.DataLoss || !strings.Contains(status.Convert(err).Message(), strconv.FormatUint(pos, 10)) {
		t.Fatalf("GetOrderHistory with a moved envelope: %v, want DataLoss naming position %d", err, pos)
	}
	if _, err := aud.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: ids[0]}); err != nil {
		t.Fatalf("the order the envelope came from: %v", err)
	}
}

// A message that cannot be decoded after a newer build's event is what the
// reads of the order meet: DATA_LOSS at it, not FAILED_PRECONDITION at the
// newer build's event, which a newer build can show while nothing can show
// the other.
func TestUndecodableAfterANewerBuildsEventIsDataLoss(t *testing.T) {
	e := startB(t)
	ctx := t.Context()
	id, _ := lifecycle(t, e)
	estest.AppendNewerBuildsEvent(t, e.store, id)
	if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: e.nstore.Subject(id), Data: []byte("raw")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}}); status.Code(err) != codes.DataLoss {
		t.Errorf("GetOrderAt version 1: %v, want DATA_LOSS at the message without headers", err)
	}
	if _, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id, PageSize: 2}); status.Code(err) != codes.DataLoss {
		t.Errorf("GetOrderHistory's first page: %v, want DATA_LOSS at the message without headers", err)
	}
}

// A history page cut by size before a newer build's event does not show
// it: it is answered, with a token to the rest, as any page cut by size.
func TestHistoryPageCutBeforeANewerBuildsEvent(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id, steps := lifecycle(t, e)
	for range 6 {
		_, big, err := convert.EncodeEvent(order.OrderCancelled{Reason: strings.Repeat("x", 900<<10)})
		if err != nil {
			t.Fatal(err)
		}
		estest.AppendChained(t, e.store, id, "OrderCancelled", big)
	}
	estest.AppendNewerBuildsEvent(t, e.store, id)
	page, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id}, grpc.MaxCallRecvMsgSize(16<<20))
	if err != nil {
		t.Fatalf("the first page, cut by size before the newer build's event: %v", err)
	}
	if n := len(page.GetEvents()); n >= len(steps)+6 || page.GetNextPageToken() == "" {
		t.Fatalf("%d events, token %q: want a page cut before the last big events, with a token", n, page.GetNextPageToken())
	}
}

// An envelope altered to name a key version its customer never had (versions
// only grow, and the customer's key is older) is an event whose content is
// lost, DATA_LOSS, as the README says of altered envelopes. Before, it read
// as erased, for a customer who was never forgotten.
func TestSealedDataNamingAKeyVersionNeverMadeIsDataLoss(t *testing.T) {
	cmd, aud, store := sealing(t)
	ctx := t.Context()
	c, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "aud-v", Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Line1: "1 Analytical Row", City: "Rome", Country: "IT"}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.GetOrder().GetOrderId()
	// The altered copy of the address set next goes on the order as its
	// next event, chained.
	if _, err := cmd.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: rid(), OrderId: id,
		ShippingAddress: &ordersv1.Address{Line1: "2 Analytical Row", City: "Rome", Country: "IT"}}); err != nil {
		t.Fatal(err)
	}
	recs, err := store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var pb ordersv1.Event
	if err := proto.Unmarshal(recs[1].Data, &pb); err != nil {
		t.Fatal(err)
	}
	pb.GetSealed().KeyVersion += 1000
	b, err := proto.Marshal(&pb)
	if err != nil {
		t.Fatal(err)
	}
	pos := estest.AppendChained(t, store, id, recs[1].Type, b)
	_, err = aud.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id})
	if status.Code(err) != codes.DataLoss || !strings.Contains(status.Convert(err).Message(), strconv.FormatUint(pos, 10)) {
		t.Fatalf("GetOrderHistory with an envelope naming a key version never made: %v, want DataLoss naming position %d", err, pos)
	}
}

// masterKey returns the master key the sealing tests wrap data keys with.
func masterKey(t *testing.T) *pii.MasterKey {
	t.Helper()
	master, err := pii.NewMasterKey(bytes.Repeat([]byte{7}, pii.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return master
}

// sealing returns the command and audit services sharing one keyring
// over an in-memory store of keys, and the event store they share.
func sealing(t *testing.T) (*command.Service, *audit.Service, *memstore.Store) {
	t.Helper()
	ring := pii.NewKeyring(pii.NewMemStore(), masterKey(t))
	store := memstore.New()
	cmd, err := command.New(store, command.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.New(store, nil, audit.WithKeyring(ring))
	if err != nil {
		t.Fatal(err)
	}
	return cmd, aud, store
}
