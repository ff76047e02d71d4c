package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// batchStore is what the batch reads' behaviours need of a store, so that
// every implementation of the store can be held to them.
type batchStore interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
	ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
	FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
}

// batchBehaviours is the contract of ReadBatches and FollowBatches.
var batchBehaviours = []struct {
	name string
	test func(*testing.T, batchStore)
}{
	{"ReadBatchesFromTo", testReadBatchesFromTo},
	{"ReadBatchesStopsAtItsHead", testReadBatchesStopsAtHead},
	{"ReadBatchesForOrders", testReadBatchesForOrders},
	{"ReadBatchesStartTime", testReadBatchesStartTime},
	{"ReadBatchesCutShort", testReadBatchesCutShort},
	{"InvalidReadOptions", testInvalidReadOptions},
	{"FollowBatches", testFollowBatches},
	{"FollowBatchesForOrders", testFollowBatchesForOrders},
}

// TestBatchReads holds the JetStream store to the batch reads' contract,
// each behaviour on a stream of its own on one server.
func TestBatchReads(t *testing.T) {
	srv := estest.StartServer(t)
	_, js := estest.Connect(t, srv)
	for i, c := range batchBehaviours {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage),
				eventstore.WithStreamName(fmt.Sprintf("B%d", i)), eventstore.WithSubjectPrefix(fmt.Sprintf("b%d", i)))
			if err != nil {
				t.Fatal(err)
			}
			c.test(t, s)
		})
	}
}

// appendRoundRobin appends n events to orders o0..o(k-1) in turn; event i
// (position i+1 on an empty store) has data i.
func appendRoundRobin(t *testing.T, s batchStore, n, k int) {
	t.Helper()
	revs := map[string]uint64{}
	for i := range n {
		id := fmt.Sprintf("o%d", i%k)
		res, err := s.Append(t.Context(), id, revs[id], []eventstore.EventData{{Type: "E", Data: []byte(fmt.Sprint(i))}})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		revs[id] = res.Version
	}
}

// readAll gathers the entries of a finite batch read, checking each batch's
// size bound, and returns them with the error that ended the read.
func readAll(t *testing.T, seq iter.Seq2[eventstore.Batch, error], size int) ([]eventstore.Entry, error) {
	t.Helper()
	var out []eventstore.Entry
	for b, err := range seq {
		if err != nil {
			return out, err
		}
		if len(b.Entries) == 0 || len(b.Entries) > size {
			t.Fatalf("batch of %d entries, want 1..%d", len(b.Entries), size)
		}
		out = append(out, b.Entries...) // copies: the batch is reused
	}
	return out, nil
}

func entryPositions(es []eventstore.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Position
	}
	return out
}

func span(from, to uint64) []uint64 {
	out := []uint64{}
	for p := from; p <= to; p++ {
		out = append(out, p)
	}
	return out
}

func testReadBatchesFromTo(t *testing.T, s batchStore) {
	ctx := t.Context()
	if got, err := readAll(t, s.ReadBatches(ctx, 0), eventstore.DefaultBatchSize); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches of an empty log = %d entries, %v", len(got), err)
	}
	const total = 30
	appendRoundRobin(t, s, total, 3)
	for _, c := range []struct {
		from  uint64
		opts  []eventstore.ReadOption
		want  []uint64
		batch int
	}{
		{0, nil, span(1, total), eventstore.DefaultBatchSize},
		{1, []eventstore.ReadOption{eventstore.BatchSize(7)}, span(1, total), 7},
		{17, []eventstore.ReadOption{eventstore.BatchSize(1)}, span(17, total), 1},
		{total, nil, span(total, total), eventstore.DefaultBatchSize},
		{total + 1, nil, span(1, 0), eventstore.DefaultBatchSize},
		{5, []eventstore.ReadOption{eventstore.UpTo(12)}, span(5, 12), eventstore.DefaultBatchSize},
		{5, []eventstore.ReadOption{eventstore.UpTo(5)}, span(5, 5), eventstore.DefaultBatchSize},
		{13, []eventstore.ReadOption{eventstore.UpTo(12)}, span(1, 0), eventstore.DefaultBatchSize},
		{0, []eventstore.ReadOption{eventstore.UpTo(0)}, span(1, 0), eventstore.DefaultBatchSize},
		{20, []eventstore.ReadOption{eventstore.UpTo(total + 100)}, span(20, total), eventstore.DefaultBatchSize},
	} {
		got, err := readAll(t, s.ReadBatches(ctx, c.from, c.opts...), c.batch)
		if err != nil || !slices.Equal(entryPositions(got), c.want) {
			t.Fatalf("ReadBatches(%d, %d options) = %v, %v; want %v", c.from, len(c.opts), entryPositions(got), err, c.want)
		}
		for _, e := range got {
			if e.Err != nil || e.Type != "E" || string(e.Data) != fmt.Sprint(e.Position-1) ||
				e.OrderID != fmt.Sprintf("o%d", (e.Position-1)%3) || e.Version != (e.Position-1)/3+1 || e.Time.IsZero() {
				t.Fatalf("ReadBatches(%d) entry %+v", c.from, e)
			}
		}
	}
}

