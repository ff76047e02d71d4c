package eventstore_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A stream leader that answers with less of an order than this process saw
// acknowledged is a former leader that has not stepped down yet: LoadLatest
// answers ErrUnavailable, to be retried, rather than the older history,
// from which a command would be rejected on a state the order has left.
// (Such a leader needs a partition to exist; here the process is made to
// remember a later position than the one leader has.)
func TestLoadLatestRefusesALeaderBehindWhatWasAcknowledged(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	s, err := eventstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Immutable(); err != nil {
		t.Fatalf("the store's own stream: %v", err)
	}
	res, err := s.Append(ctx, "o-1", 0, []eventstore.EventData{{Type: "OrderCreated", Data: []byte("created")}})
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := s.LoadLatest(ctx, "o-1"); err != nil || len(recs) != 1 {
		t.Fatalf("LoadLatest with the leader current = %d events, %v", len(recs), err)
	}
	// What a new leader acknowledged to this process while the one that
	// answers below was cut off.
	eventstore.Remember(s, "o-1", 2, res.Position+5)
	eventstore.Remember(s, "o-2", 1, res.Position+6)
	for _, id := range []string{"o-1", "o-2"} {
		if recs, err := s.LoadLatest(ctx, id); !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("LoadLatest(%s) from a leader behind = %d events, %v; want ErrUnavailable", id, len(recs), err)
		}
	}
	if recs, err := s.LoadLatest(ctx, "o-3"); err != nil || len(recs) != 0 {
		t.Errorf("LoadLatest of an order never seen = %d events, %v; want none", len(recs), err)
	}
}

