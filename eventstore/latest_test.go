package eventstore_test

import (
	"errors"
	"testing"

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
