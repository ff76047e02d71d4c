package estest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// BatchStore is what the contract of the batch reads needs of a store.
// eventstore.Store implements it.
type BatchStore interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
	ReadBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
	FollowBatches(ctx context.Context, from uint64, opts ...eventstore.ReadOption) iter.Seq2[eventstore.Batch, error]
}

// batchBehaviours is the contract of ReadBatches and FollowBatches.
var batchBehaviours = []struct {
	name string
	test func(*testing.T, BatchStore)
}{
	{"ReadBatchesFromTo", testReadBatchesFromTo},
	{"ReadBatchesStopsAtItsHead", testReadBatchesStopsAtHead},
	{"ReadBatchesForOrders", testReadBatchesForOrders},
	{"ReadBatchesStartTime", testReadBatchesStartTime},
	{"ReadBatchesCutShort", testReadBatchesCutShort},
	{"InvalidReadOptions", testInvalidReadOptions},
	{"FollowBatches", testFollowBatches},
	{"FollowBatchesForOrders", testFollowBatchesForOrders},
	{"FollowBatchesFromAFutureTime", testFollowBatchesFromAFutureTime},
}

// RunBatchReads runs the contract of the batch reads, ReadBatches and
// FollowBatches, as Run does the store's: open returns a new, empty store
// for one subtest, and must be safe to call concurrently.
func RunBatchReads(t *testing.T, open func(t *testing.T) BatchStore) {
	for _, c := range batchBehaviours {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.test(t, open(t))
		})
	}
}

// AppendRoundRobin appends n events to orders o0..o(k-1) in turn; event i
// (position i+1 on an empty store) has data i.
func AppendRoundRobin(t *testing.T, s BatchStore, n, k int) {
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

// ReadAll gathers the entries of a finite batch read, checking each batch's
// size bound, and returns them with the error that ended the read.
func ReadAll(t *testing.T, seq iter.Seq2[eventstore.Batch, error], size int) ([]eventstore.Entry, error) {
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

// EntryPositions returns the positions of es, to compare in one message.
func EntryPositions(es []eventstore.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Position
	}
	return out
}

// Span returns the positions from..to, empty when to < from.
func Span(from, to uint64) []uint64 {
	out := []uint64{}
	for p := from; p <= to; p++ {
		out = append(out, p)
	}
	return out
}

func testReadBatchesFromTo(t *testing.T, s BatchStore) {
	ctx := t.Context()
	if got, err := ReadAll(t, s.ReadBatches(ctx, 0), eventstore.DefaultBatchSize); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches of an empty log = %d entries, %v", len(got), err)
	}
	const total = 30
	AppendRoundRobin(t, s, total, 3)
	for _, c := range []struct {
		from  uint64
		opts  []eventstore.ReadOption
		want  []uint64
		batch int
	}{
		{0, nil, Span(1, total), eventstore.DefaultBatchSize},
		{1, []eventstore.ReadOption{eventstore.BatchSize(7)}, Span(1, total), 7},
		{17, []eventstore.ReadOption{eventstore.BatchSize(1)}, Span(17, total), 1},
		{total, nil, Span(total, total), eventstore.DefaultBatchSize},
		{total + 1, nil, Span(1, 0), eventstore.DefaultBatchSize},
		{5, []eventstore.ReadOption{eventstore.UpTo(12)}, Span(5, 12), eventstore.DefaultBatchSize},
		{5, []eventstore.ReadOption{eventstore.UpTo(5)}, Span(5, 5), eventstore.DefaultBatchSize},
		{13, []eventstore.ReadOption{eventstore.UpTo(12)}, Span(1, 0), eventstore.DefaultBatchSize},
		{0, []eventstore.ReadOption{eventstore.UpTo(0)}, Span(1, 0), eventstore.DefaultBatchSize},
		{20, []eventstore.ReadOption{eventstore.UpTo(total + 100)}, Span(20, total), eventstore.DefaultBatchSize},
	} {
		got, err := ReadAll(t, s.ReadBatches(ctx, c.from, c.opts...), c.batch)
		if err != nil || !slices.Equal(EntryPositions(got), c.want) {
			t.Fatalf("ReadBatches(%d, %d options) = %v, %v; want %v", c.from, len(c.opts), EntryPositions(got), err, c.want)
		}
		for _, e := range got {
			if e.Err != nil || e.Type != "E" || string(e.Data) != fmt.Sprint(e.Position-1) ||
				e.OrderID != fmt.Sprintf("o%d", (e.Position-1)%3) || e.Version != (e.Position-1)/3+1 || e.Time.IsZero() {
				t.Fatalf("ReadBatches(%d) entry %+v", c.from, e)
			}
		}
	}
}

