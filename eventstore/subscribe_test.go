package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// A deleted consumer ends the subscription with ErrSubscriptionLost, and
// subscribing again picks up what was never settled.
func TestSubscriptionLost(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e.store, "lost-1", 0, estest.Event("Created", "{}", ""))
	var delivered atomic.Int64
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.store.Subscribe(t.Context(), "lost", func(eventstore.Delivery) { delivered.Add(1) }, // never settled
			eventstore.WithReady(func() { close(ready) }), eventstore.WithPullExpiry(time.Second))
	}()
	<-ready
	waitFor(t, "the first delivery", func() bool { return delivered.Load() == 1 })
	if err := e.js.DeleteConsumer(t.Context(), e.store.StreamName(), "lost"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrSubscriptionLost) {
			t.Fatalf("Subscribe after its consumer was deleted: %v, want ErrSubscriptionLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Subscribe still running 10s after its consumer was deleted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := e.store.Subscribe(ctx, "lost", func(d eventstore.Delivery) {
		if d.Event.OrderID == "lost-1" {
			_ = d.Ack()
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
}

// Several workers handle deliveries at once, never more than asked.
func TestSubscribeWorkers(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"w-1", "w-2", "w-3", "w-4"} {
		mustAppend(t, e.store, id, 0, estest.Event("Created", "{}", ""))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var running, most, handled atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	err := e.store.Subscribe(ctx, "workers", func(d eventstore.Delivery) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if n == 2 {
			// Two at once: let them all finish. The last two may run
			// at once too.
			releaseOnce.Do(func() { close(release) })
		}
		<-release
		running.Add(-1)
		_ = d.Ack()
		if handled.Add(1) == 4 {
			cancel()
		}
	}, eventstore.WithWorkers(2), eventstore.WithMaxPending(2))
	if err != nil {
		t.Fatal(err)
	}
	if most.Load() != 2 {
		t.Fatalf("%d handlers ran at once, want 2", most.Load())
	}
}

// Subscribing while JetStream cannot be reached is ErrUnavailable.
func TestSubscribeUnavailable(t *testing.T) {
	e := newEnv(t)
	e.nc.Close()
	err := e.store.Subscribe(t.Context(), "closed", func(eventstore.Delivery) {})
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Subscribe on a closed connection: %v, want ErrUnavailable", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// subscription runs Subscribe on its own goroutine.
type subscription struct {
	done   chan error
	cancel context.CancelFunc
}

func subscribe(t *testing.T, s *eventstore.Store, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) *subscription {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sub := &subscription{done: make(chan error, 1), cancel: cancel}
	go func() { sub.done <- s.Subscribe(ctx, name, handle, opts...) }()
	t.Cleanup(func() {
		cancel()
		<-sub.done
	})
	return sub
}

// ended waits for Subscribe to return, without stopping it, and returns
// its error; it fails t when Subscribe keeps running.
func (s *subscription) ended(t *testing.T, after string) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the clean-up
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("Subscribe still running 20s after %s", after)
		return nil
	}
}

// stop ends Subscribe and returns its error.
func (s *subscription) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	return s.ended(t, "its context ended")
}

// gate dials the server while open. Shutting it closes the connections it
// made and refuses new ones: a client cut off from the server, which keeps
// trying to reconnect until the gate opens again.
type gate struct {
	mu    sync.Mutex
	shut  bool
	conns []net.Conn
}

func (g *gate) Dial(network, address string) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return nil, errors.New("gate shut")
	}
	c, err := net.Dial(network, address)
	if err == nil {
		g.conns = append(g.conns, c)
	}
	return c, err
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = true
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = false
}

