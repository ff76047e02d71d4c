package eventstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

type env struct {
	srv   *server.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	store *eventstore.Store
}

// newEnv starts a server and a store on memory storage: these tests are about
// semantics, not durability.
func newEnv(t *testing.T, opts ...eventstore.Option) *env {
	t.Helper()
	srv := estest.StartServer(t)
	nc, js := estest.Connect(t, srv)
	opts = append([]eventstore.Option{eventstore.WithStorage(jetstream.MemoryStorage)}, opts...)
	s, err := eventstore.New(t.Context(), js, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &env{srv: srv, nc: nc, js: js, store: s}
}

func event(typ, data, requestID string) eventstore.EventData {
	return eventstore.EventData{Type: typ, Data: []byte(data), Meta: eventstore.Metadata{RequestID: requestID}}
}

// mustAppend appends at revision rev and returns the order's new revision.
func mustAppend(t *testing.T, s *eventstore.Store, orderID string, rev uint64, evs ...eventstore.EventData) uint64 {
	t.Helper()
	return mustAppendRes(t, s, orderID, rev, evs...).Version
}

func mustAppendRes(t *testing.T, s *eventstore.Store, orderID string, rev uint64, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), orderID, rev, evs)
	if err != nil {
		t.Fatalf("Append(%s, %d, %d events): %v", orderID, rev, len(evs), err)
	}
	if res.Duplicate {
		t.Fatalf("Append(%s, %d): unexpected duplicate at %d", orderID, rev, res.Position)
	}
	if res.Version != rev+uint64(len(evs)) {
		t.Fatalf("Append(%s, %d, %d events): revision %d", orderID, rev, len(evs), res.Version)
	}
	return res
}

func mustLoad(t *testing.T, s *eventstore.Store, orderID string) []eventstore.Recorded {
	t.Helper()
	recs, err := s.Load(t.Context(), orderID)
	if err != nil {
		t.Fatalf("Load(%s): %v", orderID, err)
	}
	return recs
}

func collect(t *testing.T, seq func(func(eventstore.Recorded, error) bool)) []eventstore.Recorded {
	t.Helper()
	var out []eventstore.Recorded
	for r, err := range seq {
		if err != nil {
			t.Fatalf("iteration error after %d events: %v", len(out), err)
		}
		out = append(out, r)
	}
	return out
}

func TestAppendLoadRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600))
	meta := eventstore.Metadata{
		RequestID:     "req-1",
		CorrelationID: "corr-1",
		CausationID:   "cause-1",
		Actor:         "user:alice",
		OccurredAt:    at,
		TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState:    "vendor=opaque",
		Hash:          "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		PrevHash:      "0000000000000000000000000000000000000000000000000000000000000000",
	}
	first := eventstore.EventData{Type: "OrderCreated", Data: []byte{0, 1, 2, 0xff}, Meta: meta}
	res, err := e.store.Append(ctx, "order-1", 0, []eventstore.EventData{first})
	if err != nil || res.Duplicate || res.Position != 1 {
		t.Fatalf("first append = %+v, %v; want position 1", res, err)
	}
	// Another order in between: positions are global, loads are per order.
	mustAppend(t, e.store, "order-2", 0, event("OrderCreated", "other", ""))

	meta2 := meta
	meta2.RequestID = "req-2"
	meta2.CausationID = "cause-2"
	batch := []eventstore.EventData{
		{Type: "ItemAdded", Data: []byte(`{"sku":"a"}`), Meta: meta2},
		{Type: "ItemAdded", Data: nil, Meta: meta2},
		{Type: "OrderPlaced", Data: []byte("x"), Meta: eventstore.Metadata{RequestID: "req-2"}},
	}
	res, err = e.store.Append(ctx, "order-1", 1, batch)
	if err != nil || res.Duplicate || res.Position != 5 {
		t.Fatalf("batch append = %+v, %v; want position 5", res, err)
	}

	got := mustLoad(t, e.store, "order-1")
	want := append([]eventstore.EventData{first}, batch...)
	if len(got) != len(want) {
		t.Fatalf("Load returned %d events, want %d", len(got), len(want))
	}
	wantPos := []uint64{1, 3, 4, 5}
	for i, r := range got {
		w := want[i]
		if r.OrderID != "order-1" || r.Position != wantPos[i] || r.Type != w.Type || !bytes.Equal(r.Data, w.Data) {
			t.Errorf("event %d = {%s %d %s %q}, want {order-1 %d %s %q}", i, r.OrderID, r.Position, r.Type, r.Data, wantPos[i], w.Type, w.Data)
		}
		gm, wm := r.Meta, w.Meta
		if !gm.OccurredAt.Equal(wm.OccurredAt) || gm.OccurredAt.Location() != time.UTC && !gm.OccurredAt.IsZero() {
			t.Errorf("event %d occurred at %v, want %v in UTC", i, gm.OccurredAt, wm.OccurredAt)
		}
		gm.OccurredAt, wm.OccurredAt = time.Time{}, time.Time{}
		if gm != wm {
			t.Errorf("event %d metadata = %+v, want %+v", i, gm, wm)
		}
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("event %d server time %v not recent", i, r.Time)
		}
	}
	if got[0].Meta.OccurredAt.Nanosecond() != 123456789 {
		t.Errorf("nanoseconds lost: %v", got[0].Meta.OccurredAt)
	}

	after, err := e.store.LoadAfter(ctx, "order-1", 3)
	if err != nil || len(after) != 2 || after[0].Position != 4 || after[1].Position != 5 {
		t.Fatalf("LoadAfter(3) = %v, %v; want positions 4, 5", after, err)
	}
	if head, err := e.store.Head(ctx); err != nil || head != 5 {
		t.Fatalf("Head = %d, %v; want 5", head, err)
	}
}

