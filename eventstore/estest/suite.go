package estest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// Store is what the conformance suite checks: the event log its users
// call, eventstore.Log. eventstore.Store and memstore.Store implement it.
type Store = eventstore.Log

// MaxPayload is the largest event, headers included, that the stores under
// test accept: nats-server's default max payload, and memstore's bound.
const MaxPayload = 1 << 20

// atLimitReserve is the room both stores keep in the max payload for the
// headers the JetStream store adds after its size check (the expected
// sequence, a batch's headers).
const atLimitReserve = 160

// Run runs the conformance suite of the event store: the contract every
// implementation obeys, stated once. open returns a new, empty store for
// one subtest; the subtests run in parallel, so open must be safe to call
// concurrently. A store that also implements BatchStore is held to the
// contract of the batch reads (RunBatchReads), and one that implements
// Subscriber to TestSubscription, as well.
func Run(t *testing.T, open func(t *testing.T) Store) {
	for _, c := range []struct {
		name string
		test func(*testing.T, Store)
	}{
		{"AppendLoadRoundTrip", testRoundTrip},
		{"ExpectedRevision", testExpectedRevision},
		{"ConcurrentWritersOneWins", testConcurrentWriters},
		{"RetriedRequestIsDuplicate", testDuplicates},
		{"RequestIDReusedForAnotherOrder", testRequestReused},
		{"AtomicBatch", testAtomicBatch},
		{"BatchesAreContiguous", testContiguousBatches},
		{"Read", testRead},
		{"ReadCutShort", testReadCutShort},
		{"Follow", testFollow},
		{"FollowFromTheStart", testFollowFromStart},
		{"LoadManyPages", testLoadManyPages},
		{"InvalidInput", testInvalidInput},
		{"LimitsOfOneAppend", testLimits},
		{"LoadLatestAndGet", testLoadLatestAndGet},
		{"VersionsArePerOrder", testVersions},
		{"Subscription", subscriptionCase(TestSubscription)},
		{"SubscriptionRedeliversAfterAckWait", subscriptionCase(testRedelivery)},
		{"SubscriptionWorkers", subscriptionCase(testWorkers)},
		{"SubscriptionDeliveryAnswersOnce", subscriptionCase(testAnswersOnce)},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.test(t, open(t))
		})
	}
	for _, c := range batchBehaviours {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, ok := open(t).(BatchStore)
			if !ok {
				t.Skip("the store has no batch reads")
			}
			c.test(t, s)
		})
	}
}

// Event returns an event of type typ with data and a request id, for tests.
func Event(typ, data, requestID string) eventstore.EventData {
	return eventstore.EventData{Type: typ, Data: []byte(data), Meta: eventstore.Metadata{RequestID: requestID}}
}

// MustAppend appends evs to an order at revision rev and returns the
// result. It fails t on an error, a duplicate, or a revision after the
// append that is not rev plus the number of events.
func MustAppend(t testing.TB, s Store, orderID string, rev uint64, evs ...eventstore.EventData) eventstore.AppendResult {
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

// MustLoad loads an order's events, failing t on an error.
func MustLoad(t testing.TB, s Store, orderID string) []eventstore.Recorded {
	t.Helper()
	recs, err := s.Load(t.Context(), orderID)
	if err != nil {
		t.Fatalf("Load(%s): %v", orderID, err)
	}
	return recs
}

// Collect gathers the events of a finite iteration, failing t on an error.
func Collect(t testing.TB, seq iter.Seq2[eventstore.Recorded, error]) []eventstore.Recorded {
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

// positions returns the positions of recs, to compare in one message.
func positions(recs []eventstore.Recorded) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

func testRoundTrip(t *testing.T, s Store) {
	ctx := t.Context()
	meta := eventstore.Metadata{
		RequestID:          "req-1",
		RequestFingerprint: "fp-1",
		CorrelationID:      "corr-1",
		CausationID:        "cause-1",
		Actor:              "user:alice",
		OccurredAt:         time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600)),
		TraceParent:        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState:         "vendor=opaque",
		Hash:               "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		PrevHash:           "0000000000000000000000000000000000000000000000000000000000000000",
	}
	first := eventstore.EventData{Type: "OrderCreated", Data: []byte{0, 1, 2, 0xff}, Meta: meta}
	if res := MustAppend(t, s, "order-1", 0, first); res.Position != 1 {
		t.Fatalf("first append at position %d, want 1", res.Position)
	}
	// Another order in between: positions are global, loads are per order.
	MustAppend(t, s, "order-2", 0, Event("OrderCreated", "other", ""))
	meta2 := meta
	meta2.RequestID, meta2.CausationID = "req-2", "cause-2"
	batch := []eventstore.EventData{
		{Type: "ItemAdded", Data: []byte(`{"sku":"a"}`), Meta: meta2},
		{Type: "ItemAdded", Data: nil, Meta: meta2},
		{Type: "OrderPlaced", Data: []byte("x"), Meta: eventstore.Metadata{RequestID: "req-2"}},
	}
	if res := MustAppend(t, s, "order-1", 1, batch...); res.Position != 5 {
		t.Fatalf("batch append at position %d, want 5", res.Position)
	}
	got := MustLoad(t, s, "order-1")
	want := append([]eventstore.EventData{first}, batch...)
	if fmt.Sprint(positions(got)) != "[1 3 4 5]" {
		t.Fatalf("Load positions = %v, want [1 3 4 5]", positions(got))
	}
	for i, r := range got {
		checkRecorded(t, i, r, "order-1", uint64(i)+1, want[i])
	}
	if ns := got[0].Meta.OccurredAt.Nanosecond(); ns != 123456789 {
		t.Errorf("occurred-at nanoseconds = %d, want 123456789", ns)
	}
	after, err := s.LoadAfter(ctx, "order-1", 3)
	if err != nil || fmt.Sprint(positions(after)) != "[4 5]" {
		t.Fatalf("LoadAfter(3) = %v, %v; want positions [4 5]", positions(after), err)
	}
	if head, err := s.Head(ctx); err != nil || head != 5 {
		t.Fatalf("Head = %d, %v; want 5", head, err)
	}
}

