package payments_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/services/payments"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lifetimeProvider forgets a key lifetime after its first use; it fails every
// charge (before taking money) while failing is set.
type lifetimeProvider struct {
	lifetime time.Duration
	failing  atomic.Bool
	mu       sync.Mutex
	first    map[string]time.Time
	taken    map[string]int // order → times money was taken
}

func (p *lifetimeProvider) KeyLifetime() time.Duration { return p.lifetime }
func (p *lifetimeProvider) Charge(_ context.Context, req payments.ChargeRequest) (payments.ChargeResult, error) {
	if p.failing.Load() {
		return payments.ChargeResult{}, errors.New("provider down")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if at, ok := p.first[req.IdempotencyKey]; !ok || time.Since(at) > p.lifetime {
		p.first[req.IdempotencyKey] = time.Now()
		p.taken[req.OrderID]++
	}
	return payments.ChargeResult{PaymentRef: "rv-" + req.OrderID}, nil
}
func (p *lifetimeProvider) Refund(context.Context, payments.RefundRequest) (payments.RefundResult, error) {
	return payments.RefundResult{}, errors.New("not used")
}
func (p *lifetimeProvider) Void(context.Context, payments.VoidRequest) (payments.VoidResult, error) {
	return payments.VoidResult{}, errors.New("not used")
}
func (p *lifetimeProvider) takenFor(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.taken[id]
}

// downCmds refuses to record payments (UNAVAILABLE) while down.
type downCmds struct {
	ordersv1.OrderCommandServiceClient
	down atomic.Bool
}

func (c *downCmds) RecordPayment(ctx context.Context, in *ordersv1.RecordPaymentRequest, opts ...grpc.CallOption) (*ordersv1.RecordPaymentResponse, error) {
	if c.down.Load() {
		return nil, status.Error(codes.Unavailable, "command side electing a leader")
	}
	return c.OrderCommandServiceClient.RecordPayment(ctx, in, opts...)
}

// failingParkedGets fails the next failGets Gets of the parked job under key.
type failingParkedGets struct {
	*bucket.Bucket
	key      atomic.Value
	failGets atomic.Int32
}

func (b *failingParkedGets) Get(ctx context.Context, key string) ([]byte, error) {
	if k, _ := b.key.Load().(string); k == key && b.failGets.Add(-1) >= 0 {
		return nil, errors.New("nats: timeout")
	}
	return b.Bucket.Get(ctx, key)
}

// losesSecondPlacedAck loses the ack of the first delivery of the second
// OrderPlaced.
type losesSecondPlacedAck struct {
	payments.Store
	n atomic.Int32
}

func (s *losesSecondPlacedAck) Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error {
	return s.Store.Subscribe(ctx, name, func(d eventstore.Delivery) {
		if d.Event.Type == "OrderPlaced" && d.NumDelivered == 1 && s.n.Add(1) == 2 {
			d.Acknowledger = lostAck{d.Acknowledger}
		}
		handle(d)
	}, opts...)
}

// A job parked without its key ever going out (the circuit open), its ack
// lost, is delivered again while the bucket cannot be read: that delivery
// runs, takes the money under the job's key and is handed back (the
// command side down past the outage limit). The next delivery finds the
// job parked and runs it, since the record of when the key went out holds
// what the parked entry does not; it removed that record and left the job
// parked, and a retry past the key's lifetime charged again.
func TestDeliveryAgainOfAParkedJobKeepsWhenItsKeyWentOut(t *testing.T) {
	e := start(t)
	gw := &lifetimeProvider{lifetime: 1500 * time.Millisecond, first: map[string]time.Time{}, taken: map[string]int{}}
	gw.failing.Store(true)
	cmds := &downCmds{OrderCommandServiceClient: e.cmd}
	kv := &failingParkedGets{Bucket: parkedBucket(t, e.js)}
	store := &losesSecondPlacedAck{Store: e.store}
	e.runParked(t, store, kv, cmds, gw, payments.WithRetry(2, time.Second, time.Millisecond, 2*time.Millisecond), payments.WithCircuit(1, 800*time.Millisecond),
		payments.WithAckWait(1500*time.Millisecond), payments.WithOutageLimit(300*time.Millisecond))

	e.place(t, "opens-circuit", 100) // its charge fails: the circuit opens
	e.waitParked(t, 1)
	id := e.place(t, "parked-unsent", 100) // parked with the circuit open: its key never went out; its ack is lost
	e.waitParked(t, 2)
	key := "charge." + base64.RawURLEncoding.EncodeToString([]byte(id))
	entry := func() map[string]any { return parkedEntry(t, kv.Bucket, key) }
	if j := entry(); j["key_used_at"] != nil {
		t.Skipf("precondition not met: the job's key went out before it parked: %v", j)
	}
	// The delivery again (after the ack wait) cannot read the parked job
	// three times and runs: the provider is back and takes the money, the
	// command side is down past the outage limit, so it is handed back.
	kv.key.Store(key)
	kv.failGets.Store(3)
	gw.failing.Store(false)
	cmds.down.Store(true)
	waitUntil(t, "the delivery again took the money", func() bool { return gw.takenFor(id) == 1 })
	time.Sleep(700 * time.Millisecond) // past the outage limit: handed back; the next delivery, which finds the job parked
	cmds.down.Store(false)
	waitHandled(t, e)
	keys, err := kv.Keys(t.Context())
	if err != nil && !errors.Is(err, bucket.ErrNotFound) {
		t.Fatal(err)
	}
	sentLeft := false
	for _, k := range keys {
		if strings.HasPrefix(k, "sent.") && strings.Contains(k, key) {
			sentLeft = true
		}
	}
	j := entry()
	t.Logf("after the deliveries: parked entry key_used_at=%v, sent record left=%v, money taken %d", j["key_used_at"], sentLeft, gw.takenFor(id))
	// The key's lifetime passes; the operator retries the parked job.
	time.Sleep(gw.lifetime + 200*time.Millisecond)
	if _, err := e.admin.RetryParkedPayment(t.Context(), &ordersv1.RetryParkedPaymentRequest{OrderId: id}); err != nil {
		t.Logf("retry: %v", err)
	}
	if n := gw.takenFor(id); n != 1 {
		t.Fatalf("order %s: money taken %d times; the delivery again that found the job parked removed the only record of when its key went out (parked entry key_used_at=%v, sent record left=%v)",
			id, n, j["key_used_at"], sentLeft)
	}
}
