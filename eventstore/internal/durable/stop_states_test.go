package durable

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// stoppableConsumer is a consumer whose consume context the test stops (the
// client stopping on its own), and which the server says still exists.
type stoppableConsumer struct {
	jetstream.Consumer
	deliver   jetstream.MessageHandler
	cc        *running
	consuming chan struct{}
	// asked gets a value when the subscription asks whether the consumer
	// still exists (Info): how it reacts to the stop.
	asked chan struct{}
}

func (c *stoppableConsumer) Consume(h jetstream.MessageHandler, _ ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	c.deliver = h
	c.cc = &running{done: make(chan struct{})}
	close(c.consuming)
	return c.cc, nil
}

func (c *stoppableConsumer) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	select {
	case c.asked <- struct{}{}:
	default:
	}
	return &jetstream.ConsumerInfo{}, nil
}

type stoppableJS struct {
	jetstream.JetStream
	cons *stoppableConsumer
}

func (f stoppableJS) CreateOrUpdateConsumer(context.Context, string, jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return f.cons, nil
}

// "until ctx ends (it then returns nil)": ctx ends while a handler runs,
// and the pulls Consume now keeps up meanwhile stop on their own (the
// connection closed, or the consumer deleted, during the drain). Consume
// returned ErrStopped for a ctx that had ended first (and, pinned, skipped
// the unpin, which this test has no group to show).
func TestEndedCtxReturnsNilEvenIfPullsStopDuringDrain(t *testing.T) {
	cons := &stoppableConsumer{consuming: make(chan struct{}), asked: make(chan struct{}, 1)}
	busy, release := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, stoppableJS{cons: cons}, Config{Stream: "S", Name: "n", Workers: 1, MaxPending: 10}, func(jetstream.Msg) {
			close(busy)
			<-release
		})
	}()
	<-cons.consuming
	var naks atomic.Int64
	cons.deliver(nakMsg{naks: &naks})
	<-busy
	cancel()
	cons.cc.Stop()
	// The handler is released only once the subscription has seen the
	// stop, so it sees it during the drain.
	<-cons.asked
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("ctx ended first, Consume returned %v, want nil", err)
	}
}
