package schedule_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
