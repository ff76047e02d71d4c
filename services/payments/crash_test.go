package payments_test

import (
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc"
)

var crashSeed = flag.Uint64("crashseed", 0, "seed of TestHardCrashesNeverChargeTwice; 0 picks one")

var errDead = errors.New("process crashed")

// crashPoint kills a manager at its at-th gateway or recording call: the
// manager's NATS connection is closed (no hand-back, no unpin, no ack)
// and its context ended. With after set the call first does its work, so
// the money moved or the outcome was recorded without the dead process
// learning it. Calls after the crash fail, as a dead process makes none.
type crashPoint struct {
	at    int32
	after bool
	calls atomic.Int32
	dead  atomic.Bool
	kill  func()
	once  sync.Once
	died  chan struct{}
}

// enter reports whether the call may proceed; when it is the crash point
// it runs work (if after is set) and kills the process.
func (c *crashPoint) enter(work func()) bool {
	if c.dead.Load() {
		return false
	}
	if c.calls.Add(1) != c.at {
		return true
	}
	if c.after {
		work()
	}
	c.once.Do(func() {
		c.dead.Store(true)
		c.kill()
		close(c.died)
	})
	return false
}

type crashingGateway struct {
	payments.Provider
	c *crashPoint
}

func (g crashingGateway) Charge(ctx context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	if !g.c.enter(func() { _, _ = g.Provider.Charge(context.Background(), req) }) {
		return payments.ChargeResult{}, errDead
	}
	return g.Provider.Charge(ctx, req)
}

// KeyLifetime is the wrapped provider's (0 for one without), so that a
// manager of a crashing provider knows it as it would the provider's own.
func (g crashingGateway) KeyLifetime() time.Duration {
	if kl, ok := g.Provider.(payments.KeyLifetime); ok {
		return kl.KeyLifetime()
	}
	return 0
}

type crashingCommands struct {
	ordersv1.OrderCommandServiceClient
	c *crashPoint
}

func (cc crashingCommands) RecordPayment(ctx context.Context, in *ordersv1.RecordPaymentRequest, opts ...grpc.CallOption) (*ordersv1.RecordPaymentResponse, error) {
	if !cc.c.enter(func() { _, _ = cc.OrderCommandServiceClient.RecordPayment(context.Background(), in, opts...) }) {
		return nil, errDead
	}
	return cc.OrderCommandServiceClient.RecordPayment(ctx, in, opts...)
}

// runOwnConn starts a manager on a NATS connection of its own, as a
// separate process would have, with gw and cmds wrapped by c (nil for a
// manager that does not crash). done is closed once the manager stopped;
// stop stops it, and fails tb if it failed.
func (e *env) runOwnConn(tb testing.TB, gw payments.Provider, c *crashPoint, opts ...payments.Option) (done <-chan struct{}, stop func()) {
	tb.Helper()
	nc, js := estest.Connect(tb, e.srv)
	store, err := eventstore.New(context.Background(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmds := e.cmd
	if c != nil {
		c.kill = func() { nc.Close(); cancel() }
		gw = crashingGateway{Provider: gw, c: c}
		cmds = crashingCommands{OrderCommandServiceClient: e.cmd, c: c}
	}
	m, err := payments.New(context.Background(), store, parkedBucket(tb, js), cmds, gw, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	e.mgr.Store(m)
	finished := make(chan struct{})
	var runErr error
	go func() { runErr = m.Run(ctx); close(finished) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-finished
			if runErr != nil {
				tb.Errorf("manager: %v", runErr)
			}
		})
	}
	tb.Cleanup(stop)
	return finished, stop
}

// A manager dies abruptly (its NATS connection closed, nothing handed
// back or unpinned) at a random gateway or recording call, before or
// after the call did its work, round after round; each time a new manager
// on a new connection takes over once the pin and the AckWait of the dead
// one's messages run out. Every placed order ends charged once (one
// money movement, one key) and recorded once, and nothing is parked.
func TestHardCrashesNeverChargeTwice(t *testing.T) {
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: rerun with -crashseed %d", seed, seed)
		}
	})
	r := rand.New(rand.NewPCG(seed, 1))
	e := start(t)
	sim := payments.NewSimulator(payments.SimulatorConfig{FailureRate: 0.2, LostAnswerRate: 0.1, Latency: time.Millisecond, Seed: seed})
	// An attempt timeout of 200 ms makes the AckWait its floor of 1 s:
	// a dead manager's messages come back after a second.
	opts := []payments.Option{fast(), payments.WithRetry(30, 200*time.Millisecond, time.Millisecond, 5*time.Millisecond), payments.WithWorkers(3), quickFailover()}
	const rounds, perRound = 4, 5
	for round := range rounds {
		// Each order needs at least a charge and a recording, so the
		// crash point is always reached.
		c := &crashPoint{at: 1 + r.Int32N(2*perRound), after: r.IntN(2) == 1, died: make(chan struct{})}
		done, stop := e.runOwnConn(t, sim, c, opts...)
		for range perRound {
			e.place(t, "crashy", 250)
		}
		select {
		case <-c.died:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the crash point (call %d) was never reached", round, c.at)
		}
		select {
		case <-done:
			stop()
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the crashed manager did not stop", round)
		}
	}
	e.runOwnConn(t, sim, nil, opts...)
	const orders = rounds * perRound
	got := e.waitFor(t, orders, "PaymentAuthorized", "PaymentDeclined")
	if len(got) != orders {
		t.Fatalf("%d orders paid, want %d", len(got), orders)
	}
	for id, evs := range got {
		if len(evs) != 1 || evs[0] != "PaymentAuthorized" {
			t.Fatalf("order %s: %v", id, evs)
		}
	}
	assertChargedOnce(t, sim, orders)
	e.waitParked(t, 0)
	// The outcomes are in the log; each order's history has exactly one.
	for id := range got {
		if n := e.outcomes(t, id, "PaymentAuthorized"); n != 1 {
			t.Fatalf("order %s: %d PaymentAuthorized events", id, n)
		}
	}
}
