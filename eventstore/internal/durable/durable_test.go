package durable

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// fakeJS hands out fakeConsumer; the rest of jetstream.JetStream is not
// called.
type fakeJS struct {
	jetstream.JetStream
	cons *fakeConsumer
}

func (f fakeJS) CreateOrUpdateConsumer(context.Context, string, jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return f.cons, nil
}

// fakeConsumer keeps the delivery callback Consume is given, so the test
// can call it when the client would.
type fakeConsumer struct {
	jetstream.Consumer
	deliver jetstream.MessageHandler
}

func (c *fakeConsumer) Consume(h jetstream.MessageHandler, _ ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	c.deliver = h
	return stopped{}, nil
}

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
