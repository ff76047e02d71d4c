package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type env struct {
	cmd   ordersv1.OrderCommandServiceClient
	audit ordersv1.OrderAuditServiceClient
	store *eventstore.Store
	js    jetstream.JetStream
	clock *clock
}

// clock advances one second per reading, so every command has a distinct,
// known occurred-at.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func start(t *testing.T) *env { return startB(t) }

func startB(t testing.TB) *env {
	t.Helper()
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	gs := grpc.NewServer()
	ordersv1.RegisterOrderCommandServiceServer(gs, command.New(store, command.WithClock(clk.now)))
	ordersv1.RegisterOrderAuditServiceServer(gs, audit.New(store, js, nil))
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
	return &env{cmd: ordersv1.NewOrderCommandServiceClient(conn), audit: ordersv1.NewOrderAuditServiceClient(conn), store: store, js: js, clock: clk}
}

var n struct {
	sync.Mutex
	i int
}

func rid() string {
	n.Lock()
	defer n.Unlock()
	n.i++
	return fmt.Sprintf("a-%d", n.i)
}

type step struct {
	order *ordersv1.Order
	at    time.Time
}

// lifecycle runs a scripted order through every stage and returns each
// command's answer.
func lifecycle(t *testing.T, e *env) (string, []step) {
	t.Helper()
	ctx := t.Context()
	var steps []step
	note := func(o *ordersv1.Order, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, step{o, o.GetUpdatedAt().AsTime()})
	}
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "aud", Currency: "EUR",
		ShippingAddress: &ordersv1.Address{Line1: "1", City: "Rome", Country: "IT"}})
	note(c.GetOrder(), err)
	id := c.GetOrder().GetOrderId()
	a, err := e.cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: rid(), OrderId: id, Sku: "A", Quantity: 2, UnitPrice: 500})
	note(a.GetOrder(), err)
	q, err := e.cmd.ChangeItemQuantity(ctx, &ordersv1.ChangeItemQuantityRequest{RequestId: rid(), OrderId: id, Sku: "A", Quantity: 3})
	note(q.GetOrder(), err)
	p, err := e.cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: rid(), OrderId: id})
	note(p.GetOrder(), err)
	d, err := e.cmd.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: id, Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED, Reason: "no"})
	note(d.GetOrder(), err)
	pa, err := e.cmd.RecordPayment(ctx, &ordersv1.RecordPaymentRequest{RequestId: rid(), OrderId: id, Outcome: ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED, PaymentRef: "ok", Amount: 1500})
	note(pa.GetOrder(), err)
	s, err := e.cmd.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: rid(), OrderId: id, Carrier: "DHL"})
	note(s.GetOrder(), err)
	dl, err := e.cmd.ConfirmDelivery(ctx, &ordersv1.ConfirmDeliveryRequest{RequestId: rid(), OrderId: id})
	note(dl.GetOrder(), err)
	return id, steps
}

func TestHistoryAndStateAt(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id, steps := lifecycle(t, e)

	var events []*ordersv1.RecordedEvent
	req := &ordersv1.GetOrderHistoryRequest{OrderId: id, PageSize: 3}
	for {
		res, err := e.audit.GetOrderHistory(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, res.GetEvents()...)
		if res.GetNextPageToken() == "" {
			break
		}
		req.PageToken = res.GetNextPageToken()
	}
	if len(events) != len(steps) {
		t.Fatalf("%d events for %d commands", len(events), len(steps))
	}
	for i, ev := range events {
		if ev.GetVersion() != uint32(i+1) || ev.GetActor() != "anonymous" || ev.GetRequestId() == "" || ev.GetHash() == "" || ev.GetEvent() == nil {
			t.Fatalf("event %d: %v", i, ev)
		}
		if !ev.GetOccurredAt().AsTime().Equal(steps[i].at) {
			t.Fatalf("event %d occurred %v, command answered %v", i, ev.GetOccurredAt().AsTime(), steps[i].at)
		}
	}
	for i, st := range steps {
		byVersion, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: uint32(i + 1)}})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(byVersion.GetOrder(), st.order) {
			t.Fatalf("state at version %d:\n%v\nwant\n%v", i+1, byVersion.GetOrder(), st.order)
		}
		// Half a second after the event and before the next one.
		byTime, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Time{Time: timestamppb.New(st.at.Add(500 * time.Millisecond))}})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(byTime.GetOrder(), st.order) {
			t.Fatalf("state at time after step %d differs", i)
		}
	}
}