func TestExpectedRevision(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p1 := mustAppend(t, e.store, "o", 0, event("A", "1", ""))

	cases := []struct {
		name string
		rev  uint64
		evs  []eventstore.EventData
	}{
		{"zero on existing order", 0, []eventstore.EventData{event("B", "", "")}},
		{"zero on existing order, batch", 0, []eventstore.EventData{event("B", "", ""), event("C", "", "")}},
		{"revision ahead of the order", p1 + 10, []eventstore.EventData{event("B", "", "")}},
	}
	for _, c := range cases {
		if _, err := e.store.Append(ctx, "o", c.rev, c.evs); !errors.Is(err, eventstore.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", c.name, err)
		}
	}

	p2 := mustAppend(t, e.store, "o", p1, event("B", "2", ""))
	for _, evs := range [][]eventstore.EventData{
		{event("C", "", "")},
		{event("C", "", ""), event("D", "", "")},
	} {
		_, err := e.store.Append(ctx, "o", p1, evs)
		if !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("stale revision with %d events: err = %v, want ErrConflict", len(evs), err)
		}
	}
	mustAppend(t, e.store, "o", p2, event("C", "3", ""))
	if n := len(mustLoad(t, e.store, "o")); n != 3 {
		t.Fatalf("order has %d events, want 3", n)
	}
}

func TestConcurrentWritersOneWins(t *testing.T) {
	e := newEnv(t)
	rev := mustAppend(t, e.store, "contended", 0, event("OrderCreated", "", ""))

	const writers = 50
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			_, err := e.store.Append(t.Context(), "contended", rev, []eventstore.EventData{event("ItemAdded", fmt.Sprint(i), fmt.Sprintf("req-%d", i))})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, eventstore.ErrConflict):
				conflicts.Add(1)
			default:
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	if wins.Load() != 1 || conflicts.Load() != writers-1 {
		t.Fatalf("wins = %d, conflicts = %d; want 1 and %d", wins.Load(), conflicts.Load(), writers-1)
	}
	if n := len(mustLoad(t, e.store, "contended")); n != 2 {
		t.Fatalf("order has %d events, want 2", n)
	}
}

func TestRetriedRequestIsDuplicate(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	t.Run("single event, same revision", func(t *testing.T) {
		p := mustAppendRes(t, e.store, "single", 0, event("OrderCreated", "x", "r1")).Position
		for range 3 {
			res, err := e.store.Append(ctx, "single", 0, []eventstore.EventData{event("OrderCreated", "x", "r1")})
			if err != nil || !res.Duplicate || res.Position != p {
				t.Fatalf("retry = %+v, %v; want duplicate at %d", res, err, p)
			}
		}
		if n := len(mustLoad(t, e.store, "single")); n != 1 {
			t.Fatalf("order has %d events, want 1", n)
		}
	})

	t.Run("single event, after other events", func(t *testing.T) {
		p := mustAppendRes(t, e.store, "later", 0, event("OrderCreated", "", "r2")).Position
		mustAppend(t, e.store, "later", 1, event("ItemAdded", "", "r3"))
		res, err := e.store.Append(ctx, "later", 0, []eventstore.EventData{event("OrderCreated", "", "r2")})
		if err != nil || !res.Duplicate || res.Position != p || res.Version == 0 {
			t.Fatalf("retry = %+v, %v; want duplicate at %d", res, err, p)
		}
	})

	t.Run("batch, same revision and after other events", func(t *testing.T) {
		evs := []eventstore.EventData{event("A", "1", "b1"), event("B", "2", "b1"), event("C", "3", "b1")}
		p := mustAppendRes(t, e.store, "batch", 0, evs...).Position
		res, err := e.store.Append(ctx, "batch", 0, evs)
		if err != nil || !res.Duplicate || res.Position != p || res.Version == 0 {
			t.Fatalf("retry = %+v, %v; want duplicate at %d", res, err, p)
		}
		mustAppend(t, e.store, "batch", 3, event("D", "", "b2"))
		res, err = e.store.Append(ctx, "batch", 0, evs)
		if err != nil || !res.Duplicate || res.Position != p {
			t.Fatalf("retry after more events = %+v, %v; want duplicate at %d", res, err, p)
		}
		if n := len(mustLoad(t, e.store, "batch")); n != 4 {
			t.Fatalf("order has %d events, want 4", n)
		}
	})

	t.Run("request id reused for another order", func(t *testing.T) {
		mustAppend(t, e.store, "first", 0, event("OrderCreated", "", "reused"))
		_, err := e.store.Append(ctx, "second", 0, []eventstore.EventData{event("OrderCreated", "", "reused")})
		var reused *eventstore.RequestReusedError
		if !errors.Is(err, eventstore.ErrRequestReused) || !errors.As(err, &reused) || reused.OrderID != "first" {
			t.Fatalf("err = %v, want ErrRequestReused naming order first", err)
		}
		if n := len(mustLoad(t, e.store, "second")); n != 0 {
			t.Fatalf("second order has %d events, want 0", n)
		}
	})
}