func testReadBatchesStopsAtHead(t *testing.T, s batchStore) {
	ctx := t.Context()
	appendRoundRobin(t, s, 10, 1)
	// Appends during the read extend neither the head taken by the read
	// nor an UpTo bound.
	rev := uint64(10)
	for _, opts := range [][]eventstore.ReadOption{nil, {eventstore.UpTo(10)}} {
		var got []uint64
		for b, err := range s.ReadBatches(ctx, 1, append(opts, eventstore.BatchSize(1))...) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b.Entries[0].Position)
			res, err := s.Append(ctx, "o0", rev, []eventstore.EventData{{Type: "Late"}})
			if err != nil {
				t.Fatal(err)
			}
			rev = res.Version
		}
		if !slices.Equal(got, span(1, 10)) {
			t.Fatalf("ReadBatches with appends during the read = %v, want 1..10", got)
		}
	}
	// Stopping early is fine.
	for range s.ReadBatches(ctx, 1, eventstore.BatchSize(1)) {
		break
	}
}

func testReadBatchesForOrders(t *testing.T, s batchStore) {
	ctx := t.Context()
	appendRoundRobin(t, s, 30, 3)
	got, err := readAll(t, s.ReadBatches(ctx, 0, eventstore.ForOrders("o2", "o0", "o2")), eventstore.DefaultBatchSize)
	var want []uint64
	for p := uint64(1); p <= 30; p++ {
		if (p-1)%3 != 1 {
			want = append(want, p)
		}
	}
	if err != nil || !slices.Equal(entryPositions(got), want) {
		t.Fatalf("ReadBatches(ForOrders o2, o0) = %v, %v; want %v", entryPositions(got), err, want)
	}
	got, err = readAll(t, s.ReadBatches(ctx, 10, eventstore.ForOrders("o1"), eventstore.UpTo(20)), eventstore.DefaultBatchSize)
	if err != nil || !slices.Equal(entryPositions(got), []uint64{11, 14, 17, 20}) {
		t.Fatalf("ReadBatches(10, ForOrders o1, UpTo 20) = %v, %v", entryPositions(got), err)
	}
	if got, err := readAll(t, s.ReadBatches(ctx, 0, eventstore.ForOrders("none")), 1); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches of an order without events = %d entries, %v", len(got), err)
	}
}

func testReadBatchesStartTime(t *testing.T, s batchStore) {
	ctx := t.Context()
	appendRoundRobin(t, s, 10, 2)
	all, err := readAll(t, s.ReadBatches(ctx, 0), eventstore.DefaultBatchSize)
	if err != nil || len(all) != 10 {
		t.Fatalf("ReadBatches = %d entries, %v", len(all), err)
	}
	at := all[5].Time
	first := slices.IndexFunc(all, func(e eventstore.Entry) bool { return !e.Time.Before(at) })
	got, err := readAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(at)), eventstore.DefaultBatchSize)
	if err != nil || !slices.Equal(entryPositions(got), span(uint64(first)+1, 10)) {
		t.Fatalf("ReadBatches(StartTime of position 6) = %v, %v; want %d..10", entryPositions(got), err, first+1)
	}
	got, err = readAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(at), eventstore.ForOrders("o0")), eventstore.DefaultBatchSize)
	if err != nil || len(got) == 0 || got[0].Position < uint64(first)+1 || got[0].OrderID != "o0" {
		t.Fatalf("ReadBatches(StartTime, ForOrders o0) = %v, %v", entryPositions(got), err)
	}
	if got, err := readAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(time.Now().Add(time.Hour))), 1); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches from a future time = %v, %v", entryPositions(got), err)
	}
}