func testReadBatchesStopsAtHead(t *testing.T, s BatchStore) {
	ctx := t.Context()
	AppendRoundRobin(t, s, 10, 1)
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
		if !slices.Equal(got, Span(1, 10)) {
			t.Fatalf("ReadBatches with appends during the read = %v, want 1..10", got)
		}
	}
	// Stopping early is fine.
	for _, err := range s.ReadBatches(ctx, 1, eventstore.BatchSize(1)) {
		if err != nil {
			t.Fatal(err)
		}
		break
	}
}

func testReadBatchesForOrders(t *testing.T, s BatchStore) {
	ctx := t.Context()
	AppendRoundRobin(t, s, 30, 3)
	got, err := ReadAll(t, s.ReadBatches(ctx, 0, eventstore.ForOrders("o2", "o0", "o2")), eventstore.DefaultBatchSize)
	var want []uint64
	for p := uint64(1); p <= 30; p++ {
		if (p-1)%3 != 1 {
			want = append(want, p)
		}
	}
	if err != nil || !slices.Equal(EntryPositions(got), want) {
		t.Fatalf("ReadBatches(ForOrders o2, o0) = %v, %v; want %v", EntryPositions(got), err, want)
	}
	got, err = ReadAll(t, s.ReadBatches(ctx, 10, eventstore.ForOrders("o1"), eventstore.UpTo(20)), eventstore.DefaultBatchSize)
	if err != nil || !slices.Equal(EntryPositions(got), []uint64{11, 14, 17, 20}) {
		t.Fatalf("ReadBatches(10, ForOrders o1, UpTo 20) = %v, %v", EntryPositions(got), err)
	}
	if got, err := ReadAll(t, s.ReadBatches(ctx, 0, eventstore.ForOrders("none")), 1); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches of an order without events = %d entries, %v", len(got), err)
	}
}

func testReadBatchesStartTime(t *testing.T, s BatchStore) {
	ctx := t.Context()
	AppendRoundRobin(t, s, 10, 2)
	all, err := ReadAll(t, s.ReadBatches(ctx, 0), eventstore.DefaultBatchSize)
	if err != nil || len(all) != 10 {
		t.Fatalf("ReadBatches = %d entries, %v", len(all), err)
	}
	at := all[5].Time
	first := slices.IndexFunc(all, func(e eventstore.Entry) bool { return !e.Time.Before(at) })
	got, err := ReadAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(at)), eventstore.DefaultBatchSize)
	if err != nil || !slices.Equal(EntryPositions(got), Span(uint64(first)+1, 10)) {
		t.Fatalf("ReadBatches(StartTime of position 6) = %v, %v; want %d..10", EntryPositions(got), err, first+1)
	}
	got, err = ReadAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(at), eventstore.ForOrders("o0")), eventstore.DefaultBatchSize)
	if err != nil || len(got) == 0 || got[0].Position < uint64(first)+1 || got[0].OrderID != "o0" {
		t.Fatalf("ReadBatches(StartTime, ForOrders o0) = %v, %v", EntryPositions(got), err)
	}
	if got, err := ReadAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(time.Now().Add(time.Hour))), 1); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches from a future time = %v, %v", EntryPositions(got), err)
	}
	// Times beyond what nanoseconds since 1970 hold in 64 bits read as
	// the times they are, not wrapped around: the log stored nothing
	// after 2262, and everything after 1677.
	if got, err := ReadAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC))), 1); err != nil || len(got) != 0 {
		t.Fatalf("ReadBatches from 2263 = %v, %v; want nothing", EntryPositions(got), err)
	}
	if got, err := ReadAll(t, s.ReadBatches(ctx, 0, eventstore.StartTime(time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC))), eventstore.DefaultBatchSize); err != nil || len(got) != 10 {
		t.Fatalf("ReadBatches from 1600 = %v, %v; want every event", EntryPositions(got), err)
	}
}