// checkRecorded compares event i as read back with what was appended: the
// same type, data and metadata, the occurrence time in UTC, and a recent
// store time.
func checkRecorded(t *testing.T, i int, r eventstore.Recorded, orderID string, version uint64, w eventstore.EventData) {
	t.Helper()
	if r.OrderID != orderID || r.Version != version || r.Type != w.Type || !bytes.Equal(r.Data, w.Data) {
		t.Errorf("event %d = {%s v%d %s %q}, want {%s v%d %s %q}", i, r.OrderID, r.Version, r.Type, r.Data, orderID, version, w.Type, w.Data)
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
		t.Errorf("event %d stored at %v, not recently", i, r.Time)
	}
}

func testExpectedRevision(t *testing.T, s Store) {
	ctx := t.Context()
	rev := MustAppend(t, s, "o", 0, Event("A", "1", "")).Version
	for _, c := range []struct {
		name string
		rev  uint64
		evs  []eventstore.EventData
	}{
		{"zero on existing order", 0, []eventstore.EventData{Event("B", "", "")}},
		{"zero on existing order, batch", 0, []eventstore.EventData{Event("B", "", ""), Event("C", "", "")}},
		{"revision ahead of the order", rev + 10, []eventstore.EventData{Event("B", "", "")}},
		{"revision of an order without events", 1, nil},
	} {
		id := "o"
		if c.evs == nil {
			id, c.evs = "none", []eventstore.EventData{Event("B", "", "")}
		}
		if _, err := s.Append(ctx, id, c.rev, c.evs); !errors.Is(err, eventstore.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", c.name, err)
		}
	}
	rev2 := MustAppend(t, s, "o", rev, Event("B", "2", "")).Version
	for _, evs := range [][]eventstore.EventData{
		{Event("C", "", "")},
		{Event("C", "", ""), Event("D", "", "")},
	} {
		if _, err := s.Append(ctx, "o", rev, evs); !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("stale revision with %d events: err = %v, want ErrConflict", len(evs), err)
		}
	}
	MustAppend(t, s, "o", rev2, Event("C", "3", ""))
	if n := len(MustLoad(t, s, "o")); n != 3 {
		t.Fatalf("order has %d events, want 3", n)
	}
	if n := len(MustLoad(t, s, "none")); n != 0 {
		t.Fatalf("refused appends wrote %d events", n)
	}
}

func testConcurrentWriters(t *testing.T, s Store) {
	rev := MustAppend(t, s, "contended", 0, Event("OrderCreated", "", "")).Version
	const writers = 50
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			_, err := s.Append(t.Context(), "contended", rev, []eventstore.EventData{Event("ItemAdded", fmt.Sprint(i), fmt.Sprintf("req-%d", i))})
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
	if n := len(MustLoad(t, s, "contended")); n != 2 {
		t.Fatalf("order has %d events, want 2", n)
	}
}

// WantDuplicate appends evs to orderID at revision rev as a retry and
// fails t unless the store answers with orig, the original's result, and
// writes nothing (its head does not move).
func WantDuplicate(t *testing.T, s Store, orderID string, rev uint64, orig eventstore.AppendResult, evs ...eventstore.EventData) {
	t.Helper()
	head, _ := s.Head(t.Context())
	res, err := s.Append(t.Context(), orderID, rev, evs)
	if err != nil || !res.Duplicate || res.Position != orig.Position || res.Version != orig.Version {
		t.Fatalf("retry at revision %d = %+v, %v; want duplicate at %d, revision %d", rev, res, err, orig.Position, orig.Version)
	}
	if after, _ := s.Head(t.Context()); after != head {
		t.Fatalf("a duplicate moved the head from %d to %d", head, after)
	}
}

