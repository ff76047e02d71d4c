package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/backoff"
)

// An append whose proposal the stream leader holds without a quorum is not
// known to have failed: its retry meets it "in process" (10158), and once a
// follower is back it lands. So the store reports ErrUnavailable (maybe
// appended; retry the same request), never ErrConflict, which a command
// with an expected revision answers ABORTED, "another change landed
// first", for a change that then lands.
func TestAppendWithoutQuorumIsUnavailableNotConflict(t *testing.T) {
	c := estest.StartCluster(t, 3)
	_, all := estest.ConnectURL(t, c.URLs())
	ctx := t.Context()
	setup := estest.ReplicatedStore(t, all)
	ev := func(rid string) eventstore.EventData { return estest.Event("Test", rid, rid) }
	if _, err := setup.Append(ctx, "no-quorum", 0, []eventstore.EventData{ev("nq-1")}); err != nil {
		t.Fatal(err)
	}
	st, err := all.Stream(ctx, setup.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	leader := c.Index(st.CachedInfo().Cluster.Leader)
	_, js := estest.ConnectURL(t, c.Servers[leader].ClientURL())
	store := estest.ReplicatedStore(t, js)
	if _, err := store.LoadLatest(ctx, "no-quorum"); err != nil { // the order's version is known
		t.Fatal(err)
	}
	for i := range c.Servers {
		if i != leader {
			c.Stop(i)
		}
	}
	actx, cancel := context.WithTimeout(ctx, 4*time.Second)
	_, err = store.Append(actx, "no-quorum", 1, []eventstore.EventData{ev("nq-2")})
	cancel()
	if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append without a quorum: %v; want ErrUnavailable", err)
	}
	c.Start((leader + 1) % len(c.Servers))
	// The retry of the same request, once the quorum is back, is answered
	// with what landed: the first try's event or its own, never a conflict.
	for attempt := 1; ; attempt++ {
		res, err := store.Append(ctx, "no-quorum", 1, []eventstore.EventData{ev("nq-2")})
		if err == nil {
			if res.Version != 2 {
				t.Fatalf("retry answered version %d, want 2", res.Version)
			}
			break
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || attempt == 100 {
			t.Fatalf("retry %d once a follower is back: %v", attempt, err)
		}
		if err := backoff.Sleep(ctx, retryBackoff.Delay(attempt)); err != nil {
			t.Fatal(err)
		}
	}
}