// TestServerDuplicateCheckOrder records which check nats-server applies
// first when a retried message carries both a known Nats-Msg-Id and a stale
// expected subject sequence. Append must report a duplicate either way; the
// log shows what the server itself answers, so that a server upgrade that
// changes it is noticed.
func TestServerDuplicateCheckOrder(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	subj := e.store.Subject("raw")
	msg := func() *nats.Msg {
		return &nats.Msg{Subject: subj, Header: nats.Header{eventstore.HeaderEventType: {"A"}}}
	}
	ack, err := e.js.PublishMsg(ctx, msg(), jetstream.WithMsgID("raw:0"), jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil {
		t.Fatal(err)
	}
	_, single := e.js.PublishMsg(ctx, msg(), jetstream.WithMsgID("raw:0"), jetstream.WithExpectLastSequencePerSubject(0))
	t.Logf("single publish, known id + stale expected sequence: %v", single)

	b1 := []*nats.Msg{msg(), msg()}
	for i, m := range b1 {
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("rawb:%d", i))
	}
	b1[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, fmt.Sprint(ack.Sequence))
	back, err := jetstreamext.PublishMsgBatch(ctx, e.js, b1)
	if err != nil {
		t.Fatal(err)
	}
	b2 := []*nats.Msg{msg(), msg()}
	for i, m := range b2 {
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("rawb:%d", i))
	}
	b2[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, fmt.Sprint(ack.Sequence))
	_, batch := jetstreamext.PublishMsgBatch(ctx, e.js, b2)
	t.Logf("atomic batch, known ids + stale expected sequence: %v", batch)
	if code := apiCode(batch); code != jetstreamext.JSErrCodeBatchPublishDuplicateMsgID {
		t.Errorf("batch retry answered with code %d, want %d (duplicate checked first)", code, jetstreamext.JSErrCodeBatchPublishDuplicateMsgID)
	}
	if head, _ := e.store.Head(ctx); head != back.Sequence {
		t.Errorf("head moved to %d after rejected retries, want %d", head, back.Sequence)
	}
	switch code := apiCode(single); code {
	case jetstream.JSErrCodeStreamWrongLastSequence:
		t.Log("nats-server checks the expected subject sequence before the message id on single publishes (non-clustered); Append resolves it from the order's history")
	case 0:
		t.Log("nats-server checks the message id first on single publishes")
	default:
		t.Errorf("unexpected answer to a retried single publish: %v", single)
	}
}

func apiCode(err error) jetstream.ErrorCode {
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		return apiErr.ErrorCode
	}
	return 0
}

func TestAtomicBatch(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rev := mustAppend(t, e.store, "atomic", 0, event("OrderCreated", "", ""))
	rev = mustAppend(t, e.store, "atomic", rev, event("ItemAdded", "", ""))

	headBefore, _ := e.store.Head(ctx)
	_, err := e.store.Append(ctx, "atomic", rev-1, []eventstore.EventData{event("X", "", ""), event("Y", "", ""), event("Z", "", "")})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale batch: err = %v, want ErrConflict", err)
	}
	if head, _ := e.store.Head(ctx); head != headBefore {
		t.Fatalf("stale batch moved head from %d to %d", headBefore, head)
	}
	if n := len(mustLoad(t, e.store, "atomic")); n != 2 {
		t.Fatalf("stale batch left %d events, want 2", n)
	}

	// Batches land contiguously even while another writer appends to the
	// stream at the same time.
	ctx2, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		var r uint64
		for ctx2.Err() == nil {
			res, err := e.store.Append(ctx2, "noise", r, []eventstore.EventData{event("N", "", "")})
			if err != nil {
				return
			}
			r = res.Version
		}
	})
	for range 10 {
		res, err := e.store.Append(ctx, "atomic", rev, []eventstore.EventData{event("X", "1", ""), event("Y", "2", ""), event("Z", "3", "")})
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
		recs, err := e.store.LoadAfter(ctx, "atomic", res.Position-3)
		if err != nil || len(recs) != 3 {
			t.Fatalf("LoadAfter(%d) = %d events, %v; want 3", rev, len(recs), err)
		}
		for i, r := range recs {
			if want := res.Position - 2 + uint64(i); r.Position != want || r.Type != string(rune('X'+i)) {
				t.Fatalf("batch event %d at %d (%s), want %d (%c)", i, r.Position, r.Type, want, 'X'+i)
			}
			if r.Version != rev+uint64(i)+1 {
				t.Fatalf("batch event %d has version %d, want %d", i, r.Version, rev+uint64(i)+1)
			}
		}
		rev = res.Version
	}
	stop()
	wg.Wait()
}

