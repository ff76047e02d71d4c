package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/chain"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/order"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// store is what the tests use of an event store: what the command and
// audit services need, and loading, appending and reading behind their
// backs.
type store interface {
	command.Store
	audit.Store
	Read(ctx context.Context, from uint64) iter.Seq2[eventstore.Recorded, error]
}

type env struct {
	cmd    ordersv1.OrderCommandServiceClient
	audit  ordersv1.OrderAuditServiceClient
	store  store
	nstore *eventstore.Store   // startB only
	js     jetstream.JetStream // startB only
	clock  *clock
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

// start starts the command and audit services on the in-memory event
// store, which obeys the JetStream store's contract (estest.Run).
func start(t *testing.T) *env { return serve(t, &env{store: memstore.New()}) }

// startB starts them on the JetStream store, configured by opts, on a
// memory-backed stream of a new embedded nats-server: for what only
// JetStream holds (deleted and purged events, messages that are not
// events) and for benchmarks of it.
func startB(t testing.TB, opts ...eventstore.Option) *env {
	t.Helper()
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	store, err := eventstore.New(t.Context(), js, append([]eventstore.Option{eventstore.WithStorage(jetstream.MemoryStorage)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, &env{store: store, nstore: store, js: js})
}

// serve runs the command and audit services of e on a real loopback gRPC
// listener, the command service stamping events with e's clock.
func serve(t testing.TB, e *env) *env {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	cmd, err := command.New(e.store, command.WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := audit.New(e.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := listen(t, func(gs *grpc.Server) {
		ordersv1.RegisterOrderCommandServiceServer(gs, cmd)
		ordersv1.RegisterOrderAuditServiceServer(gs, svc)
	})
	e.cmd, e.audit, e.clock = ordersv1.NewOrderCommandServiceClient(conn), ordersv1.NewOrderAuditServiceClient(conn), clk
	return e
}

// listen serves what register adds on a real loopback gRPC listener and
// returns a client connection to it; both end with the test.
func listen(t testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	gs := grpc.NewServer()
	register(gs)
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
	return conn
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

// A page of large events stops short of its size, so that a client with
// gRPC's default receive limit (4 MiB, as e's) can read it, and the pages
// together hold the whole history once, in order. The events here are
// larger than commands allow (written to the log directly), as pages of
// the largest legal events may become.
func TestHistoryPagesFitAClientsDefault(t *testing.T) {
	e := start(t)
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	_, prev := publishAt(t, e, "big", chain.Zero, order.OrderCreated{OrderID: "big", CustomerID: "c", Currency: "EUR"}, at)
	field := strings.Repeat("x", 8<<10)
	const changes = 150 // about 41 KB each: 6 MB in all
	for i := range changes {
		a := order.Address{Name: field, Line1: field, Line2: field, City: field, Region: field, PostalCode: fmt.Sprint(i), Country: "NL"}
		_, prev = publishAt(t, e, "big", prev, order.ShippingAddressSet{Address: a}, at.Add(time.Duration(i+1)*time.Second))
	}
	var versions []uint32
	req := &ordersv1.GetOrderHistoryRequest{OrderId: "big", PageSize: 1000}
	for pages := 1; ; pages++ {
		res, err := e.audit.GetOrderHistory(t.Context(), req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(res.GetEvents()) == 0 {
			t.Fatalf("page %d is empty", pages)
		}
		for _, ev := range res.GetEvents() {
			versions = append(versions, ev.GetVersion())
		}
		if res.GetNextPageToken() == "" {
			if pages == 1 {
				t.Fatal("the whole history in one page")
			}
			break
		}
		req.PageToken = res.GetNextPageToken()
	}
	if len(versions) != changes+1 {
		t.Fatalf("%d events in the pages, want %d", len(versions), changes+1)
	}
	for i, v := range versions {
		if v != uint32(i+1) {
			t.Fatalf("event %d of the pages is version %d", i, v)
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

// A from_position past the next position of the log is OUT_OF_RANGE, as
// the watches answer it: no append returned the position before it, and a
// follow from it waited in silence, then skipped the events below it. The
// next position itself resumes after the last event.
func TestStreamFromPastTheNextPositionIsOutOfRange(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	seed(t, e, 2)
	head, err := e.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, follow := range []bool{false, true} {
		// Bounded: a follow that is not refused waits for appends.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{FromPosition: head + 2, Follow: follow}))
		cancel()
		if status.Code(err) != codes.OutOfRange {
			t.Errorf("StreamEvents from %d (head %d), follow %v: %v, want OutOfRange", head+2, head, follow, err)
		}
	}
	if got := collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: head + 1}); len(got) != 0 {
		t.Errorf("StreamEvents from the next position sent %d events, want none", len(got))
	}
	if got := collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: head}); len(got) != 1 || got[0].GetPosition() != head {
		t.Errorf("StreamEvents from the head sent %d events, want the one at %d", len(got), head)
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

// seed publishes orders of 5 real events each (OrderCreated with a line,
// two ItemAdded, OrderPlaced, OrderCancelled) straight to the stream,
// encoded by the event codec, chained, and with every header the command
// side writes, as fast as JetStream takes them. Order o is "bulk-%05d" and
// its events occurred at o seconds after the Unix epoch.
func seed(t *testing.T, e *env, orders int) { seedB(t, e, orders) }

// seedEvents are the events of every seeded order after the first; the
// first, OrderCreated, names its order and is encoded per order.
var seedEvents = []order.Event{
	order.ItemAdded{SKU: "BOOK-2", Quantity: 1, UnitPrice: 799},
	order.ItemAdded{SKU: "PEN-9", Quantity: 3, UnitPrice: 150},
	order.OrderPlaced{Total: 2500 + 799 + 450},
	order.OrderCancelled{Reason: "changed mind"},
}

// seedTrace is the trace id of every seeded event's traceparent.
const seedTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

func seedB(t testing.TB, e *env, orders int) {
	t.Helper()
	// The payloads every order shares are encoded once.
	type encoded struct {
		typ  string
		data []byte
	}
	shared := make([]encoded, len(seedEvents))
	for i, ev := range seedEvents {
		typ, data, err := convert.EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		shared[i] = encoded{typ, data}
	}
	put, settle := e.seeder(t)
	for o := range orders {
		id := fmt.Sprintf("bulk-%05d", o)
		typ, data, err := convert.EncodeEvent(order.OrderCreated{OrderID: id, CustomerID: "seed-customer", Currency: "EUR",
			Lines: []order.Line{{SKU: "BOOK-1", Quantity: 2, UnitPrice: 1250}}})
		if err != nil {
			t.Fatal(err)
		}
		evs := append([]encoded{{typ, data}}, shared...)
		prev := chain.Zero
		for i, ev := range evs {
			m := eventstore.Metadata{RequestID: fmt.Sprintf("%s-%d", id, i), CorrelationID: "corr-" + id, Actor: "seed",
				OccurredAt: time.Unix(int64(o), int64(i)).UTC(), TraceParent: "00-" + seedTrace + "-00f067aa0ba902b7-01", PrevHash: prev}
			if i > 0 {
				m.CausationID = fmt.Sprintf("%s-%d", id, i-1)
			}
			m.Hash, err = chain.Compute(prev, chain.Fields{OrderID: id, Type: ev.typ, OccurredAt: m.OccurredAt, Actor: m.Actor, RequestID: m.RequestID, Payload: ev.data})
			if err != nil {
				t.Fatal(err)
			}
			prev = m.Hash
			put(id, uint64(i), eventstore.EventData{Type: ev.typ, Data: ev.data, Meta: m})
		}
	}
	settle()
}

// seeder returns how seedB appends the event at revision rev of order id,
// and a function that waits for every append to be stored. The JetStream
// store is fed asynchronous publishes, as a benchmark's 100,000 events
// need; the memory store appends at once.
func (e *env) seeder(t testing.TB) (put func(id string, rev uint64, ev eventstore.EventData), settle func()) {
	if e.js == nil {
		return func(id string, rev uint64, ev eventstore.EventData) {
			if _, err := e.store.Append(t.Context(), id, rev, []eventstore.EventData{ev}); err != nil {
				t.Fatalf("seed: %v", err)
			}
		}, func() {}
	}
	// At most window publishes are outstanding (well under the client's
	// PublishAsyncMaxPending), so a slow moment of the server can never
	// stall PublishMsgAsync; every ack is checked.
	const window = 1000
	acks := make([]jetstream.PubAckFuture, 0, window)
	settle = func() {
		t.Helper()
		select {
		case <-e.js.PublishAsyncComplete():
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
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
	put = func(id string, rev uint64, ev eventstore.EventData) {
		h, _, err := eventstore.EncodeEvent(ev, rev+1)
		if err != nil {
			t.Fatal(err)
		}
		a, err := e.js.PublishMsgAsync(&nats.Msg{Subject: e.nstore.Subject(id), Header: h, Data: ev.Data})
		if err != nil {
			t.Fatal(err)
		}
		if acks = append(acks, a); len(acks) == window {
			settle()
		}
	}
	return put, settle
}

// fromLog is what an export must carry for one event of the log, built
// from the stored message alone: the payload is unmarshalled straight from
// the stored bytes.
func fromLog(t *testing.T, rec eventstore.Recorded) *ordersv1.RecordedEvent {
	t.Helper()
	var pb ordersv1.Event
	if err := proto.Unmarshal(rec.Data, &pb); err != nil {
		t.Fatalf("log position %d: %v", rec.Position, err)
	}
	for _, l := range pb.GetOrderCreated().GetLines() { // stored without, exported with
		l.LineTotal = l.GetQuantity() * l.GetUnitPrice()
	}
	var trace string
	if p := strings.Split(rec.Meta.TraceParent, "-"); len(p) == 4 {
		trace = p[1]
	}
	return &ordersv1.RecordedEvent{
		Position: rec.Position, OrderId: rec.OrderID, Version: uint32(rec.Version), Type: rec.Type,
		OccurredAt: timestamppb.New(rec.Meta.OccurredAt), RecordedAt: timestamppb.New(rec.Time),
		Actor: rec.Meta.Actor, RequestId: rec.Meta.RequestID, CorrelationId: rec.Meta.CorrelationID,
		CausationId: rec.Meta.CausationID, TraceId: trace, Hash: rec.Meta.Hash, Event: &pb,
	}
}

// readLog returns the whole log, read through the event store.
func readLog(t *testing.T, e *env) []eventstore.Recorded {
	t.Helper()
	var out []eventstore.Recorded
	for rec, err := range e.store.Read(t.Context(), 1) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// matchLog checks that got is exactly the events of log that keep
// selects, in log order, with all their content.
func matchLog(t *testing.T, log []eventstore.Recorded, got []*ordersv1.RecordedEvent, keep func(eventstore.Recorded) bool) {
	t.Helper()
	i := 0
	for _, rec := range log {
		if !keep(rec) {
			continue
		}
		if i >= len(got) {
			t.Fatalf("export ends after %d events; the log goes on with position %d", len(got), rec.Position)
		}
		want := fromLog(t, rec)
		if want.GetVersion() == 0 && got[i].GetVersion() != 0 {
			// Seeded without a version header: numbered by the export only
			// when it starts at the beginning of the log.
			want.Version = got[i].GetVersion()
		}
		if !proto.Equal(got[i], want) {
			t.Fatalf("export[%d]:\n%v\nlog has\n%v", i, got[i], want)
		}
		if got[i].GetEvent().GetEvent() == nil {
			t.Fatalf("export[%d] at %d carries no payload", i, got[i].GetPosition())
		}
		i++
	}
	if i != len(got) {
		t.Fatalf("export has %d events, the log %d", len(got), i)
	}
}

func TestExportCompleteness(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	const orders = 4000 // 20,000 events: two progress steps of 10,000
	seed(t, e, orders)
	head, err := e.store.Head(ctx)
	if err != nil || head != orders*5 {
		t.Fatalf("head %d, %v", head, err)
	}
	all := collect(t, e, &ordersv1.StreamEventsRequest{})
	if len(all) != orders*5 {
		t.Fatalf("exported %d events, want %d", len(all), orders*5)
	}
	log := readLog(t, e)
	if len(log) != orders*5 {
		t.Fatalf("the log holds %d events", len(log))
	}
	matchLog(t, log, all, func(eventstore.Recorded) bool { return true })
	// The seed's own view of a few events, so that a log and an export
	// that were both wrong the same way would not pass.
	if c := all[5*7].GetEvent().GetOrderCreated(); c.GetOrderId() != "bulk-00007" || len(c.GetLines()) != 1 ||
		all[5*7+1].GetEvent().GetItemAdded().GetSku() != "BOOK-2" || all[5*7+3].GetEvent().GetOrderPlaced().GetTotal() != 3749 ||
		all[5*7+4].GetCausationId() != "bulk-00007-3" || all[5*7+4].GetTraceId() != seedTrace ||
		!all[5*7+4].GetOccurredAt().AsTime().Equal(time.Unix(7, 4)) {
		t.Fatalf("bulk-00007 exported as %v", all[5*7:5*8])
	}
	all = nil

	placed := collect(t, e, &ordersv1.StreamEventsRequest{EventTypes: []string{"OrderPlaced", "OrderCancelled"}})
	if len(placed) != 2*orders {
		t.Fatalf("%d OrderPlaced and OrderCancelled, want %d", len(placed), 2*orders)
	}
	matchLog(t, log, placed, func(r eventstore.Recorded) bool { return r.Type == "OrderPlaced" || r.Type == "OrderCancelled" })
	two := collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: []string{"bulk-03999", "bulk-00007"}})
	if len(two) != 10 {
		t.Fatalf("order filter: %d events", len(two))
	}
	matchLog(t, log, two, func(r eventstore.Recorded) bool { return r.OrderID == "bulk-00007" || r.OrderID == "bulk-03999" })
	both := collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: []string{"bulk-00123", "bulk-03567"}, EventTypes: []string{"ItemAdded"}, FromPosition: 5*123 + 3})
	if len(both) != 3 {
		t.Fatalf("order, type and position filter: %d events", len(both))
	}
	matchLog(t, log, both, func(r eventstore.Recorded) bool {
		return (r.OrderID == "bulk-00123" || r.OrderID == "bulk-03567") && r.Type == "ItemAdded" && r.Position >= 5*123+3
	})
	tail := collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: head - 9})
	if len(tail) != 10 {
		t.Fatalf("from position: %d events", len(tail))
	}
	matchLog(t, log, tail, func(r eventstore.Recorded) bool { return r.Position >= head-9 })

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

	// The whole log verifies, with progress on the way: at least every
	// 10,000 events, in log order.
	sum, progress, _ := verifyLog(t, e)
	total := uint64(orders*5 + 1)
	if sum.GetOrdersBroken() != 0 || sum.GetEventsChecked() != total || sum.GetOrdersChecked() != orders+1 ||
		sum.GetPosition() != total || sum.GetHead() != total {
		t.Fatalf("summary %v", sum)
	}
	byCount := map[uint64]*ordersv1.VerifyLogProgress{}
	var prev uint64
	for _, p := range progress {
		if p.GetEventsChecked() <= prev || p.GetPosition() != p.GetEventsChecked() || p.GetHead() != total || p.GetOrdersBroken() != 0 {
			t.Fatalf("progress %v after %d events", p, prev)
		}
		prev = p.GetEventsChecked()
		byCount[prev] = p
	}
	for n := uint64(10000); n < total; n += 10000 {
		// Orders were seeded one after another, five events each.
		if p := byCount[n]; p == nil || p.GetOrdersChecked() != n/5 {
			t.Fatalf("progress at %d events: %v (of %d progress messages)", n, p, len(progress))
		}
	}
}

// verifyLog returns VerifyLog's summary, the progress messages before it,
// and the first break of each order it reported broken.
func verifyLog(t *testing.T, e *env) (*ordersv1.VerifyLogProgress, []*ordersv1.VerifyLogProgress, map[string]*ordersv1.ChainBreak) {
	t.Helper()
	s, err := e.audit.VerifyLog(t.Context(), &ordersv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var progress []*ordersv1.VerifyLogProgress
	broken := map[string]*ordersv1.ChainBreak{}
	for {
		r, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if p := r.GetProgress(); p != nil {
			progress = append(progress, p)
		}
		if b := r.GetBroken(); b != nil {
			broken[b.GetOrderId()] = b.GetFirstBreak()
		}
		if sum := r.GetSummary(); sum != nil {
			if _, err := s.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the summary: %v", err)
			}
			return sum, progress, broken
		}
	}
}

// breakAt is where an order's chain first breaks, and how.
type breakAt struct {
	pos  uint64
	kind ordersv1.ChainBreakKind
}

// wantLogBreaks checks that VerifyLog finds exactly the orders of want
// broken, each first at the position and of the kind want names.
func wantLogBreaks(t *testing.T, e *env, want map[string]breakAt) {
	t.Helper()
	sum, _, broken := verifyLog(t, e)
	if sum.GetOrdersBroken() != uint64(len(want)) || len(broken) != len(want) {
		t.Fatalf("VerifyLog found %d broken orders: %v", sum.GetOrdersBroken(), broken)
	}
	for id, w := range want {
		if b := broken[id]; b.GetPosition() != w.pos || b.GetKind() != w.kind {
			t.Fatalf("VerifyLog on %s: %v", id, b)
		}
	}
}

func TestTamperingIsPinpointed(t *testing.T) {
	e := startB(t, eventstore.WithMutableStream()) // to delete an event
	ctx := t.Context()
	deleted, _ := lifecycle(t, e)
	forged, _ := lifecycle(t, e)
	unhashed, _ := lifecycle(t, e)
	headless, _ := lifecycle(t, e)
	garbled, _ := lifecycle(t, e)
	garbledCompact, _ := lifecycle(t, e)
	intact, _ := lifecycle(t, e)

	for _, id := range []string{deleted, forged, unhashed, headless, garbled, garbledCompact, intact} {
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
	stream, err := e.js.Stream(ctx, e.nstore.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, recs[2].Position); err != nil {
		t.Fatal(err)
	}
	// Append a forged event with a wrong hash, and one with none.
	fr, _ := e.store.Load(ctx, forged)
	forge := nats.NewMsg(e.nstore.Subject(forged))
	forge.Header.Set(eventstore.HeaderEventType, "OrderCancelled")
	forge.Header.Set(eventstore.HeaderPrevHash, fr[len(fr)-1].Meta.Hash)
	forge.Header.Set(eventstore.HeaderHash, chain.Zero)
	forge.Header.Set(eventstore.HeaderOccurredAt, time.Now().UTC().Format(time.RFC3339Nano))
	forgedAck, err := e.js.PublishMsg(ctx, forge)
	if err != nil {
		t.Fatal(err)
	}
	bare := nats.NewMsg(e.nstore.Subject(unhashed))
	bare.Header.Set(eventstore.HeaderEventType, "OrderCancelled")
	bareAck, err := e.js.PublishMsg(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	// Two messages that do not even decode as events: one with no headers
	// at all, and one with chain headers but an unparsable occurred-at.
	headlessAck, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: e.nstore.Subject(headless), Data: []byte("raw")})
	if err != nil {
		t.Fatal(err)
	}
	gr, _ := e.store.Load(ctx, garbled)
	garble := nats.NewMsg(e.nstore.Subject(garbled))
	garble.Header.Set(eventstore.HeaderEventType, "OrderCancelled")
	garble.Header.Set(eventstore.HeaderPrevHash, gr[len(gr)-1].Meta.Hash)
	garble.Header.Set(eventstore.HeaderHash, chain.Zero)
	garble.Header.Set(eventstore.HeaderOccurredAt, "yesterday")
	garbledAck, err := e.js.PublishMsg(ctx, garble)
	if err != nil {
		t.Fatal(err)
	}
	// The same in the compact header: the hashes come before the
	// occurrence time that does not parse.
	gc, _ := e.store.Load(ctx, garbledCompact)
	garbleCompact := nats.NewMsg(e.nstore.Subject(garbledCompact))
	garbleCompact.Header.Set(eventstore.HeaderMeta, fmt.Sprintf("m1t14:OrderCancelledh%d:%sp%d:%so9:yesterdayv1:9",
		len(chain.Zero), chain.Zero, len(gc[len(gc)-1].Meta.Hash), gc[len(gc)-1].Meta.Hash))
	garbledCompactAck, err := e.js.PublishMsg(ctx, garbleCompact)
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]breakAt{
		deleted:        {recs[3].Position, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_MISSING},
		forged:         {forgedAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED},
		unhashed:       {bareAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN},
		headless:       {headlessAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN},
		garbled:        {garbledAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED},
		garbledCompact: {garbledCompactAck.Sequence, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED},
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
	for _, id := range []string{headless, garbled, garbledCompact} {
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
	if got := collect(t, e, &ordersv1.StreamEventsRequest{FromPosition: garbledCompactAck.Sequence + 1}); len(got) != 0 {
		t.Fatalf("export after the last message: %d events", len(got))
	}
	if v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: intact}); err != nil || !v.GetOk() {
		t.Fatalf("intact order: %v %v", v, err)
	}

	wantLogBreaks(t, e, want)
}

// A history with events removed from the log is DATA_LOSS, never a shorter
// history renumbered as if complete: an event deleted in the middle, or the
// first events purged.
func TestHistoryGapIsDataLoss(t *testing.T) {
	e := startB(t, eventstore.WithMutableStream()) // to remove events
	ctx := t.Context()
	middle, _ := lifecycle(t, e)
	first, _ := lifecycle(t, e)
	intact, _ := lifecycle(t, e)
	stream, err := e.js.Stream(ctx, e.nstore.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(ctx, middle)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, recs[2].Position); err != nil {
		t.Fatal(err)
	}
	recs, err = e.store.Load(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(e.nstore.Subject(first)), jetstream.WithPurgeSequence(recs[2].Position)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{middle, first} {
		_, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id})
		if status.Code(err) != codes.DataLoss {
			t.Errorf("history of %s with a gap: %v, want DATA_LOSS", id, err)
		}
		_, err = e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}})
		if status.Code(err) != codes.DataLoss {
			t.Errorf("state of %s with a gap: %v, want DATA_LOSS", id, err)
		}
	}
	if h, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: intact}); err != nil || len(h.GetEvents()) != 8 {
		t.Fatalf("intact history: %d events, %v", len(h.GetEvents()), err)
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

// TestCorruptPayloadIsDataLoss checks that an event whose headers decode
// but whose payload is not a valid event of its type is treated like a
// message whose headers do not decode: reading its order's history or
// state, or exporting across it, is DATA_LOSS, and verification breaks the
// chain at its position, even where its hash matches its bytes.
func TestCorruptPayloadIsDataLoss(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	garbage, _ := lifecycle(t, e)
	wrongCase, _ := lifecycle(t, e)
	intact, _ := lifecycle(t, e)

	// Bytes that are no protobuf message, appended through the event store
	// with a correct chain hash over them.
	garbagePos := estest.AppendChained(t, e.store, garbage, "OrderCancelled", []byte{0xff, 0xff, 0xff})
	// A valid event of another type than its header names, appended
	// without chain headers.
	_, other, err := convert.EncodeEvent(order.ItemAdded{SKU: "X", Quantity: 1, UnitPrice: 1})
	if err != nil {
		t.Fatal(err)
	}
	wrong := eventstore.EventData{Type: "OrderCancelled", Data: other, Meta: eventstore.Metadata{OccurredAt: time.Now().UTC()}}
	wrongRes, err := e.store.Append(ctx, wrongCase, 8, []eventstore.EventData{wrong})
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]breakAt{
		garbage:   {garbagePos, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_ALTERED},
		wrongCase: {wrongRes.Position, ordersv1.ChainBreakKind_CHAIN_BREAK_KIND_OUT_OF_CHAIN},
	}
	for id, w := range want {
		v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		if v.GetOk() || v.GetEventsChecked() != 9 || v.GetFirstBreak().GetPosition() != w.pos || v.GetFirstBreak().GetKind() != w.kind ||
			v.GetFirstBreak().GetVersion() != 9 || !strings.Contains(v.GetFirstBreak().GetDetail(), "payload") {
			t.Fatalf("VerifyOrder(%s): %v, want a break at %d of kind %v", id, v, w.pos, w.kind)
		}
		dataLoss := func(what string, err error) {
			t.Helper()
			if status.Code(err) != codes.DataLoss {
				t.Fatalf("%s(%s): %v, want DataLoss", what, id, err)
			}
			// The position, not the decoder's text.
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, fmt.Sprint(w.pos)) || strings.Contains(msg, "proto") || strings.Contains(msg, "convert") {
				t.Fatalf("%s(%s): message %q", what, id, msg)
			}
		}
		_, err = e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id})
		dataLoss("GetOrderHistory", err)
		_, err = e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: 1}})
		dataLoss("GetOrderAt by version", err)
		_, err = e.audit.GetOrderAt(ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Time{Time: timestamppb.Now()}})
		dataLoss("GetOrderAt by time", err)
		dataLoss("StreamEvents of the order", drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{OrderIds: []string{id}})))
		// A type filter that the broken event would not pass does not
		// hide it either.
		dataLoss("StreamEvents of other types", drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{FromPosition: w.pos, EventTypes: []string{"OrderCreated"}})))
	}
	if err := drain(e.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{})); status.Code(err) != codes.DataLoss {
		t.Fatalf("StreamEvents of the whole log: %v, want DataLoss", err)
	}
	if got := collect(t, e, &ordersv1.StreamEventsRequest{OrderIds: []string{intact}}); len(got) != 8 {
		t.Fatalf("intact order exported %d events, want 8", len(got))
	}
	if _, err := e.audit.GetOrderHistory(ctx, &ordersv1.GetOrderHistoryRequest{OrderId: intact}); err != nil {
		t.Fatalf("intact order: %v", err)
	}

	wantLogBreaks(t, e, want)
}