// A leader's answer below what this process saw longer ago than a leader
// takes to step down is no former leader's: the log itself went back (a
// server restarted without its last events). It stands, and the store
// forgets what it remembered of the order; refused, every answer for the
// order was ErrUnavailable for the life of the process.
func TestLoadLatestTakesALogThatWentBack(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	// Any time since is longer than a nanosecond.
	s, err := eventstore.New(ctx, js, eventstore.WithLeaderStepDown(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(ctx, "o-1", 0, []eventstore.EventData{{Type: "OrderCreated", Data: []byte("created")}})
	if err != nil {
		t.Fatal(err)
	}
	eventstore.Remember(s, "o-1", 2, res.Position+5) // an event the log lost since
	recs, err := s.LoadLatest(ctx, "o-1")
	if err != nil || len(recs) != 1 || recs[0].Position != res.Position {
		t.Fatalf("LoadLatest of a log that went back = %d events, %v; want the one it holds", len(recs), err)
	}
	if seen := eventstore.Seen(s, "o-1"); seen != res.Position {
		t.Fatalf("seen %d after the log went back, want %d", seen, res.Position)
	}
	if _, err := eventstore.New(ctx, js, eventstore.WithLeaderStepDown(0)); !errors.Is(err, eventstore.ErrInvalidOption) {
		t.Fatalf("WithLeaderStepDown(0): %v, want ErrInvalidOption", err)
	}
}

// An append acknowledged while LoadLatest's question to the leader is on
// its way is not a leader behind: only what was acknowledged before the
// question was asked must be in the answer. One order takes appends while
// LoadLatest reads it, on a single server, where every answer is the
// leader's.
func TestLoadLatestDuringAppendsIsNotALeaderBehind(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	s, err := eventstore.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	const appends = 300
	done := make(chan error, 1)
	go func() {
		for v := range uint64(appends) {
			if _, err := s.Append(ctx, "o-1", v, []eventstore.EventData{{Type: "ItemAdded", Data: []byte("item")}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			// Once the appends are over, the answer holds them all.
			if recs, err := s.LoadLatest(ctx, "o-1"); err != nil || len(recs) != appends {
				t.Fatalf("LoadLatest after the appends = %d events, %v; want %d", len(recs), err, appends)
			}
			return
		default:
		}
		if _, err := s.LoadLatest(ctx, "o-1"); err != nil {
			t.Fatalf("LoadLatest while the order takes appends: %v", err)
		}
	}
}

// A retried append that the store answers with the original result is
// acknowledged like any other, and counts for LoadLatest's check of the
// leader. After a leader change a publish is retried, and on a replicated
// stream the server answers the retry as a duplicate of the original.
// Another process (a second store on the same stream) retries a request
// the first appended, and must remember the order at the original
// position; without it, a former leader's answer lacking the order would
// be taken for the truth, and a command rejected as if the order did not
// exist.
func TestDuplicateAppendIsRememberedForLoadLatest(t *testing.T) {
	_, js := estest.ConnectURL(t, estest.StartCluster(t, 3).URLs())
	ctx := t.Context()
	first := estest.ReplicatedStore(t, js)
	retrier, err := eventstore.New(ctx, js, eventstore.WithReplicas(3))
	if err != nil {
		t.Fatal(err)
	}
	events := []eventstore.EventData{{Type: "OrderCreated", Data: []byte("created"), Meta: eventstore.Metadata{RequestID: "r-1"}}}
	orig, err := first.Append(ctx, "o-1", 0, events)
	if err != nil {
		t.Fatal(err)
	}
	if n := eventstore.Seen(retrier, "o-1"); n != 0 {
		t.Fatalf("the retrier saw o-1 at %d before it touched it", n)
	}
	res, err := retrier.Append(ctx, "o-1", 0, events)
	if err != nil || !res.Duplicate || res.Position != orig.Position || res.Version != 1 {
		t.Fatalf("retry = %+v, %v; want the original (position %d, version 1) as a duplicate", res, err, orig.Position)
	}
	if n := eventstore.Seen(retrier, "o-1"); n != orig.Position {
		t.Fatalf("after the retry the retrier remembers o-1 at %d, want %d", n, orig.Position)
	}
}

// LoadLatest reads from the leader what a lagging replica did not have.
// When the server answering those questions lacks an event the leader
// named as the order's last (a former leader answering after a partition
// healed), the answer is ErrUnavailable, to be retried: a history cut
// short there would have a command rejected on a state the order has
// left, or as if the order did not exist. On a stream that allows
// deletes the event may have been deleted since, and the history ends
// where the log's does.
func TestLoadLatestRefusesAHistoryCutShortByAFormerLeader(t *testing.T) {
	ctx := t.Context()
	// Three events of o-1, as the store reads them from the start.
	threeEvents := func(e *env) []eventstore.Recorded {
		t.Helper()
		for v := range uint64(3) {
			mustAppend(t, e.store, "o-1", v, eventstore.EventData{Type: "Test", Data: []byte{byte(v)}})
		}
		all, err := e.store.LoadAfter(ctx, "o-1", 0)
		if err != nil || len(all) != 3 {
			t.Fatalf("LoadAfter = %d events, %v", len(all), err)
		}
		return all
	}
	e := newEnv(t)
	all := threeEvents(e)
	last := all[2].Position
	// A replica that had the first event only; the leader has the rest.
	got, err := eventstore.ReadOnFromLeader(ctx, e.store, "o-1", slices.Clone(all[:1]), 0, last, false)
	if err != nil || len(got) != 3 || got[1].Position != all[1].Position || got[2].Position != last || got[2].Version != 3 {
		t.Fatalf("the rest from the leader = %+v, %v; want all three events", got, err)
	}
	// A process that had not seen the order holds it, once read from the
	// leader, at the position the leader gave: a former leader's later
	// answer without it is refused.
	reader, err := eventstore.New(ctx, e.js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventstore.ReadOnFromLeader(ctx, reader, "o-1", slices.Clone(all[:1]), 0, last, false); err != nil {
		t.Fatal(err)
	}
	if n := eventstore.Seen(reader, "o-1"); n != last {
		t.Fatalf("after reading o-1 from the leader the store remembers it at %d, want %d", n, last)
	}
	if _, err := eventstore.ReadOnFromLeader(ctx, e.store, "o-1", slices.Clone(all[:1]), 0, last, true); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("the rest from a former leader: %v, want ErrUnavailable", err)
	}

	// On a stream that allows deletes, the leader itself no longer has
	// the last two events.
	m := newEnv(t, eventstore.WithMutableStream())
	all = threeEvents(m)
	st := streamHandle(t, m.js, m.store.StreamName())
	for _, r := range all[1:] {
		if err := st.DeleteMsg(ctx, r.Position); err != nil {
			t.Fatal(err)
		}
	}
	got, err = eventstore.ReadOnFromLeader(ctx, m.store, "o-1", slices.Clone(all[:1]), 0, all[2].Position, false)
	if err != nil || len(got) != 1 {
		t.Fatalf("with the rest deleted = %d events, %v; want the one read", len(got), err)
	}
}