func testDuplicates(t *testing.T, s Store) {
	t.Run("single event, same revision", func(t *testing.T) {
		orig := MustAppend(t, s, "single", 0, Event("OrderCreated", "x", "r1"))
		for range 3 {
			WantDuplicate(t, s, "single", 0, orig, Event("OrderCreated", "x", "r1"))
		}
		if n := len(MustLoad(t, s, "single")); n != 1 {
			t.Fatalf("order has %d events, want 1", n)
		}
	})
	t.Run("single event, after other events", func(t *testing.T) {
		orig := MustAppend(t, s, "later", 0, Event("OrderCreated", "", "r2"))
		MustAppend(t, s, "later", 1, Event("ItemAdded", "", "r3"))
		WantDuplicate(t, s, "later", 0, orig, Event("OrderCreated", "", "r2"))
	})
	t.Run("batch, same revision and after other events", func(t *testing.T) {
		evs := []eventstore.EventData{Event("A", "1", "b1"), Event("B", "2", "b1"), Event("C", "3", "b1")}
		orig := MustAppend(t, s, "batch", 0, evs...)
		WantDuplicate(t, s, "batch", 0, orig, evs...)
		MustAppend(t, s, "batch", 3, Event("D", "", "b2"))
		WantDuplicate(t, s, "batch", 0, orig, evs...)
		if n := len(MustLoad(t, s, "batch")); n != 4 {
			t.Fatalf("order has %d events, want 4", n)
		}
	})
	// A retry may carry fewer events than its original (the store knows a
	// request by its id): the answer is the original's last event all the
	// same, at the original's revision and after it.
	t.Run("one event of a batch request", func(t *testing.T) {
		evs := []eventstore.EventData{Event("A", "1", "b3"), Event("B", "2", "b3"), Event("C", "3", "b3")}
		orig := MustAppend(t, s, "part", 0, evs...)
		WantDuplicate(t, s, "part", 0, orig, evs[0])
		WantDuplicate(t, s, "part", 3, orig, evs[0])
	})
	// A retry whose expected revision already counts the original, as
	// after its caller reloaded the order following an answer that never
	// came, is a duplicate too, not a conflict or a second append.
	t.Run("revision already counting the original", func(t *testing.T) {
		evs := []eventstore.EventData{Event("A", "1", "b4"), Event("B", "2", "b4")}
		orig := MustAppend(t, s, "counted", 0, evs...)
		WantDuplicate(t, s, "counted", 2, orig, evs...)
		single := MustAppend(t, s, "counted-one", 0, Event("OrderCreated", "", "r5"))
		MustAppend(t, s, "counted-one", 1, Event("ItemAdded", "", "r6"))
		WantDuplicate(t, s, "counted-one", 1, single, Event("OrderCreated", "", "r5"))
		WantDuplicate(t, s, "counted-one", 2, single, Event("OrderCreated", "", "r5"))
		if n := len(MustLoad(t, s, "counted-one")); n != 2 {
			t.Fatalf("order has %d events, want 2", n)
		}
	})
	// The store knows requests by their id alone: telling a retry from
	// another request under the same id (the fingerprint in the events'
	// metadata) is left to the caller, which the first result lets do.
	t.Run("same request id, other content", func(t *testing.T) {
		first := Event("OrderCreated", "first", "r4")
		first.Meta.RequestFingerprint = "fp-first"
		orig := MustAppend(t, s, "content", 0, first)
		other := Event("OrderCreated", "second", "r4")
		other.Meta.RequestFingerprint = "fp-second"
		WantDuplicate(t, s, "content", 0, orig, other)
		recs := MustLoad(t, s, "content")
		if len(recs) != 1 || string(recs[0].Data) != "first" || recs[0].Meta.RequestFingerprint != "fp-first" {
			t.Fatalf("order holds %+v, want only the first request's event", recs)
		}
	})
}