// A read its ctx ends says so, rather than passing for a complete one.
func testReadBatchesCutShort(t *testing.T, s BatchStore) {
	AppendRoundRobin(t, s, 5, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ReadAll(t, s.ReadBatches(ctx, 0), eventstore.DefaultBatchSize); !errors.Is(err, context.Canceled) {
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

func testInvalidReadOptions(t *testing.T, s BatchStore) {
	ctx := t.Context()
	AppendRoundRobin(t, s, 1, 1)
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
		{"busy wait after no batch", true, 0, eventstore.BusyWait(0, time.Millisecond), eventstore.ErrInvalidOption},
		{"negative busy wait", true, 0, eventstore.BusyWait(1, -time.Millisecond), eventstore.ErrInvalidOption},
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

// Follower runs FollowBatches in the background, handing over each batch's
// entries (copied) and Pending.
type Follower struct {
	Batches chan Followed // each step of the follow, its error included
	done    chan struct{}
	cancel  context.CancelFunc
}

// Followed is one step of a Follower: a batch's entries and Pending, or
// the error that ended the follow.
type Followed struct {
	Entries []eventstore.Entry
	Pending uint64
	Err     error
}

// Follow starts a Follower of s from position from, stopped when t ends.
func Follow(t *testing.T, s BatchStore, from uint64, opts ...eventstore.ReadOption) *Follower {
	ctx, cancel := context.WithCancel(t.Context())
	f := &Follower{Batches: make(chan Followed), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(f.done)
		for b, err := range s.FollowBatches(ctx, from, opts...) {
			select {
			case f.Batches <- Followed{slices.Clone(b.Entries), b.Pending, err}:
			case <-ctx.Done():
			}
		}
	}()
	t.Cleanup(f.Stop)
	return f
}

// Next returns the next batch, failing t on an error or when none comes
// within 10 seconds.
func (f *Follower) Next(t *testing.T) Followed {
	t.Helper()
	select {
	case b := <-f.Batches:
		if b.Err != nil {
			t.Fatalf("FollowBatches: %v", b.Err)
		}
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("FollowBatches delivered nothing within 10s")
		return Followed{}
	}
}

// Until gathers followed entries until one at position last has come.
func (f *Follower) Until(t *testing.T, last uint64) []eventstore.Entry {
	t.Helper()
	var out []eventstore.Entry
	for len(out) == 0 || out[len(out)-1].Position < last {
		out = append(out, f.Next(t).Entries...)
	}
	return out
}

// Stop cancels the follow and waits for it to end, which it does without
// an error.
func (f *Follower) Stop() {
	f.cancel()
	<-f.done
}

func testFollowBatches(t *testing.T, s BatchStore) {
	// Started on an empty log, the first batch says the follower is at
	// the head.
	f := Follow(t, s, 0)
	if b := f.Next(t); len(b.Entries) != 0 || b.Pending != 0 {
		t.Fatalf("first batch on an empty log: %d entries, pending %d; want none, 0", len(b.Entries), b.Pending)
	}
	AppendRoundRobin(t, s, 6, 2)
	if got := f.Until(t, 6); !slices.Equal(EntryPositions(got), Span(1, 6)) {
		t.Fatalf("Followed %v, want 1..6", EntryPositions(got))
	}
	f.Stop()

	// From a position, behind: small batches report what is left.
	f = Follow(t, s, 3, eventstore.BatchSize(1), eventstore.BatchWait(0))
	b := f.Next(t)
	if len(b.Entries) != 1 || b.Entries[0].Position != 3 || b.Pending != 3 {
		t.Fatalf("first batch from 3: %v, pending %d; want [3], pending 3", EntryPositions(b.Entries), b.Pending)
	}
	if got := f.Until(t, 6); !slices.Equal(EntryPositions(got), Span(4, 6)) {
		t.Fatalf("Followed %v, want 4..6", EntryPositions(got))
	}
	f.Stop()

	// Waiting for more while the log is busy delays batches, never drops
	// or reorders their events.
	f = Follow(t, s, 0, eventstore.BusyWait(1, 20*time.Millisecond))
	for i := range 4 {
		if _, err := s.Append(t.Context(), fmt.Sprint("busy", i), 0, []eventstore.EventData{{Type: "E"}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.Until(t, 10); !slices.Equal(EntryPositions(got), Span(1, 10)) {
		t.Fatalf("Followed with BusyWait %v, want 1..10", EntryPositions(got))
	}
	f.Stop()
}

func testFollowBatchesForOrders(t *testing.T, s BatchStore) {
	AppendRoundRobin(t, s, 6, 3)
	f := Follow(t, s, 2, eventstore.ForOrders("o1", "o2"))
	if got := f.Until(t, 6); !slices.Equal(EntryPositions(got), []uint64{2, 3, 5, 6}) {
		t.Fatalf("Followed %v, want 2 3 5 6", EntryPositions(got))
	}
	if _, err := s.Append(t.Context(), "o0", 2, []eventstore.EventData{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), "o2", 2, []eventstore.EventData{{Type: "E"}}); err != nil {
		t.Fatal(err)
	}
	if got := f.Until(t, 8); !slices.Equal(EntryPositions(got), []uint64{8}) {
		t.Fatalf("Followed %v after two appends, want 8", EntryPositions(got))
	}
}

// A follow that starts at a time nothing is stored at or after yet
// delivers the events stored from that time on, not those appended
// meanwhile but stored before it: an export of "everything from midnight"
// started the evening before holds nothing of that evening.
func testFollowBatchesFromAFutureTime(t *testing.T, s BatchStore) {
	AppendRoundRobin(t, s, 2, 1)
	from := time.Now().Add(time.Second)
	f := Follow(t, s, 0, eventstore.StartTime(from))
	if b := f.Next(t); len(b.Entries) != 0 {
		t.Fatalf("first batch of a follow from a future time: %v; want none", EntryPositions(b.Entries))
	}
	before, err := s.Append(t.Context(), "early", 0, []eventstore.EventData{{Type: "E"}})
	if err != nil {
		t.Fatal(err)
	}
	// Wall-clock time itself is what is waited for: the next event must
	// be stored after from.
	time.Sleep(time.Until(from))
	after, err := s.Append(t.Context(), "late", 0, []eventstore.EventData{{Type: "E"}})
	if err != nil {
		t.Fatal(err)
	}
	got := f.Until(t, after.Position)
	early, _ := ReadAll(t, s.ReadBatches(t.Context(), before.Position, eventstore.UpTo(before.Position)), 1)
	if len(early) == 1 && !early[0].Time.Before(from) {
		t.Skipf("the first append was stored at %v, after the follow's start %v (a slow run): nothing to show", early[0].Time, from)
	}
	if !slices.Equal(EntryPositions(got), []uint64{after.Position}) {
		t.Fatalf("Followed from %v: %v; want only %d, the one event stored after it", from, EntryPositions(got), after.Position)
	}
}
