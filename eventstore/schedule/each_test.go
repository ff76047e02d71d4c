package schedule_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/schedule"
)

// A read whose connection closes under it ends at once with the client's
// error, rather than hang: nats.go rebuilt its ordered consumer before each
// fetch, without the read's context, for ever, and the RPC listing the
// deadlines never returned. The read's context has no deadline here, so
// only the closed connection can end it.
func TestEachEndsWhenItsConnectionCloses(t *testing.T) {
	nc, _, s := lateTimers(t)
	done := make(chan error, 1)
	go func() {
		first := true
		done <- s.Each(t.Context(), func(string, []byte) {
			if first {
				first = false
				nc.Close()
			}
		}, "timers.late.>")
	}()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("a read cut off by its closed connection: %v, want ErrConnectionClosed", err)
		}
	case <-time.After(20 * time.Second): // bounds the test's wait, not the read
		t.Fatal("the read was still running 20 s after its connection closed")
	}
}

// A read whose stream is deleted under it ends at once with the server's
// refusal, rather than try its fetch again until its context ends (here
// never: the test's own context). The stream is deleted as the last message
// of the first fetch (1000, the most one reads) is handled, when that fetch
// has ended by its count: a deletion during a fetch ends it with the
// consumer deleted, which ended the read before the fix too, so only one
// between fetches tells.
func TestEachEndsWhenItsStreamIsDeleted(t *testing.T) {
	_, js, s := lateTimers(t)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- s.Each(t.Context(), func(string, []byte) {
			if n++; n == 1000 {
				if err := js.DeleteStream(t.Context(), "TIMERS"); err != nil {
					t.Error(err)
				}
			}
		}, "timers.late.>")
	}()
	select {
	case err := <-done:
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("read of a deleted stream: %v, want ErrStreamNotFound", err)
		}
	case <-time.After(20 * time.Second): // bounds the test's wait, not the read
		t.Fatal("the read of a deleted stream was still running after 20 s")
	}
}

// lateTimers starts a server and a schedule holding more timers than one
// fetch reads.
func lateTimers(t *testing.T) (*nats.Conn, jetstream.JetStream, *schedule.Stream) {
	t.Helper()
	srv := estest.StartServer(t)
	nc, js := estest.Connect(t, srv)
	s, err := schedule.New(js, "TIMERS", "timers", schedule.WithMemoryStorage())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		if err := s.Put(t.Context(), fmt.Sprintf("timers.late.%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	return nc, js, s
}