// A consumer deleted while its subscriber is cut off from the server: no
// pull of its waits to be told, and its pulls after it reconnects find no
// responder. Subscribe ends with ErrSubscriptionLost all the same, so its
// caller subscribes again, rather than wait for deliveries that never
// come.
func TestSubscriptionLostWhileDisconnected(t *testing.T) {
	srv := estest.StartServer(t)
	g := &gate{}
	nc, js := estest.ConnectURL(t, srv.ClientURL(), nats.SetCustomDialer(g),
		nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	s, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	_, admin := estest.Connect(t, srv)
	mustAppend(t, s, "cut-1", 0, estest.Event("Created", "{}", ""))
	var delivered atomic.Int64
	sub := subscribe(t, s, "cut", func(d eventstore.Delivery) { delivered.Add(1); _ = d.Ack() },
		eventstore.WithPullExpiry(time.Second))
	waitFor(t, "the first delivery", func() bool { return delivered.Load() == 1 })
	g.close()
	waitFor(t, "disconnection", func() bool { return !nc.IsConnected() })
	if err := admin.DeleteConsumer(t.Context(), s.StreamName(), "cut"); err != nil {
		t.Fatal(err)
	}
	g.open()
	if err := sub.ended(t, "its consumer was deleted"); !errors.Is(err, eventstore.ErrSubscriptionLost) {
		t.Fatalf("Subscribe after its consumer was deleted while it was cut off: %v, want ErrSubscriptionLost", err)
	}
}

// A consumer deleted while the only worker is busy for longer than a pull
// waits (the deadlines manager's settings: one worker, a slow store): the
// pull that expired meanwhile is not there to be told. Subscribe ends with
// ErrSubscriptionLost all the same.
func TestSubscriptionLostWhileWorkerBusy(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e.store, "busy-1", 0, estest.Event("Created", "{}", ""))
	mustAppend(t, e.store, "busy-2", 0, estest.Event("Created", "{}", ""))
	// The server answers a pull that expires with 408 on its inbox.
	wnc, _ := estest.Connect(t, e.srv)
	var expired atomic.Int64
	if _, err := wnc.Subscribe("_INBOX.>", func(m *nats.Msg) {
		if m.Header.Get("Status") == "408" {
			expired.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := wnc.Flush(); err != nil {
		t.Fatal(err)
	}
	busy, release := make(chan struct{}), make(chan struct{})
	var delivered atomic.Int64
	sub := subscribe(t, e.store, "busy", func(d eventstore.Delivery) {
		if delivered.Add(1) == 1 {
			close(busy)
			<-release
		}
		_ = d.Ack()
	}, eventstore.WithPullExpiry(time.Second))
	<-busy
	before := expired.Load()
	waitFor(t, "a pull expiring while the worker is busy", func() bool { return expired.Load() > before })
	if err := e.js.DeleteConsumer(t.Context(), e.store.StreamName(), "busy"); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := sub.ended(t, "its consumer was deleted"); !errors.Is(err, eventstore.ErrSubscriptionLost) {
		t.Fatalf("Subscribe after its consumer was deleted while its worker was busy: %v, want ErrSubscriptionLost", err)
	}
}

// The client stops consuming for good when its connection closes:
// Subscribe returns ErrUnavailable rather than keep its caller waiting.
func TestSubscribeEndsWhenConnectionCloses(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e.store, "close-1", 0, estest.Event("Created", "{}", ""))
	var delivered atomic.Int64
	sub := subscribe(t, e.store, "close", func(d eventstore.Delivery) { delivered.Add(1); _ = d.Ack() })
	waitFor(t, "the first delivery", func() bool { return delivered.Load() == 1 })
	e.nc.Close()
	if err := sub.ended(t, "its connection closed"); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("Subscribe after its connection closed: %v, want ErrUnavailable", err)
	}
}

// The consumer changed under a pinned subscriber (another process
// subscribed under the same name with another group): the server refuses
// its pulls (400 Bad Request) and the client stops consuming. Subscribe
// ends with ErrSubscriptionLost, and subscribing again puts its group back.
func TestSubscriptionLostWhenGroupChanges(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e.store, "group-1", 0, estest.Event("Created", "{}", ""))
	var delivered atomic.Int64
	opts := []eventstore.SubscribeOption{eventstore.WithPinnedGroup("g", 5*time.Second), eventstore.WithPullExpiry(time.Second)}
	sub := subscribe(t, e.store, "group", func(d eventstore.Delivery) { delivered.Add(1); _ = d.Ack() }, opts...)
	waitFor(t, "the first delivery", func() bool { return delivered.Load() == 1 })
	cons, err := e.js.Consumer(t.Context(), e.store.StreamName(), "group")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	cfg.PriorityGroups = []string{"h"}
	if _, err := e.js.UpdateConsumer(t.Context(), e.store.StreamName(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := sub.ended(t, "its consumer's group changed"); !errors.Is(err, eventstore.ErrSubscriptionLost) {
		t.Fatalf("Subscribe after its consumer's group changed: %v, want ErrSubscriptionLost", err)
	}
	// Taking over, as the payments manager does: the lost subscriber's pin
	// would otherwise hold the group for its TTL.
	mustAppend(t, e.store, "group-2", 0, estest.Event("Created", "{}", ""))
	again := subscribe(t, e.store, "group", func(d eventstore.Delivery) { delivered.Add(1); _ = d.Ack() },
		append(opts, eventstore.WithTakeOver())...)
	waitFor(t, "a delivery to the new subscription", func() bool { return delivered.Load() == 2 })
	if err := again.stop(t); err != nil {
		t.Fatal(err)
	}
}

// A pinned holder whose only worker is busy for longer than the pinned TTL
// keeps pulling, and so its pin: the standby handles nothing, and the
// holder handles every event in log order. (A holder that stopped pulling
// while busy lost its pin to the standby, and both then ran at once.)
func TestPinnedHolderKeepsPinWhileBusy(t *testing.T) {
	e := newEnv(t)
	mustAppend(t, e.store, "pin-1", 0, estest.Event("Created", "{}", ""))
	mustAppend(t, e.store, "pin-2", 0, estest.Event("Created", "{}", ""))
	opts := []eventstore.SubscribeOption{eventstore.WithPinnedGroup("g", 2*time.Second), eventstore.WithPullExpiry(time.Second)}
	// Watch the pulls and the server's word that a pin ran out.
	wnc, _ := estest.Connect(t, e.srv)
	var (
		mu       sync.Mutex
		pulls    = map[string]int{} // by inbox
		handled  []string
		unpinned atomic.Bool
	)
	if _, err := wnc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+e.store.StreamName()+".pin", func(m *nats.Msg) {
		mu.Lock()
		pulls[m.Reply]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := wnc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.UNPINNED."+e.store.StreamName()+".pin", func(*nats.Msg) {
		unpinned.Store(true)
	}); err != nil {
		t.Fatal(err)
	}
	if err := wnc.Flush(); err != nil {
		t.Fatal(err)
	}
	record := func(who string, d eventstore.Delivery) {
		mu.Lock()
		handled = append(handled, who+" "+d.Event.OrderID)
		mu.Unlock()
		_ = d.Ack()
	}
	locked := func(f func() bool) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return f() }
	}
	busy, release := make(chan struct{}), make(chan struct{})
	holder := subscribe(t, e.store, "pin", func(d eventstore.Delivery) {
		if d.Event.OrderID == "pin-1" {
			close(busy)
			<-release
		}
		record("holder", d)
	}, opts...)
	<-busy
	var inbox string // the holder's: the only one pulling yet
	waitFor(t, "the holder's pull", locked(func() bool {
		for in := range pulls {
			inbox = in
		}
		return len(pulls) == 1
	}))
	ready := make(chan struct{})
	standby := subscribe(t, e.store, "pin", func(d eventstore.Delivery) { record("standby", d) },
		append(opts, eventstore.WithReady(func() { close(ready) }))...)
	<-ready
	// Three more pulls of the holder, a second apart: longer than the
	// pinned TTL, which a holder that stopped pulling would have lost its
	// pin after.
	mu.Lock()
	since := pulls[inbox]
	mu.Unlock()
	waitFor(t, "the holder pulling or its pin running out", locked(func() bool {
		return pulls[inbox] >= since+3 || unpinned.Load()
	}))
	mustAppend(t, e.store, "pin-3", 0, estest.Event("Created", "{}", ""))
	close(release)
	waitFor(t, "every event handled", locked(func() bool { return len(handled) == 3 }))
	if err := standby.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := holder.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"holder pin-1", "holder pin-2", "holder pin-3"}; !slices.Equal(handled, want) {
		t.Fatalf("handled %v, want %v (pin ran out: %v)", handled, want, unpinned.Load())
	}
}