func TestRead(t *testing.T) {
	e := newEnv(t, eventstore.WithMutableStream()) // to delete events
	ctx := t.Context()
	revs := map[string]uint64{}
	const total = 30
	for i := range total {
		id := fmt.Sprintf("o%d", i%3)
		revs[id] = mustAppend(t, e.store, id, revs[id], event("E", fmt.Sprint(i), ""))
	}
	for _, from := range []uint64{0, 1, 2, 17, total} {
		got := collect(t, e.store.Read(ctx, from))
		start := max(from, 1)
		if len(got) != int(total-start+1) {
			t.Fatalf("Read(%d) returned %d events, want %d", from, len(got), total-start+1)
		}
		for i, r := range got {
			if r.Position != start+uint64(i) || string(r.Data) != fmt.Sprint(r.Position-1) || r.OrderID != fmt.Sprintf("o%d", (r.Position-1)%3) {
				t.Fatalf("Read(%d)[%d] = %+v", from, i, r)
			}
		}
	}
	if got := collect(t, e.store.Read(ctx, total+1)); len(got) != 0 {
		t.Fatalf("Read past the head returned %d events", len(got))
	}

	// Read stops at the head as of the call, even while events keep coming.
	n := 0
	for r, err := range e.store.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			mustAppend(t, e.store, "o0", revs["o0"], event("Late", "", ""))
		}
		if r.Position > total {
			t.Fatalf("Read delivered %d, appended after the call", r.Position)
		}
		n++
	}
	if n != total {
		t.Fatalf("Read delivered %d events, want %d", n, total)
	}

	// Stopping early is fine.
	for range e.store.Read(ctx, 1) {
		break
	}

	// Deleted events are skipped, and a deleted head does not make Read wait.
	st := streamHandle(t, e.js, e.store.StreamName())
	head, _ := e.store.Head(ctx)
	for _, seq := range []uint64{5, head} {
		if err := st.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, e.store.Read(ctx, 1))
	if uint64(len(got)) != head-2 || got[3].Position != 4 || got[4].Position != 6 || got[len(got)-1].Position != head-1 {
		t.Fatalf("Read after deletes returned %d events ending at %d, want %d ending at %d", len(got), got[len(got)-1].Position, head-2, head-1)
	}
	if got := collect(t, e.store.Read(ctx, head)); len(got) != 0 {
		t.Fatalf("Read of a deleted head returned %d events", len(got))
	}

	// A Read that cannot complete because of its ctx says so.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var last error
	for _, err := range e.store.Read(cctx, 1) {
		last = err
	}
	if !errors.Is(last, context.Canceled) {
		t.Fatalf("Read with a cancelled ctx ended with %v, want context.Canceled", last)
	}
}

func TestFollow(t *testing.T) {
	e := newEnv(t)
	rev := mustAppend(t, e.store, "f", 0, event("A", "", ""))
	rev = mustAppend(t, e.store, "f", rev, event("B", "", ""))

	ctx, cancel := context.WithCancel(t.Context())
	type item struct {
		r   eventstore.Recorded
		err error
	}
	got := make(chan item)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r, err := range e.store.Follow(ctx, 2) {
			select {
			case got <- item{r, err}:
			case <-ctx.Done():
			}
		}
	}()
	next := func() eventstore.Recorded {
		t.Helper()
		select {
		case it := <-got:
			if it.err != nil {
				t.Fatalf("Follow: %v", it.err)
			}
			return it.r
		case <-time.After(10 * time.Second):
			t.Fatal("Follow delivered nothing within 10s")
			return eventstore.Recorded{}
		}
	}
	if r := next(); r.Position != 2 || r.Type != "B" {
		t.Fatalf("first followed event = %d %s, want 2 B", r.Position, r.Type)
	}
	// The consumer is live now: events appended from here on arrive too.
	for _, typ := range []string{"C", "D", "E"} {
		res := mustAppendRes(t, e.store, "f", rev, event(typ, "", ""))
		rev = res.Version
		if r := next(); r.Position != res.Position || r.Version != rev || r.Type != typ {
			t.Fatalf("followed event = %d v%d %s, want %d v%d %s", r.Position, r.Version, r.Type, res.Position, rev, typ)
		}
	}
	batchPos := mustAppendRes(t, e.store, "g", 0, event("X", "", ""), event("Y", "", "")).Position
	for _, want := range []uint64{batchPos - 1, batchPos} {
		if r := next(); r.Position != want || r.OrderID != "g" {
			t.Fatalf("followed event = %d %s, want %d g", r.Position, r.OrderID, want)
		}
	}
	cancel()
	select {
	case it := <-got:
		t.Fatalf("Follow yielded %+v after cancel", it)
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not end within 10s of cancel")
	}
}