func TestBadInput(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	id, steps := lifecycle(t, e)
	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"history of unknown order", func() error {
			_, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: "nope"})
			return err
		}, codes.NotFound},
		{"state of unknown order", func() error {
			_, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: "nope", Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}})
			return err
		}, codes.NotFound},
		{"version beyond the end", func() error {
			_, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: 99}})
			return err
		}, codes.OutOfRange},
		{"version zero", func() error {
			_, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{}})
			return err
		}, codes.InvalidArgument},
		{"time before creation", func() error {
			_, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Time{Time: timestamppb.New(steps[0].at.Add(-time.Hour))}})
			return err
		}, codes.NotFound},
		{"no point", func() error {
			_, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id})
			return err
		}, codes.InvalidArgument},
		{"bad page token", func() error {
			_, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id, PageToken: "%%%"})
			return err
		}, codes.InvalidArgument},
		{"oversized page", func() error {
			_, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id, PageSize: 1001})
			return err
		}, codes.InvalidArgument},
		{"unknown event type filter", func() error {
			return drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{EventTypes: []string{"OrderTeleported"}}))
		}, codes.InvalidArgument},
		{"too many order ids", func() error {
			ids := make([]string, 101)
			for i := range ids {
				ids[i] = fmt.Sprint("o", i)
			}
			return drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{OrderIds: ids}))
		}, codes.InvalidArgument},
		{"wildcard order id", func() error {
			return drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{OrderIds: []string{">"}}))
		}, codes.InvalidArgument},
	}
	// Order ids the event store refuses are refused as filters too, rather
	// than becoming a subject filter the server rejects.
	for _, bad := range []string{"", "a\nb", "a\rb", "a\x00b", "a\x7fb", "a\u00a0b", "a.b", "a*", "a b", string(make([]byte, 65))} {
		cases = append(cases, struct {
			name string
			call func() error
			want codes.Code
		}{fmt.Sprintf("order id filter %q", bad), func() error {
			return drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{OrderIds: []string{id, bad}}))
		}, codes.InvalidArgument})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.want {
				t.Fatalf("code %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRepeatedOrderFilter checks that an order id given twice selects its
// events once (the server refuses overlapping subject filters).
func TestRepeatedOrderFilter(t *testing.T) {
	e := start(t)
	id, steps := lifecycle(t, e)
	other, _ := lifecycle(t, e)
	got := collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: []string{id, other, id}})
	if len(got) != 2*len(steps) {
		t.Fatalf("%d events, want %d", len(got), 2*len(steps))
	}
	for i := 1; i < len(got); i++ {
		if got[i].GetPosition() <= got[i-1].GetPosition() {
			t.Fatalf("event %d at %d after %d", i, got[i].GetPosition(), got[i-1].GetPosition())
		}
	}
}

// TestExportEndsAtTheHeadOfTheCall checks that a stream without follow
// ends at the log head as of the call, however much is appended meanwhile.
func TestExportEndsAtTheHeadOfTheCall(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	seed(t, e, 1000) // 5,000 events: more than one pull, and more than a gRPC window
	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	// While the export is under way (the server blocks on flow control
	// while this test does not read), the log grows.
	for range 20 {
		if _, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "late", Currency: "EUR"}); err != nil {
			t.Fatal(err)
		}
	}
	got := []*ordersv1.RecordedEvent{first.GetEvent()}
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.GetEvent())
	}
	if uint64(len(got)) != head || got[len(got)-1].GetPosition() != head {
		t.Fatalf("exported %d events up to %d, want %d up to the head of the call", len(got), got[len(got)-1].GetPosition(), head)
	}
}

