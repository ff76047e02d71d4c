package deadlines_test

import (
	"context"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/services/deadlines"
)

// stuckCancel is the command service over a real listener, except that the
// first CancelOrder it receives never answers (a command side that hangs,
// or a connection black-holed by a partition).
type stuckCancel struct {
	commandRef
	once    sync.Once
	stuck   chan struct{}
	release chan struct{}
}

func (s *stuckCancel) CancelOrder(ctx context.Context, r *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.stuck)
		<-s.release // held until the test ends; the client set no deadline
	}
	return s.commandRef.CancelOrder(ctx, r)
}

// One command call that never answers does not stop every other deadline
// from being enforced: the payment timeout of a second order still cancels
// it, and the first is enforced when its firing is retried. The manager
// called CancelOrder without a deadline, on its only firing worker, so one
// hung call blocked all firings for good.
func TestHungCancelBlocksNoOtherDeadline(t *testing.T) {
	e := start(t)
	srv := &stuckCancel{commandRef: commandRef{e: e}, stuck: make(chan struct{}), release: make(chan struct{})}
	m, err := deadlines.New(t.Context(), e.store.Load(), e.timers(t), serveCommands(t, srv),
		deadlines.WithTimeouts(time.Second, time.Hour), deadlines.WithHandleTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	// Before serveCommands' clean-up, which stops the server.
	t.Cleanup(func() {
		close(srv.release)
		cancel()
		<-done
	})

	first := e.place(t, "hung-first")
	select {
	case <-srv.stuck:
	case <-time.After(30 * time.Second):
		t.Fatalf("the first order's timeout (%s) never reached CancelOrder", first)
	}
	second := e.place(t, "hung-second")
	// Its timeout is due in 1 s; the bound is the AckWait (30 s), after
	// which a stuck firing would be delivered again anyway.
	for _, id := range []string{second, first} {
		deadline := time.Now().Add(30 * time.Second)
		for !cancelled(t, e, id) {
			if time.Now().After(deadline) {
				t.Fatalf("order %s placed with a 1 s payment timeout is still not cancelled after 30 s: one hung CancelOrder blocks the firings", id)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func cancelled(t *testing.T, e *env, id string) bool {
	for _, r := range e.events(t, id) {
		if r.Type == "OrderCancelled" {
			return true
		}
	}
	return false
}