// publishAt appends one real event to order id behind the command
// service, chained to prev, with the given occurred-at, and returns its
// position and hash.
func publishAt(t *testing.T, e *env, id, prev string, ev order.Event, at time.Time) (uint64, string) {
	t.Helper()
	typ, data, err := convert.EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	reqID := rid()
	h, err := chain.Compute(prev, chain.Fields{OrderID: id, Type: typ, OccurredAt: at, Actor: "clock", RequestID: reqID, Payload: data})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	meta := eventstore.Metadata{RequestID: reqID, Actor: "clock", OccurredAt: at, Hash: h, PrevHash: prev}
	res, err := e.store.Append(t.Context(), id, uint64(len(recs)), []eventstore.EventData{{Type: typ, Data: data, Meta: meta}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position, h
}

// TestStreamFromTime checks that from_time selects by the time the log
// stored each event (recorded_at), inclusive, not by its occurred-at: the
// events stored first here claim to have occurred long after the ones
// stored later.
func TestStreamFromTime(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	lifeOf := func(id string, at time.Time) {
		t.Helper()
		_, h := publishAt(t, e, id, chain.Zero, order.OrderCreated{OrderID: id, CustomerID: "c", Currency: "EUR"}, at)
		_, h = publishAt(t, e, id, h, order.ItemAdded{SKU: "A", Quantity: 1, UnitPrice: 100}, at.Add(time.Second))
		publishAt(t, e, id, h, order.OrderPlaced{Total: 100}, at.Add(2*time.Second))
	}
	lifeOf("before", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	before, err := e.store.Load(ctx, "before")
	if err != nil {
		t.Fatal(err)
	}
	lifeOf("after", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	after, err := e.store.Load(ctx, "after")
	if err != nil {
		t.Fatal(err)
	}
	log := readLog(t, e)
	lastBefore, firstAfter := before[len(before)-1].Time, after[0].Time
	if !firstAfter.After(lastBefore) {
		t.Fatalf("the server stored position %d at %v, not after position %d at %v", after[0].Position, firstAfter, before[len(before)-1].Position, lastBefore)
	}
	for _, from := range []time.Time{lastBefore.Add(time.Nanosecond), firstAfter} {
		got := collect(t, e, &ordersv1.StreamEventsRequest{FromTime: timestamppb.New(from)})
		matchLog(t, log, got, func(r eventstore.Recorded) bool { return r.OrderID == "after" })
		if len(got) != len(after) {
			t.Fatalf("from %v: %d events, want %d", from, len(got), len(after))
		}
	}
	// from_time overrides from_position.
	got := collect(t, e, &ordersv1.StreamEventsRequest{FromTime: timestamppb.New(before[0].Time), FromPosition: after[0].Position})
	if len(got) != len(before)+len(after) {
		t.Fatalf("from the first event's time: %d events", len(got))
	}
	if got := collect(t, e, &ordersv1.StreamEventsRequest{FromTime: timestamppb.New(after[len(after)-1].Time.Add(time.Nanosecond))}); len(got) != 0 {
		t.Fatalf("from after the last event: %d events", len(got))
	}
	// Following from a time receives the events stored since, then new ones.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f, err := e.audit.StreamEvents(fctx, &ordersv1.StreamEventsRequest{FromTime: timestamppb.New(firstAfter), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	pos, _ := publishAt(t, e, "later", chain.Zero, order.OrderCreated{OrderID: "later", CustomerID: "c", Currency: "EUR"}, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))
	for _, want := range []uint64{after[0].Position, after[1].Position, after[2].Position, pos} {
		r, err := f.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetEvent().GetPosition() != want {
			t.Fatalf("followed %d, want %d", r.GetEvent().GetPosition(), want)
		}
	}
}

// VerifyOrder and VerifyLog count the events of a broken order alike: the
// events read up to its first break. VerifyOrder counted every event of
// the order (7 of 8 where VerifyLog said 3, the third one deleted).
func TestVerifyCountsTheEventsUpToTheBreakAlike(t *testing.T) {
	e := startB(t, eventstore.WithMutableStream())
	ctx := t.Context()
	id, _ := lifecycle(t, e)
	recs, err := e.store.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.js.Stream(ctx, e.nstore.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, recs[2].Position); err != nil {
		t.Fatal(err)
	}
	v, err := e.audit.VerifyOrder(ctx, &ordersv1.VerifyOrderRequest{OrderId: id})
	if err != nil || v.GetOk() {
		t.Fatalf("VerifyOrder with its third event deleted: %v, %v; want a break", v, err)
	}
	s, err := e.audit.VerifyLog(ctx, &ordersv1.VerifyLogRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var fromLog *ordersv1.VerifyOrderResponse
	for {
		r, err := s.Recv()
		if err != nil {
			break
		}
		if b := r.GetBroken(); b.GetOrderId() == id {
			fromLog = b
		}
	}
	if v.GetEventsChecked() != 3 || fromLog.GetEventsChecked() != 3 {
		t.Fatalf("events checked up to a break at version %d: VerifyOrder %d, VerifyLog %d; want 3 each (two, then the one after the gap)",
			v.GetFirstBreak().GetVersion(), v.GetEventsChecked(), fromLog.GetEventsChecked())
	}
}