// A subscriber that stops hands back at once what was delivered to it and
// waits for a worker, so another subscriber gets it without waiting out
// AckWait (here an hour). That includes what the client had received and
// not yet passed on when it stopped: with a hundred events delivered in one
// pull, some of them usually are.
func TestStoppedSubscriberHandsBackWhatWaits(t *testing.T) {
	for _, n := range []int{3, 100} {
		t.Run(fmt.Sprintf("%d events", n), func(t *testing.T) { handsBack(t, n) })
	}
}

// handsBack stops a subscriber while its one worker holds the first of n
// events, and checks that a second subscriber gets the n-1 others at once.
func handsBack(t *testing.T, n int) {
	e := newEnv(t)
	var want []string
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("back-%d", i)
		mustAppend(t, e.store, id, 0, estest.Event("Created", "{}", ""))
		if i > 1 {
			want = append(want, id+"#2")
		}
	}
	opts := []eventstore.SubscribeOption{eventstore.WithAckWait(time.Hour)}
	busy, release := make(chan struct{}), make(chan struct{})
	first := subscribe(t, e.store, "back", func(d eventstore.Delivery) {
		if d.Event.OrderID == "back-1" {
			close(busy)
			<-release
			_ = d.Ack()
		}
	}, opts...)
	<-busy
	cons, err := e.js.Consumer(t.Context(), e.store.StreamName(), "back")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every event delivered to the first subscriber", func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == n
	})
	first.cancel()
	close(release)
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []string
	)
	second := subscribe(t, e.store, "back", func(d eventstore.Delivery) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s#%d", d.Event.OrderID, d.NumDelivered))
		mu.Unlock()
		_ = d.Ack()
	}, opts...)
	waitFor(t, "the handed-back events", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == n-1 })
	if err := second.stop(t); err != nil {
		t.Fatal(err)
	}
	// The order of redeliveries is the server's business.
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("second subscriber got %v, want %v", got, want)
	}
}

