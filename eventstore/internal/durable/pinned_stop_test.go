package durable_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/internal/durable"
)

// A pinned holder that is stopped while its handler still runs does not let
// a standby handle a later message before that handler returns ("the
// server delivers to one of them at a time"). Consume stopped pulling as
// soon as ctx ended, so the pin ran out after PinnedTTL while the handler
// still ran, and the standby was pinned and handled the next message at the
// same time. The standby gets it once the handler has returned.
func TestStoppedHolderKeepsThePinUntilItsHandlersReturn(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("1")); err != nil {
		t.Fatal(err)
	}
	cfg := durable.Config{Stream: "S", Name: "pin", Filter: "s.>", AckWait: time.Hour, MaxPending: 10, Workers: 1,
		Group: "g", PinnedTTL: 1500 * time.Millisecond, PullExpiry: time.Second}

	var mu sync.Mutex
	holderBusy := false
	var overlaps []string
	busy, release := make(chan struct{}), make(chan struct{})
	hctx, hcancel := context.WithCancel(ctx)
	hdone := make(chan error, 1)
	go func() {
		hdone <- durable.Consume(hctx, js, cfg, func(m jetstream.Msg) {
			if m.Subject() == "s.1" {
				mu.Lock()
				holderBusy = true
				mu.Unlock()
				close(busy)
				<-release
				mu.Lock()
				holderBusy = false
				mu.Unlock()
			}
			_ = m.Ack()
		})
	}()
	<-busy

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	ready := make(chan struct{})
	standbyGot := make(chan string, 10)
	sdone := make(chan error, 1)
	scfg := cfg
	scfg.Ready = func() { close(ready) }
	go func() {
		sdone <- durable.Consume(sctx, js, scfg, func(m jetstream.Msg) {
			mu.Lock()
			if holderBusy {
				overlaps = append(overlaps, m.Subject())
			}
			mu.Unlock()
			standbyGot <- m.Subject()
			_ = m.Ack()
		})
	}()
	<-ready

	// The holder is told to stop; its handler of s.1 is still running.
	hcancel()
	if _, err := js.Publish(ctx, "s.2", []byte("2")); err != nil {
		t.Fatal(err)
	}
	// Three times the pin's TTL: the pin moved after one while the
	// handler ran.
	select {
	case <-standbyGot:
	case <-time.After(3 * cfg.PinnedTTL):
	}
	close(release)
	if err := <-hdone; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(overlaps) > 0 {
		mu.Unlock()
		t.Fatalf("the standby handled %v while the stopped holder still handled s.1 (two subscribers of one pinned group at once)", overlaps)
	}
	mu.Unlock()
	// Once the holder's handler returned, the group is the standby's.
	for got := map[string]bool{}; !got["s.2"]; {
		select {
		case m := <-standbyGot:
			got[m] = true
		case <-time.After(30 * time.Second):
			t.Fatal("the standby never got s.2")
		}
	}
	scancel()
	<-sdone
}
