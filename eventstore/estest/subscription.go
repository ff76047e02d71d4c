package estest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// Subscriber is a store with durable subscriptions, as process managers use
// it.
type Subscriber interface {
	Append(ctx context.Context, orderID string, expectedRevision uint64, events []eventstore.EventData) (eventstore.AppendResult, error)
	Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error
}

// TestSubscription states the contract of Subscribe on an empty store s:
// every event is delivered from the beginning, in log order, until it is
// settled; a settled event is not delivered again under the same name;
// one handed back is, with its delivery count; a terminated one is not;
// invalid options and names are refused; one whose context has ended
// returns nil.
func TestSubscription(t *testing.T, s Subscriber) {
	t.Helper()
	var positions []uint64
	for i := range 3 {
		res, err := s.Append(t.Context(), fmt.Sprint("sub-", i), 0, []eventstore.EventData{{Type: "Created", Data: []byte("{}")}})
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		positions = append(positions, res.Position)
	}
	// First subscriber: acknowledges the first, hands the second back
	// once, terminates the third, and acknowledges the redelivery.
	got := consumeUntil(t, s, "contract", 4, func(d eventstore.Delivery) error {
		switch {
		case d.Event.Position == positions[1] && d.NumDelivered == 1:
			return d.Nak()
		case d.Event.Position == positions[2]:
			return d.Term()
		}
		return d.DoubleAck(t.Context())
	})
	// First deliveries come in log order; where the redelivery falls
	// among them is the implementation's business.
	first := slices.DeleteFunc(slices.Clone(got), func(d string) bool { return !strings.HasSuffix(d, "#1") })
	want := []string{fmt.Sprint(positions[0], "#1"), fmt.Sprint(positions[1], "#1"), fmt.Sprint(positions[2], "#1")}
	if !slices.Equal(first, want) || !slices.Contains(got, fmt.Sprint(positions[1], "#2")) {
		t.Fatalf("deliveries %v, want %v and %d#2 (position#delivery)", got, want, positions[1])
	}
	// A new subscriber under the same name gets only what is new.
	res, err := s.Append(t.Context(), "sub-3", 0, []eventstore.EventData{{Type: "Created", Data: []byte("{}")}})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	got = consumeUntil(t, s, "contract", 1, func(d eventstore.Delivery) error { return d.Ack() })
	if want := fmt.Sprint(res.Position, "#1"); len(got) != 1 || got[0] != want {
		t.Fatalf("resumed subscription delivered %v, want [%s]", got, want)
	}
	// Another name starts from the beginning.
	if got = consumeUntil(t, s, "another", 4, func(d eventstore.Delivery) error { return d.Ack() }); len(got) != 4 {
		t.Fatalf("a new subscription delivered %v, want the 4 events", got)
	}
	// Refused as invalid (ErrInvalidOption), which a caller does not
	// retry, unlike an outage.
	for i, opt := range []eventstore.SubscribeOption{eventstore.WithAckWait(0), eventstore.WithWorkers(0), eventstore.WithMaxPending(-1),
		eventstore.WithPinnedGroup("a.b", time.Second), eventstore.WithPinnedGroup("g", 0), eventstore.WithPullExpiry(time.Millisecond)} {
		if err := s.Subscribe(t.Context(), "bad-options", func(eventstore.Delivery) {}, opt); !errors.Is(err, eventstore.ErrInvalidOption) {
			t.Errorf("Subscribe with invalid option %d: %v, want ErrInvalidOption", i, err)
		}
	}
	if err := s.Subscribe(t.Context(), "bad.name", func(eventstore.Delivery) {}); !errors.Is(err, eventstore.ErrInvalidOption) {
		t.Errorf(`Subscribe with the name "bad.name": %v, want ErrInvalidOption`, err)
	}
	// A context that has ended is the end Subscribe waits for, not a
	// failure to subscribe: a caller that subscribes again on an error
	// would take it for an outage.
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Subscribe(ended, "ended", func(d eventstore.Delivery) {
		t.Errorf("delivered %d to a subscription whose context had ended", d.Event.Position)
	}); err != nil {
		t.Errorf("Subscribe with a context that has ended: %v, want nil", err)
	}
}

// consumeUntil subscribes under name until n deliveries were handled by
// settle, and returns them as "position#delivery", in the order handled.
func consumeUntil(t *testing.T, s Subscriber, name string, n int, settle func(eventstore.Delivery) error) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []string
	ready := make(chan struct{})
	err := s.Subscribe(ctx, name, func(d eventstore.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == n {
			_ = d.Nak() // beyond what the test waits for
			return
		}
		if err := settle(d); err != nil {
			t.Errorf("settling %d: %v", d.Event.Position, err)
		}
		got = append(got, fmt.Sprint(d.Event.Position, "#", d.NumDelivered))
		if len(got) == n {
			cancel()
		}
	}, eventstore.WithReady(func() { close(ready) }))
	if err != nil {
		t.Fatalf("Subscribe(%s): %v", name, err)
	}
	select {
	case <-ready:
	default:
		t.Fatalf("Subscribe(%s) returned without calling its ready function", name)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("Subscribe(%s): %d deliveries after 20s, want %d: %v", name, len(got), n, got)
	}
	return got
}