func testRequestReused(t *testing.T, s Store) {
	ctx := t.Context()
	orig := MustAppend(t, s, "first", 0, Event("OrderCreated", "", "reused"))
	_, err := s.Append(ctx, "second", 0, []eventstore.EventData{Event("OrderCreated", "", "reused")})
	var reused *eventstore.RequestReusedError
	if !errors.Is(err, eventstore.ErrRequestReused) || !errors.As(err, &reused) ||
		reused.OrderID != "first" || reused.RequestID != "reused" || reused.Position != orig.Position {
		t.Fatalf("err = %v, want a RequestReusedError naming order first at %d", err, orig.Position)
	}
	// A batch under a request id already used elsewhere is refused too
	// (the JetStream store may only know the id was used, ErrConflict).
	MustAppend(t, s, "third", 0, Event("A", "", "reused-batch"), Event("B", "", "reused-batch"))
	_, err = s.Append(ctx, "fourth", 0, []eventstore.EventData{Event("A", "", "reused-batch"), Event("B", "", "reused-batch")})
	if !errors.Is(err, eventstore.ErrRequestReused) && !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("batch: err = %v, want ErrRequestReused or ErrConflict", err)
	}
	// At a revision the order is not at, the revision is what is wrong,
	// whoever used the request id: ErrConflict (the JetStream server checks
	// the order's sequence before message ids).
	if _, err := s.Append(ctx, "second", 5, []eventstore.EventData{Event("OrderCreated", "", "reused")}); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("at a stale revision: err = %v, want ErrConflict", err)
	}
	for _, id := range []string{"second", "fourth"} {
		if n := len(MustLoad(t, s, id)); n != 0 {
			t.Fatalf("order %s has %d events, want 0", id, n)
		}
	}
}

func testAtomicBatch(t *testing.T, s Store) {
	ctx := t.Context()
	rev := MustAppend(t, s, "atomic", 0, Event("OrderCreated", "", "")).Version
	rev = MustAppend(t, s, "atomic", rev, Event("ItemAdded", "", "")).Version
	headBefore, _ := s.Head(ctx)
	_, err := s.Append(ctx, "atomic", rev-1, []eventstore.EventData{Event("X", "", ""), Event("Y", "", ""), Event("Z", "", "")})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale batch: err = %v, want ErrConflict", err)
	}
	// An invalid event anywhere in a batch refuses all of it.
	bad := []eventstore.EventData{Event("X", "", ""), {Type: ""}, Event("Z", "", "")}
	if _, err := s.Append(ctx, "atomic", rev, bad); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("batch with an invalid event: err = %v, want ErrInvalidEvent", err)
	}
	if head, _ := s.Head(ctx); head != headBefore {
		t.Fatalf("refused batches moved the head from %d to %d", headBefore, head)
	}
	if n := len(MustLoad(t, s, "atomic")); n != 2 {
		t.Fatalf("refused batches left %d events, want 2", n)
	}
}

// Batches land contiguously, with consecutive versions, even while another
// writer appends at the same time.
func testContiguousBatches(t *testing.T, s Store) {
	ctx := t.Context()
	rev := MustAppend(t, s, "atomic", 0, Event("OrderCreated", "", "")).Version
	ctx2, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		var r uint64
		for ctx2.Err() == nil {
			res, err := s.Append(ctx2, "noise", r, []eventstore.EventData{Event("N", "", "")})
			if err != nil {
				return
			}
			r = res.Version
		}
	})
	defer wg.Wait()
	defer stop()
	for range 10 {
		res := MustAppend(t, s, "atomic", rev, Event("X", "1", ""), Event("Y", "2", ""), Event("Z", "3", ""))
		recs, err := s.LoadAfter(ctx, "atomic", res.Position-3)
		if err != nil || len(recs) != 3 {
			t.Fatalf("LoadAfter(%d) = %d events, %v; want 3", res.Position-3, len(recs), err)
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
}

// appendRound appends total events round robin to orders o0, o1, o2, event
// i with data i, so that the event at position p has data p-1 and belongs
// to order o((p-1)%3). It returns the orders' revisions.
func appendRound(t *testing.T, s Store, total int) map[string]uint64 {
	t.Helper()
	revs := map[string]uint64{}
	for i := range total {
		id := fmt.Sprintf("o%d", i%3)
		revs[id] = MustAppend(t, s, id, revs[id], Event("E", fmt.Sprint(i), "")).Version
	}
	return revs
}

func testRead(t *testing.T, s Store) {
	ctx := t.Context()
	const total = 30
	revs := appendRound(t, s, total)
	for _, from := range []uint64{0, 1, 2, 17, total} {
		got := Collect(t, s.Read(ctx, from))
		start := max(from, 1)
		if len(got) != int(total-start+1) {
			t.Fatalf("Read(%d) returned %d events, want %d", from, len(got), total-start+1)
		}
		for i, r := range got {
			p := start + uint64(i)
			if r.Position != p || string(r.Data) != fmt.Sprint(p-1) || r.OrderID != fmt.Sprintf("o%d", (p-1)%3) || r.Version != (p-1)/3+1 {
				t.Fatalf("Read(%d)[%d] = %+v", from, i, r)
			}
		}
	}
	if got := Collect(t, s.Read(ctx, total+1)); len(got) != 0 {
		t.Fatalf("Read past the head returned %d events", len(got))
	}
	// Read stops at the head as of the call, even while events keep coming.
	n := 0
	for r, err := range s.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			MustAppend(t, s, "o0", revs["o0"], Event("Late", "", ""))
		}
		if r.Position > total {
			t.Fatalf("Read delivered %d, appended after the call", r.Position)
		}
		n++
	}
	if n != total {
		t.Fatalf("Read delivered %d events, want %d", n, total)
	}
	for _, err := range s.Read(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		break // stopping early is fine
	}
}