func TestLoadManyPages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const total = 1200
	var rev uint64
	for b := range total / 100 {
		evs := make([]eventstore.EventData, 100)
		for i := range evs {
			evs[i] = event("E", fmt.Sprint(b*100+i), "")
		}
		rev = mustAppend(t, e.store, "big", rev, evs...)
		mustAppend(t, e.store, fmt.Sprintf("small-%d", b), 0, event("E", "", ""))
	}
	recs := mustLoad(t, e.store, "big")
	if len(recs) != total {
		t.Fatalf("Load returned %d events, want %d", len(recs), total)
	}
	for i, r := range recs {
		if string(r.Data) != fmt.Sprint(i) || i > 0 && r.Position <= recs[i-1].Position {
			t.Fatalf("event %d = position %d data %q", i, r.Position, r.Data)
		}
	}
	after, err := e.store.LoadAfter(ctx, "big", recs[149].Position)
	if err != nil || len(after) != total-150 || after[0].Position != recs[150].Position {
		t.Fatalf("LoadAfter = %d events, %v; want %d from %d", len(after), err, total-150, recs[150].Position)
	}
	head, _ := e.store.Head(ctx)
	if got := collect(t, e.store.Read(ctx, 0)); uint64(len(got)) != head {
		t.Fatalf("Read returned %d events, want %d", len(got), head)
	}

	empty, err := e.store.Load(ctx, "unknown")
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("Load(unknown) = %v, %v; want empty slice", empty, err)
	}
	if none, err := e.store.LoadAfter(ctx, "big", recs[len(recs)-1].Position); err != nil || len(none) != 0 {
		t.Fatalf("LoadAfter(last) = %v, %v; want empty", none, err)
	}
}

func TestInvalidInput(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, id := range []string{"", "a.b", "a*", ">", "a>b", "a b", "a\tb", "a\nb", "\x00", "caf\xe9", strings.Repeat("x", 65)} {
		if _, err := e.store.Append(ctx, id, 0, []eventstore.EventData{event("A", "", "")}); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("Append(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
		if _, err := e.store.Load(ctx, id); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("Load(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
		if _, err := e.store.LoadAfter(ctx, id, 3); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("LoadAfter(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
	}
	for _, id := range []string{strings.Repeat("x", 64), "ord-1_Ü", "01J9Z3"} {
		mustAppend(t, e.store, id, 0, event("A", "", ""))
	}

	if _, err := e.store.Append(ctx, "o", 0, nil); !errors.Is(err, eventstore.ErrEmptyAppend) {
		t.Errorf("empty append: err = %v, want ErrEmptyAppend", err)
	}
	bad := []struct {
		name string
		evs  []eventstore.EventData
	}{
		{"empty type", []eventstore.EventData{{Type: ""}}},
		{"line break in actor", []eventstore.EventData{{Type: "A", Meta: eventstore.Metadata{Actor: "a\r\nNats-Msg-Id: x"}}}},
		{"padded request id", []eventstore.EventData{{Type: "A", Meta: eventstore.Metadata{RequestID: " r"}}}},
		{"mixed request ids", []eventstore.EventData{event("A", "", "r1"), event("B", "", "r2")}},
	}
	for _, b := range bad {
		if _, err := e.store.Append(ctx, "o", 0, b.evs); !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Errorf("%s: err = %v, want ErrInvalidEvent", b.name, err)
		}
	}

	huge := make([]byte, e.nc.MaxPayload())
	if _, err := e.store.Append(ctx, "o", 0, []eventstore.EventData{{Type: "A", Data: huge}}); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("event of max payload: err = %v, want ErrTooLarge", err)
	}
	mustAppend(t, e.store, "near-limit", 0, eventstore.EventData{Type: "A", Data: huge[:len(huge)-1024]})
	many := make([]eventstore.EventData, eventstore.MaxEventsPerAppend+1)
	for i := range many {
		many[i] = event("A", "", "")
	}
	if _, err := e.store.Append(ctx, "o", 0, many); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("%d events: err = %v, want ErrTooLarge", len(many), err)
	}
	if recs := mustLoad(t, e.store, "o"); len(recs) != 0 {
		t.Fatalf("rejected appends wrote %d events", len(recs))
	}
	// The largest batch accepted by default does go through atomically.
	mustAppend(t, e.store, "o", 0, many[1:]...)
}

