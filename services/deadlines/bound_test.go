package deadlines_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/services/deadlines"
)

// probeFired schedules a probe timer due in one second on the DEADLINES
// stream (outside the firings the manager consumes) and waits until the
// server has fired it: the server fires its timers in due order, so every
// timer due before the probe has fired by then too.
func probeFired(t *testing.T, e *env) {
	t.Helper()
	timers := e.timers(t)
	const target = deadlines.SubjectRoot + ".probe.fired"
	if err := timers.Schedule(t.Context(), deadlines.SubjectRoot+".probe.sched", target, time.Now().Add(time.Second), []byte("probe"), "probe"); err != nil {
		t.Fatal(err)
	}
	st, err := e.js.Stream(t.Context(), deadlines.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polling the server
		if _, err := st.GetLastMsgForSubject(t.Context(), target); err == nil {
			return
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the probe timer never fired")
		}
	}
}

// The longest payment timeout taken is one the server's timers hold: an
// order placed under it is not cancelled at once (past 2262 the timer's
// time wraps into the past, and it fired at once).
func TestLongestPaymentTimeoutDoesNotCancelAtOnce(t *testing.T) {
	e := start(t)
	m, _ := e.run(t, deadlines.MaxTimeout, time.Hour)
	id := e.place(t, "longest-timeout")
	logSettled(t, e) // its schedule is stored
	probeFired(t, e) // every timer due before now+1s has fired
	// Every firing delivered so far has been handled.
	consumerReaches(t, e, deadlines.StreamName, deadlines.FiredConsumer, "the firings were never all handled", func(info *jetstream.ConsumerInfo) bool {
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	if cancelled(t, e, id) {
		t.Fatalf("order %s placed with a payment timeout of the longest timeout was cancelled at once", id)
	}
	ds, _, err := m.List(t.Context(), id, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Fired {
		t.Fatalf("deadlines of %s: %+v; want its payment timeout, pending", id, ds)
	}
}