// A read its ctx ends says so, rather than passing for a complete one.
func testReadBatchesCutShort(t *testing.T, s batchStore) {
	appendRoundRobin(t, s, 5, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := readAll(t, s.ReadBatches(ctx, 0), eventstore.DefaultBatchSize); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadBatches with a cancelled ctx ended with %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	n := 0
	var last error
	for _, err := range s.ReadBatches(ctx, 0, eventstore.BatchSize(1), eventstore.UpTo(5)) {
		if last = err; err == nil {
			n++
			cancel()
		}
	}
	if n == 5 || !errors.Is(last, context.Canceled) {
		t.Fatalf("ReadBatches cancelled after its first batch: %d batches, then %v; want an error wrapping context.Canceled", n, last)
	}
}

func testInvalidReadOptions(t *testing.T, s batchStore) {
	ctx := t.Context()
	appendRoundRobin(t, s, 1, 1)
	for _, c := range []struct {
		name   string
		follow bool
		from   uint64
		opt    eventstore.ReadOption
		want   error
	}{
		{"batch size 0", false, 0, eventstore.BatchSize(0), eventstore.ErrInvalidOption},
		{"batch size too large", true, 0, eventstore.BatchSize(eventstore.MaxBatchSize + 1), eventstore.ErrInvalidOption},
		{"negative batch wait", true, 0, eventstore.BatchWait(-time.Second), eventstore.ErrInvalidOption},
		{"UpTo when following", true, 0, eventstore.UpTo(5), eventstore.ErrInvalidOption},
		{"no order", false, 0, eventstore.ForOrders(), eventstore.ErrInvalidOption},
		{"order id with a dot", false, 0, eventstore.ForOrders("a.b"), eventstore.ErrInvalidOrderID},
		{"wildcard order id", true, 0, eventstore.ForOrders("*"), eventstore.ErrInvalidOrderID},
		{"zero start time", false, 0, eventstore.StartTime(time.Time{}), eventstore.ErrInvalidOption},
		{"start time and position", false, 3, eventstore.StartTime(time.Now()), eventstore.ErrInvalidOption},
	} {
		read := s.ReadBatches
		if c.follow {
			read = s.FollowBatches
		}
		n := 0
		for b, err := range read(ctx, c.from, c.opt) {
			if n++; !errors.Is(err, c.want) || len(b.Entries) != 0 {
				t.Errorf("%s: yielded %d entries, %v; want %v", c.name, len(b.Entries), err, c.want)
			}
		}
		if n != 1 {
			t.Errorf("%s: %d yields, want 1", c.name, n)
		}
	}
}

// follower runs FollowBatches in the background, handing over each batch's
// entries (copied) and Pending.
type follower struct {
	batches chan followed
	done    chan struct{}
	cancel  context.CancelFunc
}

type followed struct {
	entries []eventstore.Entry
	pending uint64
	err     error
}

func follow(t *testing.T, s batchStore, from uint64, opts ...eventstore.ReadOption) *follower {
	ctx, cancel := context.WithCancel(t.Context())
	f := &follower{batches: make(chan followed), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		for b, err := range s.FollowBatches(ctx, from, opts...) {
			select {
			case f.batches <- followed{slices.Clone(b.Entries), b.Pending, err}:
			case <-ctx.Done():
			}
		}
	}()
	t.Cleanup(f.stop)
	return f
}

func (f *follower) next(t *testing.T) followed {
	t.Helper()
	select {
	case b := <-f.batches:
		if b.err != nil {
			t.Fatalf("FollowBatches: %v", b.err)
		}
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("FollowBatches delivered nothing within 10s")
		return followed{}
	}
}

// until gathers followed entries until one at position last has come.
func (f *follower) until(t *testing.T, last uint64) []eventstore.Entry {
	t.Helper()
	var out []eventstore.Entry
	for len(out) == 0 || out[len(out)-1].Position < last {
		out = append(out, f.next(t).entries...)
	}
	return out
}

// stop cancels the follow and waits for it to end, which it does without
// an error.
func (f *follower) stop() {
	f.cancel()
	<-f.done
}

func testFollowBatches(t *testing.T, s batchStore) {
	// Started on an empty log, the first batch says the follower is at
	// the head.
	f := follow(t, s, 0)
	if b := f.next(t); len(b.entries) != 0 || b.pending != 0 {
		t.Fatalf("first batch on an empty log: %d entries, pending %d; want none, 0", len(b.entries), b.pending)
	}
	appendRoundRobin(t, s, 6, 2)
	if got := f.until(t, 6); !slices.Equal(entryPositions(got), span(1, 6)) {
		t.Fatalf("followed %v, want 1..6", entryPositions(got))
	}
	f.stop()

	// From a position, behind: small batches report what is left.
	f = follow(t, s, 3, eventstore.BatchSize(1), eventstore.BatchWait(0))
	b := f.next(t)
	if len(b.entries) != 1 || b.entries[0].Position != 3 || b.pending != 3 {
		t.Fatalf("first batch from 3: %v, pending %d; want [3], pending 3", entryPositions(b.entries), b.pending)
	}
	if got := f.until(t, 6); !slices.Equal(entryPositions(got), span(4, 6)) {
		t.Fatalf("followed %v, want 4..6", entryPositions(got))
	}
	f.stop()
}

func testFollowBatchesForOrders(t *testing.T, s batchStore) {
	appendRoundRobin(t, s, 6, 3)
	f := follow(t, s, 2, eventstore.ForOrders("o1", "o2"))
	if got := f.until(t, 6); !slices.Equal(entryPositions(got), []uint64{2, 3, 5, 6}) {
		t.Fatalf("followed %v, want 2 3 5 6", entryPositions(got))
	}
	if _, err := s.Append(t.Context(), "o0", 2, []eventstore.EventData{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), "o2", 2, []eventstore.EventData{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	if got := f.until(t, 8); !slices.Equal(entryPositions(got), []uint64{8}) {
		t.Fatalf("followed %v after two appends, want 8", entryPositions(got))
	}
}

// Messages that are not events are entries with Err set, carrying what
// could be read of them, and the reads go on past them.
func TestBatchReadsDeliverMalformedMessages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	appendRoundRobin(t, e.store, 2, 1)
	m := nats.NewMsg(e.store.Subject("bad"))
	m.Header.Set(eventstore.HeaderHash, "abc")
	m.Header.Set(eventstore.HeaderVersion, "x")
	m.Header.Set(eventstore.HeaderEventType, "E")
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(ctx, "after", 0, []eventstore.EventData{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []eventstore.Entry) {
		t.Helper()
		if !slices.Equal(entryPositions(got), span(1, 4)) {
			t.Fatalf("%s: %v, want 1..4", name, entryPositions(got))
		}
		bad := got[2]
		if !errors.Is(bad.Err, eventstore.ErrMalformedEvent) || bad.OrderID != "bad" || bad.Type != "E" || bad.Meta.Hash != "abc" || bad.Time.IsZero() {
			t.Fatalf("%s: malformed entry %+v", name, bad)
		}
		for _, i := range []int{0, 1, 3} {
			if got[i].Err != nil {
				t.Fatalf("%s: entry %d: %v", name, i, got[i].Err)
			}
		}
	}
	got, err := readAll(t, e.store.ReadBatches(ctx, 0), eventstore.DefaultBatchSize)
	if err != nil {
		t.Fatal(err)
	}
	check("ReadBatches", got)
	check("FollowBatches", follow(t, e.store, 0).until(t, 4))
}

// A follow ends with ErrUnavailable when its connection closes, and a read
// cannot start without one.
func TestBatchReadsConnectionClosed(t *testing.T) {
	e := newEnv(t)
	appendRoundRobin(t, e.store, 1, 1)
	f := follow(t, e.store, 0)
	f.next(t)
	e.nc.Close()
	select {
	case b := <-f.batches:
		if !errors.Is(b.err, eventstore.ErrUnavailable) {
			t.Fatalf("follow after the connection closed: %d entries, %v; want ErrUnavailable", len(b.entries), b.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end within 10s of its connection closing")
	}
	if _, err := readAll(t, e.store.ReadBatches(t.Context(), 0, eventstore.UpTo(1)), 1); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("ReadBatches on a closed connection: %v, want ErrUnavailable", err)
	}
}
