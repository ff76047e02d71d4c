package schedule_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/schedule"
)

// A read whose connection closes under it ends, with an error, rather than
// hang: nats.go rebuilt its ordered consumer before each fetch, without
// the read's context, for ever, and the RPC listing the deadlines never
// returned.
func TestEachEndsWhenItsConnectionCloses(t *testing.T) {
	srv := estest.StartServer(t)
	nc, js := estest.Connect(t, srv)
	s, err := schedule.New(js, "TIMERS", "timers", schedule.WithMemoryStorage())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1100 { // more than one fetch
		if err := s.Put(t.Context(), fmt.Sprintf("timers.late.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		first := true
		done <- s.Each(ctx, func(string, []byte) {
			if first {
				first = false
				nc.Close()
			}
		}, "timers.late.>")
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read cut off by its closed connection reported success")
		}
	case <-time.After(20 * time.Second): // bounds the test's wait, not the read
		t.Fatal("the read was still running 17 s after its context ended")
	}
}

// A read hands out what the stream held when it began: a timer read as
// pending that fires while the read goes on is not handed out again, as
// its firing, in a later batch.
func TestEachIsAsOfTheCall(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	s, err := schedule.New(js, "TIMERS", "timers", schedule.WithMemoryStorage(), schedule.WithFiredTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Schedule(ctx, "timers.schedule.a", "timers.fired.a", time.Now().Add(time.Second), []byte("a"), "a:1"); err != nil {
		t.Fatal(err)
	}
	for i := range 1100 { // the firing lands beyond the first batch
		if err := s.Put(ctx, fmt.Sprintf("timers.late.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, "TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = s.Each(ctx, func(subject string, _ []byte) {
		if subject == "timers.schedule.a" {
			// Wait, mid-read, for the timer to fire.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := st.GetLastMsgForSubject(ctx, "timers.fired.a"); err == nil {
					break
				} else if !errors.Is(err, jetstream.ErrMsgNotFound) || time.Now().After(deadline) {
					t.Fatalf("the timer's firing: %v", err)
				}
			}
		}
		if !strings.HasPrefix(subject, "timers.late.") {
			got = append(got, subject)
		}
	}, "timers.schedule.>", "timers.fired.>", "timers.late.>")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "timers.schedule.a" {
		t.Fatalf("timer a handed out as %q, want once, as it was when the read began", got)
	}
}