// LoadLatest answers what Load answers when the replica is current, and
// Get finds every position the stream holds and none it does not. (Reads
// from a lagging replica are tested on a cluster, in test/cluster.)
func TestLoadLatestAndGet(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rev := mustAppend(t, e.store, "o", 0, event("A", "a", "r1"))
	rev = mustAppend(t, e.store, "o", rev, event("B", "b", "r2"), event("C", "c", "r2"))
	mustAppend(t, e.store, "other", 0, event("X", "x", "r3"))
	latest, err := e.store.LoadLatest(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	if want := mustLoad(t, e.store, "o"); !reflect.DeepEqual(latest, want) || len(latest) != 3 {
		t.Fatalf("LoadLatest = %+v, Load = %+v", latest, want)
	}
	if recs, err := e.store.LoadLatest(ctx, "none"); err != nil || len(recs) != 0 {
		t.Fatalf("LoadLatest of an order without events = %v, %v", recs, err)
	}
	if _, err := e.store.LoadLatest(ctx, "a.b"); !errors.Is(err, eventstore.ErrInvalidOrderID) {
		t.Fatalf("LoadLatest(a.b): %v, want ErrInvalidOrderID", err)
	}
	got, err := e.store.Get(ctx, rev)
	if err != nil || !reflect.DeepEqual(got, latest[2]) {
		t.Fatalf("Get(%d) = %+v, %v, want %+v", rev, got, err, latest[2])
	}
	if _, err := e.store.Get(ctx, rev+100); !errors.Is(err, eventstore.ErrEventNotFound) {
		t.Fatalf("Get past the head: %v, want ErrEventNotFound", err)
	}
}

func TestUnavailable(t *testing.T) {
	e := newEnv(t)
	rev := mustAppend(t, e.store, "o", 0, event("A", "", ""))
	e.srv.Shutdown()
	e.srv.WaitForShutdown()

	check := func(name string, f func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := f(ctx)
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", name, err)
		}
		// Generous bound: the point is that the ctx deadline is honoured,
		// not the exact latency.
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s took %v with a 300ms deadline", name, d)
		}
	}
	one := []eventstore.EventData{event("B", "", "r")}
	two := []eventstore.EventData{event("B", "", "r2"), event("C", "", "r2")}
	check("Append", func(ctx context.Context) error { _, err := e.store.Append(ctx, "o", rev, one); return err })
	check("Append batch", func(ctx context.Context) error { _, err := e.store.Append(ctx, "o", rev, two); return err })
	check("Load", func(ctx context.Context) error { _, err := e.store.Load(ctx, "o"); return err })
	check("LoadLatest", func(ctx context.Context) error { _, err := e.store.LoadLatest(ctx, "o"); return err })
	check("Get", func(ctx context.Context) error { _, err := e.store.Get(ctx, rev); return err })
	check("Head", func(ctx context.Context) error { _, err := e.store.Head(ctx); return err })
	check("Read", func(ctx context.Context) error {
		for _, err := range e.store.Read(ctx, 0) {
			return err
		}
		return nil
	})
	check("New", func(ctx context.Context) error {
		_, err := eventstore.New(ctx, e.js, eventstore.WithStorage(jetstream.MemoryStorage))
		return err
	})
	// Follow ends when its ctx does, outage or not, and then without an error.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	start := time.Now()
	for r, err := range e.store.Follow(ctx, 0) {
		t.Errorf("Follow during an outage yielded %+v, %v", r, err)
	}
	cancel()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Follow took %v to end with a 300ms deadline", d)
	}

	// A closed connection fails at once, and the cause stays visible.
	e.nc.Close()
	_, err := e.store.Append(t.Context(), "o", rev, one)
	if !errors.Is(err, eventstore.ErrUnavailable) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("closed connection: err = %v, want ErrUnavailable wrapping nats.ErrConnectionClosed", err)
	}
	check("Load on closed connection", func(ctx context.Context) error { _, err := e.store.Load(ctx, "o"); return err })
}