func drain[T any](s grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func collect(t *testing.T, e *env, req *ordersv1.StreamEventsRequest) []*ordersv1.RecordedEvent {
	t.Helper()
	s, err := e.audit.StreamEvents(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var out []*ordersv1.RecordedEvent
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r.GetEvent())
	}
}

// seed publishes orders of 5 events each straight to the stream, chained
// and with the headers the command side writes, as fast as JetStream takes
// them.
func seed(t *testing.T, e *env, orders int) { seedB(t, e, orders) }

func seedB(t testing.TB, e *env, orders int) {
	t.Helper()
	ctx := t.Context()
	// At most window publishes are outstanding (well under the client's
	// PublishAsyncMaxPending), so a slow moment of the server can never
	// stall PublishMsgAsync; every ack is checked.
	const window = 1000
	acks := make([]jetstream.PubAckFuture, 0, window)
	settle := func() {
		t.Helper()
		select {
		case <-e.js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		for _, a := range acks {
			select {
			case <-a.Ok():
			case err := <-a.Err():
				t.Fatalf("seed: %v", err)
			}
		}
		acks = acks[:0]
	}
	for o := range orders {
		id := fmt.Sprintf("bulk-%05d", o)
		prev := chain.Zero
		for i := range 5 {
			typ := []string{"OrderCreated", "ItemAdded", "ItemAdded", "OrderPlaced", "OrderCancelled"}[i]
			data := []byte{byte(i)}
			at := time.Unix(int64(o), 0).UTC()
			reqID := fmt.Sprintf("%s-%d", id, i)
			h, err := chain.Compute(prev, chain.Fields{OrderID: id, Type: typ, OccurredAt: at, Actor: "seed", RequestID: reqID, Payload: data})
			if err != nil {
				t.Fatal(err)
			}
			m := nats.NewMsg(e.store.Subject(id))
			m.Data = data
			m.Header.Set(eventstore.HeaderEventType, typ)
			m.Header.Set(eventstore.HeaderRequestID, reqID)
			m.Header.Set(eventstore.HeaderActor, "seed")
			m.Header.Set(eventstore.HeaderOccurredAt, at.Format(time.RFC3339Nano))
			m.Header.Set(eventstore.HeaderHash, h)
			m.Header.Set(eventstore.HeaderPrevHash, prev)
			prev = h
			a, err := e.js.PublishMsgAsync(m)
			if err != nil {
				t.Fatal(err)
			}
			if acks = append(acks, a); len(acks) == window {
				settle()
			}
		}
	}
	settle()
}

func TestExportCompleteness(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	const orders = 20000 // 100,000 events
	seed(t, e, orders)
	head, err := e.store.Head(ctx)
	if err != nil || head != orders*5 {
		t.Fatalf("head %d, %v", head, err)
	}
	all := collect(t, e, &ordersv1.StreamEventsRequest{})
	if len(all) != orders*5 {
		t.Fatalf("exported %d events, want %d", len(all), orders*5)
	}
	var i int
	for rec, err := range e.store.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		got := all[i]
		if got.GetPosition() != rec.Position || got.GetOrderId() != rec.OrderID || got.GetType() != rec.Type || got.GetHash() != rec.Meta.Hash || got.GetRequestId() != rec.Meta.RequestID {
			t.Fatalf("export[%d] = %v, log has %+v", i, got, rec)
		}
		i++
	}
	placed := collect(t, e, &ordersv1.StreamEventsRequest{EventTypes: []string{"OrderPlaced"}})
	if len(placed) != orders {
		t.Fatalf("%d OrderPlaced, want %d", len(placed), orders)
	}
	two := collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: []string{"bulk-00007", "bulk-19999"}})
	if len(two) != 10 || two[0].GetOrderId() != "bulk-00007" || two[9].GetOrderId() != "bulk-19999" {
		t.Fatalf("order filter: %d events", len(two))
	}
	tail := collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: head - 9})
	if len(tail) != 10 || tail[0].GetPosition() != head-9 {
		t.Fatalf("from position: %d events", len(tail))
	}

	// Following: events appended after the stream started arrive too.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	follow, err := e.audit.StreamEvents(fctx, &ordersv1.StreamEventsRequest{FromPosition: head + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid(), CustomerId: "live", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := follow.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetEvent().GetPosition() != c.GetPosition() || got.GetEvent().GetOrderId() != c.GetOrder().GetOrderId() {
		t.Fatalf("followed %v, appended at %d", got.GetEvent(), c.GetPosition())
	}

	// The whole log verifies.
	sum := verifyLog(t, e)
	if sum.GetOrdersBroken() != 0 || sum.GetEventsChecked() != orders*5+1 {
		t.Fatalf("summary %v", sum)
	}
}

