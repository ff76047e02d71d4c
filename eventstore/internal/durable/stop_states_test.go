package durable

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// "until ctx ends (it then returns nil)": ctx ends while a handler runs,
// and the pulls Consume now keeps up meanwhile stop on their own (the
// connection closed, or the consumer deleted, during the drain). Consume
// returned ErrStopped for a ctx that had ended first (and, pinned, skipped
// the unpin, which this test has no group to show).
func TestEndedCtxReturnsNilEvenIfPullsStopDuringDrain(t *testing.T) {
	cons := &fakeConsumer{consuming: make(chan struct{}), asked: make(chan struct{}, 1)}
	busy, release := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Consume(ctx, fakeJS{cons: cons}, Config{Stream: "S", Name: "n", Workers: 1, MaxPending: 10}, func(jetstream.Msg) {
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