func TestStreamConfig(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	ctx := t.Context()

	s, err := eventstore.New(ctx, js, eventstore.WithStreamName("EVENTS"), eventstore.WithSubjectPrefix("shop.orders"),
		eventstore.WithStorage(jetstream.MemoryStorage), eventstore.WithDuplicateWindow(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s.StreamName() != "EVENTS" || s.Subject("o1") != "shop.orders.o1" || s.SubjectPrefix() != "shop.orders" {
		t.Fatalf("names: %s %s %s", s.StreamName(), s.Subject("o1"), s.SubjectPrefix())
	}
	info := streamInfo(t, js, "EVENTS")
	c := info.Config
	if !c.AllowDirect || !c.AllowAtomicPublish || c.PersistMode != jetstream.DefaultPersistMode || c.Duplicates != time.Minute ||
		c.Storage != jetstream.MemoryStorage || len(c.Subjects) != 1 || c.Subjects[0] != "shop.orders.*" {
		t.Fatalf("stream config = %+v", c)
	}
	mustAppend(t, s, "o1", 0, event("A", "", ""))

	// Changed options update the stream in place and keep its events.
	s2, err := eventstore.New(ctx, js, eventstore.WithStreamName("EVENTS"), eventstore.WithSubjectPrefix("shop.orders"),
		eventstore.WithStorage(jetstream.MemoryStorage), eventstore.WithDuplicateWindow(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if d := streamInfo(t, js, "EVENTS").Config.Duplicates; d != 5*time.Minute {
		t.Fatalf("duplicate window = %v after update, want 5m", d)
	}
	if n := len(mustLoad(t, s2, "o1")); n != 1 {
		t.Fatalf("events after update = %d, want 1", n)
	}

	if _, err := eventstore.New(ctx, js, eventstore.WithStreamName("EVENTS"), eventstore.WithSubjectPrefix("shop.orders")); err == nil ||
		!strings.Contains(err.Error(), "storage") {
		t.Errorf("storage change: err = %v, want a storage error", err)
	}
	if _, err := eventstore.New(ctx, js, eventstore.WithStreamName("EVENTS"), eventstore.WithSubjectPrefix("shop.orders"),
		eventstore.WithStorage(jetstream.MemoryStorage), eventstore.WithReplicas(3)); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("replicas on a single server: err = %v, want a replicas error", err)
	}

	for name, opt := range map[string]eventstore.Option{
		"stream name with dot": eventstore.WithStreamName("A.B"),
		"empty prefix":         eventstore.WithSubjectPrefix(""),
		"wildcard prefix":      eventstore.WithSubjectPrefix("orders.*"),
		"trailing dot prefix":  eventstore.WithSubjectPrefix("orders."),
		"zero replicas":        eventstore.WithReplicas(0),
		"zero window":          eventstore.WithDuplicateWindow(0),
		"unknown storage":      eventstore.WithStorage(jetstream.StorageType(7)),
	} {
		if _, err := eventstore.New(ctx, js, opt); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// The log is immutable: a new stream refuses deletes and purges, an
// existing stream made the old way is brought to that, and a stream the
// server cannot make immutable is reported, not hidden.
func TestImmutableLog(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	ctx := t.Context()
	refusesRemoval := func(t *testing.T, name string, seq uint64) {
		t.Helper()
		st := streamHandle(t, js, name)
		if err := st.DeleteMsg(ctx, seq); err == nil {
			t.Errorf("%s: delete succeeded", name)
		}
		if err := st.Purge(ctx); err == nil {
			t.Errorf("%s: purge succeeded", name)
		}
		if n := streamInfo(t, js, name).State.Msgs; n != 1 {
			t.Errorf("%s: %d messages after delete and purge, want 1", name, n)
		}
	}

	s, err := eventstore.New(ctx, js, eventstore.WithStreamName("NEW"), eventstore.WithSubjectPrefix("new"), eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Immutable(); err != nil {
		t.Fatalf("new stream: %v", err)
	}
	c := streamInfo(t, js, "NEW").Config
	if !c.DenyDelete || !c.DenyPurge || c.MaxAge != 0 || c.MaxMsgs != -1 || c.MaxMsgsPerSubject != -1 || c.Discard != jetstream.DiscardNew {
		t.Fatalf("new stream config = %+v", c)
	}
	refusesRemoval(t, "NEW", mustAppend(t, s, "o1", 0, event("A", "", "")))

	// A stream created the old way, with limits that delete events.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OLD", Subjects: []string{"old.*"}, Storage: jetstream.MemoryStorage,
		MaxAge: time.Hour, MaxMsgs: 1000, AllowRollup: true, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	s, err = eventstore.New(ctx, js, eventstore.WithStreamName("OLD"), eventstore.WithSubjectPrefix("old"), eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Immutable(); err != nil {
		t.Fatalf("old stream after New: %v", err)
	}
	if c := streamInfo(t, js, "OLD").Config; c.MaxAge != 0 || c.MaxMsgs != -1 || c.AllowRollup {
		t.Fatalf("old stream config after New = %+v", c)
	}
	refusesRemoval(t, "OLD", mustAppend(t, s, "o1", 0, event("A", "", "")))

	// Message schedules cannot be disabled, and they need purges: the store
	// works, and says the log is not immutable.
	estest.MutableStream(t, js, "SCHED", "sched.*")
	s, err = eventstore.New(ctx, js, eventstore.WithStreamName("SCHED"), eventstore.WithSubjectPrefix("sched"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Immutable() == nil {
		t.Fatal("a stream that allows purges is reported immutable")
	}
	mustAppend(t, s, "o1", 0, event("A", "", ""))

	s, err = eventstore.New(ctx, js, eventstore.WithStreamName("MUT"), eventstore.WithSubjectPrefix("mut"),
		eventstore.WithStorage(jetstream.MemoryStorage), eventstore.WithMutableStream())
	if err != nil {
		t.Fatal(err)
	}
	if s.Immutable() == nil {
		t.Fatal("WithMutableStream: reported immutable")
	}
	if err := streamHandle(t, js, "MUT").DeleteMsg(ctx, mustAppend(t, s, "o1", 0, event("A", "", ""))); err != nil {
		t.Fatalf("WithMutableStream: delete: %v", err)
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo()
}

func TestDecodeHelpers(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	p := mustAppend(t, e.store, "d", 0, eventstore.EventData{Type: "A", Data: []byte("payload"), Meta: eventstore.Metadata{Actor: "bob", OccurredAt: at}})

	check := func(via string, r eventstore.Recorded, err error) {
		t.Helper()
		if err != nil || r.OrderID != "d" || r.Position != p || r.Type != "A" || string(r.Data) != "payload" ||
			r.Meta.Actor != "bob" || !r.Meta.OccurredAt.Equal(at) || r.Time.IsZero() {
			t.Errorf("%s: %+v, %v", via, r, err)
		}
	}

	// A projection runner's own ordered consumer.
	cons, err := e.js.OrderedConsumer(ctx, e.store.StreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	r, err := eventstore.DecodeMsg(msg, e.store.SubjectPrefix())
	check("DecodeMsg", r, err)

	raw, err := streamHandle(t, e.js, e.store.StreamName()).GetMsg(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	r, err = eventstore.DecodeRawMsg(raw, e.store.SubjectPrefix())
	check("DecodeRawMsg", r, err)

	batch, err := jetstreamext.GetBatch(ctx, e.js, e.store.StreamName(), 10, jetstreamext.GetBatchSubject(e.store.Subject("d")))
	if err != nil {
		t.Fatal(err)
	}
	for raw, err := range batch {
		if err != nil {
			t.Fatal(err)
		}
		r, err := eventstore.DecodeRawMsg(raw, e.store.SubjectPrefix())
		check("GetBatch + DecodeRawMsg", r, err)
	}

	for name, c := range map[string]struct {
		subject string
		h       nats.Header
	}{
		"other prefix":   {"payments.d", nats.Header{eventstore.HeaderEventType: {"A"}}},
		"nested subject": {"orders.d.x", nats.Header{eventstore.HeaderEventType: {"A"}}},
		"no type":        {"orders.d", nats.Header{}},
		"bad time":       {"orders.d", nats.Header{eventstore.HeaderEventType: {"A"}, eventstore.HeaderOccurredAt: {"yesterday"}}},
	} {
		if _, err := eventstore.RecordedFromMsg(c.subject, 1, time.Now(), c.h, nil, "orders"); !errors.Is(err, eventstore.ErrMalformedEvent) {
			t.Errorf("%s: err = %v, want ErrMalformedEvent", name, err)
		}
	}
}

func streamHandle(t *testing.T, js jetstream.JetStream, name string) jetstream.Stream {
	t.Helper()
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// An order's stream revision is the number of its events, whatever other
// orders do to the log positions; events written before versions were
// recorded are numbered by their place, and appends continue after them.
func TestRevisionIsTheOrdersOwnVersion(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for i := range 3 { // legacy events: no version header
		m := nats.NewMsg(e.store.Subject("old"))
		m.Header.Set(eventstore.HeaderEventType, "E")
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, e.store, fmt.Sprintf("other-%d", i), 0, event("E", "", ""))
	}
	recs := mustLoad(t, e.store, "old")
	for i, r := range recs {
		if r.Version != uint64(i)+1 {
			t.Fatalf("legacy event %d has version %d", i, r.Version)
		}
	}
	// A fresh store knows nothing of the order: it looks the revision up.
	fresh, err := eventstore.New(ctx, e.js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Append(ctx, "old", 2, []eventstore.EventData{event("E", "", "")}); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append at a stale revision: %v, want ErrConflict", err)
	}
	if v := mustAppend(t, fresh, "old", 3, event("E", "", ""), event("E", "", "")); v != 5 {
		t.Fatalf("revision after two more events: %d, want 5", v)
	}
	mustAppend(t, e.store, "other-0", 1, event("E", "", ""))
	if v := mustAppend(t, e.store, "old", 5, event("E", "", "")); v != 6 { // e.store's cache is behind: it looks up
		t.Fatalf("revision: %d, want 6", v)
	}
	got := []uint64{}
	for r, err := range e.store.Read(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if r.OrderID == "old" {
			got = append(got, r.Version)
		}
	}
	if fmt.Sprint(got) != "[0 0 0 4 5 6]" {
		t.Fatalf("versions in the log: %v, want the legacy ones unknown (0), then 4 5 6", got)
	}
}