// A pull expiry the NATS client refuses is refused by the option, and the
// shortest it takes gives a working subscription.
func TestPullExpiryAtLeastASecond(t *testing.T) {
	if _, err := eventstore.NewSubscribeConfig(eventstore.WithPullExpiry(999 * time.Millisecond)); err == nil {
		t.Fatal("WithPullExpiry(999ms) accepted")
	}
	e := newEnv(t)
	mustAppend(t, e.store, "exp-1", 0, estest.Event("Created", "{}", ""))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := e.store.Subscribe(ctx, "expiry", func(d eventstore.Delivery) { _ = d.Ack(); cancel() },
		eventstore.WithPullExpiry(time.Second))
	if err != nil {
		t.Fatalf("Subscribe with WithPullExpiry(1s): %v", err)
	}
}

// A priority group's name is checked as the server checks it (1 to 16 of
// A-Z, a-z, 0-9, '-', '_', '/' and '='): a name it refuses is an invalid
// option, not a Subscribe that fails with the server's error every time
// its caller tries again. The longest and oddest valid name subscribes.
func TestPinnedGroupNameAsTheServerTakesIt(t *testing.T) {
	for _, g := range []string{"", "payments-manager-1", "pay:ments", "grüppe", "a b", "a.b"} {
		if _, err := eventstore.NewSubscribeConfig(eventstore.WithPinnedGroup(g, time.Second)); err == nil {
			t.Errorf("WithPinnedGroup(%q) accepted", g)
		}
	}
	e := newEnv(t)
	for _, g := range []string{"payments", "a-b_c/d=E0123456"} {
		ctx, cancel := context.WithCancel(t.Context())
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- e.store.Subscribe(ctx, "grp", func(eventstore.Delivery) {}, eventstore.WithPinnedGroup(g, 2*time.Second),
				eventstore.WithPullExpiry(time.Second), eventstore.WithReady(func() { close(ready) }))
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("group %q: Subscribe: %v", g, err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("group %q: Subscribe: %v", g, err)
		}
	}
}

// A subscription name is checked as the server checks a consumer's, its
// length too (at most 255 bytes): a longer one passed the check and failed
// every Subscribe with the server's error, which its caller, subscribing
// again on any error but an invalid name, tried for ever. The longest
// subscribes.
func TestSubscriptionNameAsTheServerTakesIt(t *testing.T) {
	if err := eventstore.ValidSubscriptionName(strings.Repeat("p", 256)); err == nil {
		t.Error("a name of 256 bytes accepted")
	}
	name := strings.Repeat("p", 255)
	if err := eventstore.ValidSubscriptionName(name); err != nil {
		t.Fatalf("a name of 255 bytes: %v", err)
	}
	e := newEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.store.Subscribe(ctx, name, func(eventstore.Delivery) {}, eventstore.WithReady(func() { close(ready) }))
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Subscribe with a name of 255 bytes: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Subscribe with a name of 255 bytes: %v", err)
	}
}
