package deadlines_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/services/deadlines"
)

// A rolling upgrade (or a rollback) runs the previous build beside this
// one. The previous build consumed every firing through "deadlines-fired"
// with the filter deadlines.fired.>, and its List purged what that
// consumer acknowledged on deadlines.fired.>. This build leaves that
// consumer alone: a node of the previous build still receives the shipping
// SLAs' firings, and its List purges only what it handled. Keeping the name
// for the payment timeouts narrowed the filter under those nodes: they no
// longer received shipping firings, and their List purged shipping firings
// no consumer had handled.
func TestPreviousBuildKeepsItsShippingFiringsDuringAnUpgrade(t *testing.T) {
	e := start(t)
	old := e.timers(t)
	const oldName = deadlines.LegacyFiredConsumer // the previous build's one firings' consumer
	oldFilter := deadlines.SubjectRoot + ".fired.>"
	// A node of the previous build follows the firings.
	var mu sync.Mutex
	var got []string
	delivered := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	subscribed := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		done <- old.Subscribe(ctx, oldName, oldFilter, func(m schedule.Msg) {
			mu.Lock()
			got = append(got, m.Subject)
			mu.Unlock()
			_ = m.Ack()
			delivered <- m.Subject
		}, eventstore.WithReady(func() { once.Do(func() { close(subscribed) }) }))
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-subscribed
	// A node of this build starts, then goes (a crash, a rollback).
	m, stop := e.run(t, time.Hour, time.Hour)
	for deadline := time.Now().Add(30 * time.Second); !m.Consuming(); time.Sleep(10 * time.Millisecond) { // polling
		if time.Now().After(deadline) {
			t.Fatal("this build's manager never consumed")
		}
	}
	stop()
	// A shipping SLA fires, then a payment timeout.
	fire := func(kind, order string) uint64 {
		b, _ := json.Marshal(map[string]any{"kind": kind, "order_id": order, "due": time.Now(), "position": 1})
		ack, err := e.js.Publish(t.Context(), deadlines.SubjectRoot+".fired."+kind+"."+order, b)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	shipping := deadlines.SubjectRoot + ".fired.shipping_sla.o-ship"
	fire("shipping_sla", "o-ship")
	paySeq := fire("payment_timeout", "o-pay")
	select {
	case <-delivered:
	case <-time.After(30 * time.Second):
		t.Fatal("the previous build's node got no firing")
	}
	mu.Lock()
	first := got[0]
	mu.Unlock()
	// Delivered in stream order: the shipping firing comes first, if at all.
	if first == shipping {
		return // the previous build's node handled it: its List may purge it
	}
	t.Errorf("the previous build's node, subscribed to %s, got %s first, not the shipping SLA's firing before it: this build narrowed the shared consumer's filter under it", oldFilter, first)
	// Its List purges what its consumer acknowledged.
	consumerReaches(t, e, deadlines.StreamName, oldName, "the payment firing was never acknowledged", func(info *jetstream.ConsumerInfo) bool {
		return info.AckFloor.Stream >= paySeq
	})
	if err := old.PurgeAcked(t.Context(), oldName, oldFilter); err != nil {
		t.Fatal(err)
	}
	st, err := e.js.Stream(t.Context(), deadlines.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(t.Context(), shipping); err != nil {
		t.Errorf("the shipping SLA's firing, handled by no consumer, is gone after the previous build's List: %v", err)
	}
}
