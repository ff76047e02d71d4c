package cluster_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/backoff"
)

// On a replicated (R3) stream the leader answers an append whose subject
// already has a proposal in flight with error code 10164 ("wrong last
// sequence", without the number) rather than 10071: concurrent writers with
// the same expected revision meet it. The store reports both as
// ErrConflict, for single appends and atomic batches, and of each round of
// racing appends exactly one lands.
func TestStaleRevisionOnReplicatedStreamIsConflict(t *testing.T) {
	_, js := estest.ConnectURL(t, estest.StartCluster(t, 3).URLs())
	ctx := t.Context()
	store := estest.ReplicatedStore(t, js)
	ev := func(rid string) eventstore.EventData {
		return eventstore.EventData{Type: "Test", Data: []byte(rid), Meta: eventstore.Metadata{RequestID: rid, OccurredAt: time.Now().UTC()}}
	}
	code := func(err error) jetstream.ErrorCode {
		if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
			return apiErr.ErrorCode
		}
		return 0
	}
	first, err := store.Append(ctx, "r3-order", 0, []eventstore.EventData{ev("r3-1")})
	if err != nil {
		t.Fatal(err)
	}
	// The leader acknowledges an append before it stops counting it in
	// flight for its subject, so the next append to the order, sent at
	// once, may meet 10164 with nothing else writing: the command service
	// reloads and retries such a conflict, and so does this setup.
	for attempt := 1; ; attempt++ {
		_, err := store.Append(ctx, "r3-order", first.Version, []eventstore.EventData{ev("r3-2")})
		if err == nil {
			break
		}
		if !errors.Is(err, eventstore.ErrConflict) || code(err) != inFlight || attempt == 100 {
			t.Fatalf("second append, attempt %d: %v", attempt, err)
		}
		if err := backoff.Sleep(ctx, retryBackoff.Delay(attempt)); err != nil {
			t.Fatal(err)
		}
	}
	// A stale revision is refused as a conflict, also here.
	for _, n := range []int{1, 2} {
		evs := make([]eventstore.EventData, n)
		for i := range evs {
			evs[i] = ev(fmt.Sprintf("r3-stale-%d", n))
		}
		if _, err := store.Append(ctx, "r3-order", first.Version, evs); !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("stale append of %d event(s): %v, want ErrConflict", n, err)
		}
	}

	// Racing appends with the same, current revision: one wins per round;
	// the losers are conflicts whichever code the server chose.
	const writers, maxRounds = 16, 50
	seen := map[string]int{} // "single"/"batch" + code → count
	rev := uint64(0)
	id := "r3-race"
	for round := 0; round < maxRounds && seen["single/10164"] == 0; round++ {
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				rid := fmt.Sprintf("race-%d-%d", round, w)
				evs := []eventstore.EventData{ev(rid)}
				if w%2 == 1 {
					evs = append(evs, ev(rid)) // an atomic batch
				}
				_, errs[w] = store.Append(ctx, id, rev, evs)
			})
		}
		wg.Wait()
		won := 0
		for w, err := range errs {
			kind := "single"
			if w%2 == 1 {
				kind = "batch"
			}
			switch {
			case err == nil:
				won++
			case errors.Is(err, eventstore.ErrConflict):
				seen[fmt.Sprintf("%s/%d", kind, code(err))]++
			default:
				t.Fatalf("round %d, %s append: %v, want success or ErrConflict", round, kind, err)
			}
		}
		if won == 0 && allInFlight(errs, code) {
			// The last round's winner was still counted in flight: the
			// round is run again, after the load below.
		} else if won != 1 {
			t.Fatalf("round %d: %d appends with the same expected revision landed, want 1", round, won)
		}
		recs, err := store.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rev = recs[len(recs)-1].Version
	}
	t.Logf("conflict answers by kind/code: %v", seen)
	if seen["single/10164"] == 0 {
		t.Fatalf("no single append was answered 10164 in %d rounds: the replicated-stream code was not exercised (%v)", maxRounds, seen)
	}

	recs, err := store.Load(ctx, "r3-order")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Meta.RequestID != "r3-1" || recs[1].Meta.RequestID != "r3-2" {
		t.Fatalf("stored %+v: the stale appends must leave nothing", recs)
	}
}

// inFlight is the error code of an append refused because its subject has
// another append in flight on the replicated stream's leader (JetStream's
// "wrong last sequence" without the sequence).
const inFlight jetstream.ErrorCode = 10164

// retryBackoff spaces the setup's retries of an append refused as in
// flight.
var retryBackoff = backoff.Policy{Base: time.Millisecond, Cap: 50 * time.Millisecond}

// allInFlight reports whether every append of a round was refused as in
// flight.
func allInFlight(errs []error, code func(error) jetstream.ErrorCode) bool {
	for _, err := range errs {
		if code(err) != inFlight {
			return false
		}
	}
	return true
}