// A Read that cannot complete because of its ctx says so, and a deadline
// counts as unavailable.
func testReadCutShort(t *testing.T, s Store) {
	appendRound(t, s, 3)
	last := func(ctx context.Context) error {
		var last error
		for _, err := range s.Read(ctx, 1) {
			last = err
		}
		return last
	}
	cctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := last(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled ctx ended with %v, want context.Canceled", err)
	}
	dctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if err := last(dctx); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Read past its deadline ended with %v, want ErrUnavailable", err)
	}
}

// follower runs Follow in a goroutine and hands over what it yields.
type follower struct {
	t      *testing.T
	got    chan followed
	done   chan struct{}
	cancel context.CancelFunc
}

type followed struct {
	r   eventstore.Recorded
	err error
}

func follow(t *testing.T, s Store, from uint64) *follower {
	ctx, cancel := context.WithCancel(t.Context())
	f := &follower{t: t, got: make(chan followed), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		for r, err := range s.Follow(ctx, from) {
			select {
			case f.got <- followed{r, err}:
			case <-ctx.Done():
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

// next returns the next event followed, failing the test on an error or
// when none arrives within 10 seconds.
func (f *follower) next() eventstore.Recorded {
	f.t.Helper()
	select {
	case it := <-f.got:
		if it.err != nil {
			f.t.Fatalf("Follow: %v", it.err)
		}
		return it.r
	case <-time.After(10 * time.Second):
		f.t.Fatal("Follow delivered nothing within 10s")
		return eventstore.Recorded{}
	}
}

// stop cancels the Follow and fails the test unless it ends without
// yielding anything more.
func (f *follower) stop() {
	f.t.Helper()
	f.cancel()
	select {
	case it := <-f.got:
		f.t.Fatalf("Follow yielded %+v after cancel", it)
	case <-f.done:
	case <-time.After(10 * time.Second):
		f.t.Fatal("Follow did not end within 10s of cancel")
	}
}

func testFollow(t *testing.T, s Store) {
	rev := MustAppend(t, s, "f", 0, Event("A", "", "")).Version
	rev = MustAppend(t, s, "f", rev, Event("B", "", "")).Version
	f := follow(t, s, 2) // resumes from a position
	if r := f.next(); r.Position != 2 || r.Type != "B" || r.Version != 2 {
		t.Fatalf("first followed event = %d v%d %s, want 2 v2 B", r.Position, r.Version, r.Type)
	}
	// Events appended from here on arrive too.
	for _, typ := range []string{"C", "D", "E"} {
		res := MustAppend(t, s, "f", rev, Event(typ, "", ""))
		rev = res.Version
		if r := f.next(); r.Position != res.Position || r.Version != rev || r.Type != typ {
			t.Fatalf("followed event = %d v%d %s, want %d v%d %s", r.Position, r.Version, r.Type, res.Position, rev, typ)
		}
	}
	batchPos := MustAppend(t, s, "g", 0, Event("X", "", ""), Event("Y", "", "")).Position
	for _, want := range []uint64{batchPos - 1, batchPos} {
		if r := f.next(); r.Position != want || r.OrderID != "g" {
			t.Fatalf("followed event = %d %s, want %d g", r.Position, r.OrderID, want)
		}
	}
	f.stop()
}

// Follow from the beginning of an empty log waits for the first event, and
// a Follow from a position after the head waits for that position.
func testFollowFromStart(t *testing.T, s Store) {
	all, ahead := follow(t, s, 0), follow(t, s, 3)
	for i := range 4 {
		res := MustAppend(t, s, fmt.Sprintf("o%d", i), 0, Event("A", fmt.Sprint(i), ""))
		if r := all.next(); r.Position != res.Position || string(r.Data) != fmt.Sprint(i) {
			t.Fatalf("Follow(0) event = %d %q, want %d %q", r.Position, r.Data, res.Position, fmt.Sprint(i))
		}
	}
	for _, want := range []uint64{3, 4} {
		if r := ahead.next(); r.Position != want {
			t.Fatalf("Follow(3) event at %d, want %d", r.Position, want)
		}
	}
	all.stop()
	ahead.stop()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for r, err := range s.Follow(ctx, 0) {
		t.Fatalf("Follow with an ended ctx yielded %+v, %v", r, err)
	}
}

func testLoadManyPages(t *testing.T, s Store) {
	ctx := t.Context()
	const total = 1200
	var rev uint64
	for b := range total / 100 {
		evs := make([]eventstore.EventData, 100)
		for i := range evs {
			evs[i] = Event("E", fmt.Sprint(b*100+i), "")
		}
		rev = MustAppend(t, s, "big", rev, evs...).Version
		MustAppend(t, s, fmt.Sprintf("small-%d", b), 0, Event("E", "", ""))
	}
	recs := MustLoad(t, s, "big")
	if len(recs) != total {
		t.Fatalf("Load returned %d events, want %d", len(recs), total)
	}
	for i, r := range recs {
		if string(r.Data) != fmt.Sprint(i) || r.Version != uint64(i)+1 || i > 0 && r.Position <= recs[i-1].Position {
			t.Fatalf("event %d = position %d version %d data %q", i, r.Position, r.Version, r.Data)
		}
	}
	after, err := s.LoadAfter(ctx, "big", recs[149].Position)
	if err != nil || len(after) != total-150 || after[0].Position != recs[150].Position {
		t.Fatalf("LoadAfter = %d events, %v; want %d from %d", len(after), err, total-150, recs[150].Position)
	}
	head, _ := s.Head(ctx)
	if got := Collect(t, s.Read(ctx, 0)); uint64(len(got)) != head {
		t.Fatalf("Read returned %d events, want %d", len(got), head)
	}
	empty, err := s.Load(ctx, "unknown")
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("Load(unknown) = %v, %v; want an empty slice", empty, err)
	}
	if none, err := s.LoadAfter(ctx, "big", recs[len(recs)-1].Position); err != nil || none == nil || len(none) != 0 {
		t.Fatalf("LoadAfter(last) = %v, %v; want an empty slice", none, err)
	}
}

func testInvalidInput(t *testing.T, s Store) {
	ctx := t.Context()
	for _, id := range []string{"", "a.b", "a*", ">", "a>b", "a b", "a\tb", "a\nb", "\x00", "caf\xe9", strings.Repeat("x", 65)} {
		if _, err := s.Append(ctx, id, 0, []eventstore.EventData{Event("A", "", "")}); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("Append(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
		if _, err := s.Load(ctx, id); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("Load(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
		if _, err := s.LoadAfter(ctx, id, 3); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("LoadAfter(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
		if _, err := s.LoadLatest(ctx, id); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("LoadLatest(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
		if _, err := s.LoadLatestAfter(ctx, id, 3); !errors.Is(err, eventstore.ErrInvalidOrderID) {
			t.Errorf("LoadLatestAfter(%q): err = %v, want ErrInvalidOrderID", id, err)
		}
	}
	for _, id := range []string{strings.Repeat("x", 64), "ord-1_Ü", "01J9Z3"} {
		MustAppend(t, s, id, 0, Event("A", "", ""))
	}
	if _, err := s.Append(ctx, "o", 0, nil); !errors.Is(err, eventstore.ErrEmptyAppend) {
		t.Errorf("empty append: err = %v, want ErrEmptyAppend", err)
	}
	for _, b := range []struct {
		name string
		evs  []eventstore.EventData
	}{
		{"empty type", []eventstore.EventData{{Type: ""}}},
		{"line break in actor", []eventstore.EventData{{Type: "A", Meta: eventstore.Metadata{Actor: "a\r\nNats-Msg-Id: x"}}}},
		{"padded request id", []eventstore.EventData{{Type: "A", Meta: eventstore.Metadata{RequestID: " r"}}}},
		{"mixed request ids", []eventstore.EventData{Event("A", "", "r1"), Event("B", "", "r2")}},
		{"trailing space in type", []eventstore.EventData{{Type: "A "}}},
		// RFC 3339 writes such a year but cannot read it back: the order
		// could never be loaded again.
		{"occurred in year 10000", []eventstore.EventData{{Type: "A", Meta: eventstore.Metadata{OccurredAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
		{"occurred before year 0", []eventstore.EventData{{Type: "A", Meta: eventstore.Metadata{OccurredAt: time.Date(-1, 12, 31, 0, 0, 0, 0, time.UTC)}}}},
	} {
		if _, err := s.Append(ctx, "o", 0, b.evs); !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Errorf("%s: err = %v, want ErrInvalidEvent", b.name, err)
		}
	}
	if recs := MustLoad(t, s, "o"); len(recs) != 0 {
		t.Fatalf("refused appends wrote %d events", len(recs))
	}
}

func testLimits(t *testing.T, s Store) {
	ctx := t.Context()
	huge := make([]byte, MaxPayload)
	if _, err := s.Append(ctx, "o", 0, []eventstore.EventData{{Type: "A", Data: huge}}); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("event of max payload: err = %v, want ErrTooLarge", err)
	}
	accepted(t, s, "near-limit", eventstore.EventData{Type: "A", Data: huge[:len(huge)-1024]})
	// At the limit, a request id's message id counts: an event that fits
	// the max payload without it (in the compact header format; the
	// other one only makes it larger) is refused with it.
	withID := eventstore.EventData{Type: "A", Meta: eventstore.Metadata{RequestID: "request-at-the-limit"}}
	_, size, err := eventstore.EncodeEvent(withID, 1)
	if err != nil {
		t.Fatal(err)
	}
	withID.Data = huge[:MaxPayload-size-atLimitReserve]
	if _, err := s.Append(ctx, "at-limit", 0, []eventstore.EventData{withID}); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("event that fits the max payload only without its message id: err = %v, want ErrTooLarge", err)
	}
	many := make([]eventstore.EventData, eventstore.MaxEventsPerAppend+1)
	for i := range many {
		many[i] = Event("A", "", "")
	}
	if _, err := s.Append(ctx, "o", 0, many); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("%d events: err = %v, want ErrTooLarge", len(many), err)
	}
	big := make([]eventstore.EventData, 9)
	for i := range big {
		big[i] = eventstore.EventData{Type: "A", Data: huge[:MaxPayload-2048]}
	}
	if _, err := s.Append(ctx, "o", 0, big); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Errorf("more than %d bytes: err = %v, want ErrTooLarge", eventstore.MaxAppendBytes, err)
	}
	if recs := MustLoad(t, s, "o"); len(recs) != 0 {
		t.Fatalf("refused appends wrote %d events", len(recs))
	}
	// The largest batch accepted does go through, atomically.
	accepted(t, s, "o", many[1:]...)
}

// accepted appends evs, which are large, to an order without events under a
// request id, and fails t unless they are all stored. The JetStream store
// tries a publish again when the first try gets no answer in time (a large
// one may not, on a loaded machine): the request id lets the server
// recognise the second try, which the store then reports as a duplicate.
func accepted(t *testing.T, s Store, orderID string, evs ...eventstore.EventData) {
	t.Helper()
	for i := range evs {
		evs[i].Meta.RequestID = "large-" + orderID
	}
	if _, err := s.Append(t.Context(), orderID, 0, evs); err != nil {
		t.Fatalf("Append(%s, 0, %d events): %v", orderID, len(evs), err)
	}
	if n := len(MustLoad(t, s, orderID)); n != len(evs) {
		t.Fatalf("order %s has %d events, want %d", orderID, n, len(evs))
	}
}

// LoadLatest answers what Load answers on a current store, and Get finds
// every position the log holds and none it does not.
func testLoadLatestAndGet(t *testing.T, s Store) {
	ctx := t.Context()
	MustAppend(t, s, "o", 0, Event("A", "a", "r1"))
	pos := MustAppend(t, s, "o", 1, Event("B", "b", "r2"), Event("C", "c", "r2")).Position
	MustAppend(t, s, "other", 0, Event("X", "x", "r3"))
	latest, err := s.LoadLatest(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	if want := MustLoad(t, s, "o"); !reflect.DeepEqual(latest, want) || len(latest) != 3 {
		t.Fatalf("LoadLatest = %+v, Load = %+v", latest, want)
	}
	if recs, err := s.LoadLatest(ctx, "none"); err != nil || len(recs) != 0 {
		t.Fatalf("LoadLatest of an order without events = %v, %v", recs, err)
	}
	// After a position: the events past it, as Load has them, from before
	// the order's first event, from each of its events, from another
	// order's event after its last and from past the log's end.
	for after, want := range map[uint64][]eventstore.Recorded{0: latest, latest[0].Position: latest[1:], latest[1].Position: latest[2:], pos: {}, pos + 1: {}, pos + 100: {}} {
		got, err := s.LoadLatestAfter(ctx, "o", after)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("LoadLatestAfter(%d) = %+v, %v; want %+v", after, got, err, want)
		}
	}
	got, err := s.Get(ctx, pos)
	if err != nil || !reflect.DeepEqual(got, latest[2]) {
		t.Fatalf("Get(%d) = %+v, %v, want %+v", pos, got, err, latest[2])
	}
	for _, p := range []uint64{0, pos + 2, pos + 100} {
		if _, err := s.Get(ctx, p); !errors.Is(err, eventstore.ErrEventNotFound) {
			t.Fatalf("Get(%d): %v, want ErrEventNotFound", p, err)
		}
	}
}

// An order's revision is the number of its events, whatever other orders
// do to the log positions, and every read reports each event's version.
func testVersions(t *testing.T, s Store) {
	ctx := t.Context()
	revs := appendRound(t, s, 9)
	if fmt.Sprint(revs) != "map[o0:3 o1:3 o2:3]" {
		t.Fatalf("revisions %v, want 3 each", revs)
	}
	res := MustAppend(t, s, "o1", 3, Event("E", "", ""), Event("E", "", ""))
	if res.Version != 5 || res.Position != 11 {
		t.Fatalf("append = %+v, want revision 5 at position 11", res)
	}
	for _, r := range MustLoad(t, s, "o1") {
		got, err := s.Get(ctx, r.Position)
		if err != nil || got.Version != r.Version || got.OrderID != "o1" {
			t.Fatalf("Get(%d) = v%d %s, %v; Load says v%d o1", r.Position, got.Version, got.OrderID, err, r.Version)
		}
	}
	var versions []uint64
	for _, r := range Collect(t, s.Read(ctx, 0)) {
		if r.OrderID == "o1" {
			versions = append(versions, r.Version)
		}
	}
	if fmt.Sprint(versions) != "[1 2 3 4 5]" {
		t.Fatalf("o1's versions in the log: %v, want [1 2 3 4 5]", versions)
	}
}

// subscriptionCase runs test on a store with durable subscriptions, and
// skips it on another.
func subscriptionCase(test func(*testing.T, Subscriber)) func(*testing.T, Store) {
	return func(t *testing.T, s Store) {
		sub, ok := s.(Subscriber)
		if !ok {
			t.Skip("the store has no durable subscriptions")
		}
		test(t, sub)
	}
}

// A delivery left unsettled is delivered again once its ack wait passes,
// with its count.
func testRedelivery(t *testing.T, s Subscriber) {
	res, err := s.Append(t.Context(), "unsettled", 0, []eventstore.EventData{Event("Created", "{}", "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []string
	err = s.Subscribe(ctx, "redelivery", func(d eventstore.Delivery) {
		got = append(got, fmt.Sprint(d.Event.Position, "#", d.NumDelivered))
		if d.NumDelivered > 1 {
			_ = d.Ack()
			cancel()
		}
	}, eventstore.WithAckWait(300*time.Millisecond), eventstore.WithPullExpiry(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]string{fmt.Sprint(res.Position, "#1"), fmt.Sprint(res.Position, "#2")}); fmt.Sprint(got) != want {
		t.Fatalf("deliveries %v, want %s (position#delivery)", got, want)
	}
}

// A delivery answers once: after a Nak, an Ack, Term or InProgress of it
// fails and the event is delivered again, as the JetStream client refuses
// a message it has answered; an Ack after an Ack fails too. A handler that
// acknowledges after handing back (a deferred Ack) loses no event on
// either store.
func testAnswersOnce(t *testing.T, s Subscriber) {
	res, err := s.Append(t.Context(), "answered", 0, []eventstore.EventData{Event("Created", "{}", "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []string
	err = s.Subscribe(ctx, "answers-once", func(d eventstore.Delivery) {
		got = append(got, fmt.Sprint(d.Event.Position, "#", d.NumDelivered))
		if d.NumDelivered == 1 {
			if err := d.Nak(); err != nil {
				t.Errorf("Nak: %v", err)
			}
			for name, after := range map[string]func() error{"Ack": d.Ack, "Term": d.Term, "InProgress": d.InProgress} {
				if after() == nil {
					t.Errorf("%s after a Nak succeeded", name)
				}
			}
			return
		}
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if d.Ack() == nil {
			t.Error("a second Ack succeeded")
		}
		cancel()
	}, eventstore.WithAckWait(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint([]string{fmt.Sprint(res.Position, "#1"), fmt.Sprint(res.Position, "#2")}); fmt.Sprint(got) != want {
		t.Fatalf("deliveries %v, want %s (position#delivery): the event handed back is delivered again", got, want)
	}
}

// WithWorkers runs that many handlers at once.
func testWorkers(t *testing.T, s Subscriber) {
	const workers = 4
	for i := range workers {
		if _, err := s.Append(t.Context(), fmt.Sprint("w-", i), 0, []eventstore.EventData{Event("Created", "{}", "")}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var inFlight, acked atomic.Int32
	all := make(chan struct{})
	err := s.Subscribe(ctx, "workers", func(d eventstore.Delivery) {
		if inFlight.Add(1) == workers {
			close(all)
		}
		select { // every worker holds its delivery until all are held
		case <-all:
		case <-ctx.Done():
			return
		}
		if err := d.Ack(); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if acked.Add(1) == workers {
			cancel()
		}
	}, eventstore.WithWorkers(workers), eventstore.WithMaxPending(workers))
	if err != nil {
		t.Fatal(err)
	}
	if n := acked.Load(); n != workers {
		t.Fatalf("%d deliveries handled at once, want %d", inFlight.Load(), workers)
	}
}
