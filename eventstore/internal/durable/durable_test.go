package durable

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeJS hands out fakeConsumer; the rest of jetstream.JetStream is not
// called.
type fakeJS struct {
	jetstream.JetStream
	cons *fakeConsumer
}

// Conn is no connection: Consume then stops its pulls without draining.
func (f fakeJS) Conn() *nats.Conn { return nil }

func (f fakeJS) CreateOrUpdateConsumer(context.Context, string, jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return f.cons, nil
}

// fakeConsumer keeps the delivery callback Consume is given, so the test
// can call it when the client would. With consuming set, the consume
// context (cc) runs until stopped (the test may stop it, as the client
// stopping on its own) and consuming is closed once deliver is set;
// without, it has already closed. The server says the consumer still
// exists (Info), and asked, when set, gets a value each time it is asked.
type fakeConsumer struct {
	jetstream.Consumer
	deliver   jetstream.MessageHandler
	consuming chan struct{}
	cc        *running
	asked     chan struct{}
}

func (c *fakeConsumer) Consume(h jetstream.MessageHandler, _ ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	c.deliver = h
	if c.consuming == nil {
		return stopped{}, nil
	}
	c.cc = &running{done: make(chan struct{})}
	close(c.consuming)
	return c.cc, nil
}

func (c *fakeConsumer) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	select {
	case c.asked <- struct{}{}:
	default:
	}
	return &jetstream.ConsumerInfo{}, nil
}

// running is a consume context that runs until stopped.
type running struct {
	jetstream.ConsumeContext
	once sync.Once
	done chan struct{}
}

func (r *running) Stop()                   { r.once.Do(func() { close(r.done) }) }
func (r *running) Closed() <-chan struct{} { return r.done }

// stopped is a consume context that has already closed.
type stopped struct{ jetstream.ConsumeContext }

func (stopped) Stop() {}
func (stopped) Closed() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

type nakMsg struct {
	jetstream.Msg
	naks *atomic.Int64
}

func (m nakMsg) Nak() error { m.naks.Add(1); return nil }

// The client may run the delivery callback after the consume context says
// it closed (it did when the connection closed under a consumer): such a
// delivery is handed back, never sent to the stopped workers, which would
// panic on a closed channel.
func TestDeliveryAfterStopIsHandedBack(t *testing.T) {
	cons := &fakeConsumer{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Consume returns at once
	handled := 0
	if err := Consume(ctx, fakeJS{cons: cons}, Config{Stream: "S", Name: "n", Workers: 2, MaxPending: 2}, func(jetstream.Msg) { handled++ }); err != nil {
		t.Fatal(err)
	}
	var naks atomic.Int64
	for range 50 {
		cons.deliver(nakMsg{naks: &naks})
	}
	if naks.Load() != 50 || handled != 0 {
		t.Fatalf("%d of 50 late deliveries handed back, %d handled", naks.Load(), handled)
	}
}

// The client renews its pulls only after the delivery callback returns, so
// a callback that waited for a busy worker would stop the pulls, and a
// pinned subscriber would lose its pin while it still works. Deliveries
// wait in a buffer instead, up to MaxPending (the server's bound), and
// those still there when Consume stops are handed back; one beyond it (a
// redelivery of one still buffered) is left for the server to deliver
// again after AckWait.
func TestDeliveryNeverWaitsForAWorker(t *testing.T) {
	cons := &fakeConsumer{consuming: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	busy, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, fakeJS{cons: cons}, Config{Stream: "S", Name: "n", Workers: 1, MaxPending: 3}, func(jetstream.Msg) {
			if handled.Add(1) == 1 {
				close(busy)
				<-release
			}
		})
	}()
	<-cons.consuming
	var naks atomic.Int64
	cons.deliver(nakMsg{naks: &naks})
	<-busy
	delivered := make(chan struct{})
	go func() {
		for range 4 { // 3 fill the buffer, the 4th is beyond MaxPending
			cons.deliver(nakMsg{naks: &naks})
		}
		close(delivered)
	}()
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("the delivery callback is still waiting for the busy worker")
	}
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if handled.Load() != 1 || naks.Load() != 3 {
		t.Fatalf("%d handled and %d handed back, want the 1 being handled and the 3 buffered", handled.Load(), naks.Load())
	}
}
