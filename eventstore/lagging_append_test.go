package eventstore_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// lagRelay forwards the JetStream API under the prefix $LAG.API. to
// $JS.API. (the server answers the caller's inbox directly). While lag is
// set, direct gets, which any replica of a replicated stream may answer,
// are answered "404" as a replica that has not yet applied the order's
// events would; the leader-only message gets still reach the server.
type lagRelay struct{ lag atomic.Bool }

func laggingReplicaStore(t *testing.T, srv interface{ ClientURL() string }) (*eventstore.Store, *lagRelay) {
	t.Helper()
	l := &lagRelay{}
	pnc, _ := estest.ConnectURL(t, srv.ClientURL())
	sub, err := pnc.Subscribe("$LAG.API.>", func(m *nats.Msg) {
		suffix := strings.TrimPrefix(m.Subject, "$LAG.API.")
		if l.lag.Load() && strings.HasPrefix(suffix, "DIRECT.GET.") {
			r := nats.NewMsg(m.Reply)
			r.Header.Set("Status", "404")
			r.Header.Set("Description", "Message Not Found")
			_ = pnc.PublishMsg(r)
			return
		}
		_ = pnc.PublishMsg(&nats.Msg{Subject: "$JS.API." + suffix, Reply: m.Reply, Header: m.Header, Data: m.Data})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := pnc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc, _ := estest.ConnectURL(t, srv.ClientURL())
	js, err := jetstream.NewWithAPIPrefix(nc, "$LAG.API")
	if err != nil {
		t.Fatal(err)
	}
	s, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	return s, l
}

// A batch retried while the replica answering direct gets lags is answered
// as the duplicate of its original, as the leader has it. It was answered
// ErrConflict, for a change that had landed.
func TestBatchRetryWithALaggingReplicaIsItsOriginal(t *testing.T) {
	e := newEnv(t)
	retrier, lag := laggingReplicaStore(t, e.srv)
	batch := func(rid string) []eventstore.EventData {
		return []eventstore.EventData{estest.Event("A", "1", rid), estest.Event("B", "2", rid)}
	}
	// Control: with a current replica the retry is the duplicate.
	orig := estest.MustAppend(t, e.store, "ctl", 0, batch("r-ctl")...)
	estest.WantDuplicate(t, retrier, "ctl", 0, orig, batch("r-ctl")...)

	orig = estest.MustAppend(t, e.store, "o", 0, batch("r-1")...)
	lag.lag.Store(true)
	estest.WantDuplicate(t, retrier, "o", 0, orig, batch("r-1")...)
	lag.lag.Store(false)
}

// A retry of one event of a request, while the replica lags, is answered
// with the original's last event, as the contract (and memstore) says. It
// was answered with the original's first.
func TestRetryOfPartOfARequestIsItsOriginalsLastEvent(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	retrier, lag := laggingReplicaStore(t, e.srv)
	evs := []eventstore.EventData{estest.Event("A", "1", "r-part"), estest.Event("B", "2", "r-part"), estest.Event("C", "3", "r-part")}
	orig := estest.MustAppend(t, e.store, "p", 0, evs...)
	// The retrier knows the order at revision 3 (read from the leader).
	if recs, err := retrier.LoadLatest(ctx, "p"); err != nil || len(recs) != 3 {
		t.Fatalf("LoadLatest = %d, %v", len(recs), err)
	}
	lag.lag.Store(true)
	estest.WantDuplicate(t, retrier, "p", 3, orig, evs[:1]...)
	lag.lag.Store(false)
}

// The version cache forgets no order among the last half of
// maxVersionsKept it was told of: LoadLatest still refuses a former
// leader's older answer for an order acknowledged a moment before. The
// whole cache was emptied once full, then one order dropped at random.
func TestVersionCacheKeepsWhatItSawWhenFull(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	res, err := e.store.Append(ctx, "o-1", 0, []eventstore.EventData{{Type: "OrderCreated"}})
	if err != nil {
		t.Fatal(err)
	}
	// What a newer leader acknowledged, as in
	// TestLoadLatestRefusesALeaderBehindWhatWasAcknowledged.
	eventstore.Remember(e.store, "o-1", 2, res.Position+5)
	if _, err := e.store.LoadLatest(ctx, "o-1"); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("control: %v, want ErrUnavailable", err)
	}
	for i := range eventstore.MaxVersionsKept/2 - 1 {
		eventstore.Remember(e.store, fmt.Sprintf("f-%d", i), 1, 1)
	}
	// One more ordinary append, to another order.
	if _, err := e.store.Append(ctx, "o-2", 0, []eventstore.EventData{{Type: "OrderCreated"}}); err != nil {
		t.Fatal(err)
	}
	if recs, err := e.store.LoadLatest(ctx, "o-1"); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("after another order's append: LoadLatest = %d events, %v (seen now %d); want ErrUnavailable",
			len(recs), err, eventstore.Seen(e.store, "o-1"))
	}
}

// An append at the order's current revision, by a store with nothing of
// the order cached, is not refused because the replica answering its
// direct get lags: the leader decides. It was ErrConflict (an ABORTED
// command that would have been accepted), and the caller's reload from
// the same replica could only make it conflict for real.
func TestAppendAtTheCurrentRevisionWithALaggingReplica(t *testing.T) {
	e := newEnv(t)
	w, lag := laggingReplicaStore(t, e.srv)
	estest.MustAppend(t, e.store, "q", 0, estest.Event("A", "1", "r-a"))
	lag.lag.Store(true)
	defer lag.lag.Store(false)
	if _, err := w.Append(t.Context(), "q", 1, []eventstore.EventData{estest.Event("B", "2", "r-b")}); err != nil {
		t.Fatalf("append at the current revision, the replica behind: %v", err)
	}
	// A revision past the order's is still refused.
	if _, err := w.Append(t.Context(), "q", 5, []eventstore.EventData{estest.Event("C", "3", "r-c")}); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append at a revision the order never had: %v, want ErrConflict", err)
	}
}