func verifyLog(t *testing.T, e *env) *ordersv1.VerifyLogProgress {
	t.Helper()
	s, err := e.audit.VerifyLog(t.Context(), &ordersv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if sum := r.GetSummary(); sum != nil {
			return sum
		}
	}
}

func TestTamperingIsPinpointed(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	deleted, _ := lifecycle(t, e)
	forged, _ := lifecycle(t, e)
	unhashed, _ := lifecycle(t, e)
	headless, _ := lifecycle(t, e)
	garbled, _ := lifecycle(t, e)
	intact, _ := lifecycle(t, e)

	for _, id := range []string{deleted, forged, unhashed, headless, garbled, intact} {
		v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
		if err != nil || !v.GetOk() || v.GetEventsChecked() != 8 {
			t.Fatalf("untouched %s: %v %v", id, v, err)
		}
	}

	// Delete the third event of one order, behind the service's back.
	recs, err := e.store.Load(ctx, deleted)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.js.Stream(ctx, e.store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, recs[2].Position); err != nil {
		t.Fatal(err)
	}
	// Append a forged event with a wrong hash, and one with none.
	fr, _ := e.store.Load(ctx, forged)
	forge := nats.NewMsg(e.store.Subject(forged))
	forge.Header.Set(eventstore.HeaderEventType, "OrderCancelled")
	forge.Header.Set(eventstore.HeaderPrevHash, fr[len(fr)-1].Meta.Hash)
	forge.Header.Set(eventstore.HeaderHash, chain.Zero)
	forge.Header.Set(eventstore.HeaderOccurredAt, time.Now().UTC().Format(time.RFC3339Nano))
	forgedAck, err := e.js.PublishMsg(ctx, forge)
	if err != nil {
		t.Fatal(err)
	}
	bare := nats.NewMsg(e.store.Subject(unhashed))
	bare.Header.Set(eventstore.HeaderEventType, "OrderCancelled")
	bareAck, err := e.js.PublishMsg(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	// Two messages that do not even decode as events: one with no headers
	// at all, and one with chain headers but an unparsable occurred-at.
	headlessAck, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: e.store.Subject(headless), Data: []byte("raw")})
	if err != nil {
		t.Fatal(err)
	}
	gr, _ := e.store.Load(ctx, garbled)
	garble := nats.NewMsg(e.store.Subject(garbled))
	garble.Header.Set(eventstore.HeaderEventType, "OrderCancelled")
	garble.Header.Set(eventstore.HeaderPrevHash, gr[len(gr)-1].Meta.Hash)
	garble.Header.Set(eventstore.HeaderHash, chain.Zero)
	garble.Header.Set(eventstore.HeaderOccurredAt, "yesterday")
	garbledAck, err := e.js.PublishMsg(ctx, garble)
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]struct {
		pos  uint64
		kind ordersv1.ChainBreakKind
	}{
		deleted:  {recs[3].Position, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_MISSING},
		forged:   {forgedAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED},
		unhashed: {bareAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN},
		headless: {headlessAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN},
		garbled:  {garbledAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED},
	}
	for id, w := range want {
		v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		if v.GetOk() || v.GetFirstBreak().GetPosition() != w.pos || v.GetFirstBreak().GetKind() != w.kind {
			t.Fatalf("%s: %v, want break at %d of kind %v", id, v, w.pos, w.kind)
		}
	}
	// Reading the history of an order holding an undecodable message is
	// data loss, not an internal error; exporting past it too, while other
	// orders stay readable.
	for _, id := range []string{headless, garbled} {
		if v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id}); err != nil || v.GetEventsChecked() != 9 {
			t.Fatalf("VerifyOrder(%s) checked %d events, %v; want 9", id, v.GetEventsChecked(), err)
		}
		if _, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id}); status.Code(err) != codes.DataLoss {
			t.Fatalf("GetOrderHistory(%s): %v, want DataLoss", id, err)
		}
		if _, err := e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}}); status.Code(err) != codes.DataLoss {
			t.Fatalf("GetOrderAt(%s): %v, want DataLoss", id, err)
		}
	}
	for _, req := range []*ordersv1.StreamEventsRequest{
		{},
		{OrderIds: []string{headless}},
		{EventTypes: []string{"OrderCreated"}, FromPosition: headlessAck.Sequence},
	} {
		if err := drain(e.audit.StreamEvents(ctx, req)); status.Code(err) != codes.DataLoss {
			t.Fatalf("StreamEvents(%v): %v, want DataLoss", req, err)
		}
	}
	if got := collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: []string{intact}}); len(got) != 8 {
		t.Fatalf("intact order exported %d events, want 8", len(got))
	}
	if got := collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: garbledAck.Sequence + 1}); len(got) != 0 {
		t.Fatalf("export after the last message: %d events", len(got))
	}
	if v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: intact}); err != nil || !v.GetOk() {
		t.Fatalf("intact order: %v %v", v, err)
	}

	s, err := e.audit.VerifyLog(ctx, &ordersv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	broken := map[string]*ordersv1.ChainBreak{}
	var sum *ordersv1.VerifyLogProgress
	for sum == nil {
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if b := r.GetBroken(); b != nil {
			broken[b.GetOrderId()] = b.GetFirstBreak()
		}
		sum = r.GetSummary()
	}
	if sum.GetOrdersBroken() != uint64(len(want)) || len(broken) != len(want) {
		t.Fatalf("VerifyLog found %d broken orders: %v", sum.GetOrdersBroken(), broken)
	}
	for id, w := range want {
		if b := broken[id]; b.GetPosition() != w.pos || b.GetKind() != w.kind {
			t.Fatalf("VerifyLog on %s: %v", id, b)
		}
	}
}

func FuzzVerifier(f *testing.F) {
	f.Add("o", "OrderCreated", []byte("x"), chain.Zero, chain.Zero)
	f.Add("o", "", []byte{}, "zz", "")
	f.Fuzz(func(t *testing.T, id, typ string, data []byte, prev, hash string) {
		v := chain.NewVerifier()
		r := eventstore.Recorded{OrderID: id, Type: typ, Data: data, Position: 1, Meta: eventstore.Metadata{PrevHash: prev, Hash: hash}}
		b := v.Add(r)
		want, err := chain.Compute(chain.Zero, chain.FieldsOf(r))
		if err != nil {
			t.Fatal(err)
		}
		ok := prev == chain.Zero && hash == want
		if ok != (b == nil) {
			t.Fatalf("verdict %v for prev=%q hash=%q", b, prev, hash)
		}
	})
}
