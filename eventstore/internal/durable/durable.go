// Package durable runs the durable, acknowledged JetStream pull consumers
// behind the event store's subscriptions (eventstore.Store.Subscribe and
// schedule.Stream.Subscribe), so that the consumer set-up, the worker pool,
// the pinned priority group and the shutdown order are written once.
package durable

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLost reports that the consumer was deleted or vanished while it was
// being consumed.
var ErrLost = errors.New("consumer lost")

// Config describes one durable consumer and how it is consumed.
type Config struct {
	Stream      string
	Name        string // durable name
	Description string
	Filter      string
	AckWait     time.Duration
	MaxPending  int // unacknowledged messages the server hands out at most
	Workers     int // handlers running at once
	Group       string
	PinnedTTL   time.Duration
	TakeOver    bool
	PullExpiry  time.Duration
	Ready       func()
}

// batch is how many messages one pull asks for: no more than may be
// pending, and at most 100 so that a pull stays small.
func (c Config) batch() int { return max(1, min(c.MaxPending, 100)) }

// heartbeat is the pull's idle heartbeat. A missed heartbeat (2× the
// interval) is how a pull notices a stream leader change; one second keeps
// that to seconds rather than the default 30 s. The server wants it below
// half the pull's expiry.
func (c Config) heartbeat() time.Duration { return min(time.Second, c.PullExpiry/2) }

func (c Config) consumer() jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       c.Name,
		Description:   c.Description,
		FilterSubject: c.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxAckPending: c.MaxPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if c.Group != "" {
		cc.PriorityPolicy = jetstream.PriorityPolicyPinned
		cc.PriorityGroups = []string{c.Group}
		cc.PinnedTTL = c.PinnedTTL
	}
	return cc
}

// Consume creates (or updates) the consumer cfg describes and hands its
// messages to handle on cfg.Workers goroutines until ctx ends (it then
// returns nil) or the consumer is lost (ErrLost). A message that arrives
// while every worker is busy waits for one; one that arrives after ctx ended
// is handed back at once with a negative acknowledgement. Consume returns
// only after every handler has returned.
//
// With a pinned group and TakeOver, Consume unpins the group when it starts
// (a crashed holder's pin would otherwise hold it for PinnedTTL with nobody
// pulling) and again when ctx ends, so a standby takes over at once.
func Consume(ctx context.Context, js jetstream.JetStream, cfg Config, handle func(jetstream.Msg)) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cfg.consumer())
	if err != nil {
		return err
	}
	if cfg.Group != "" && cfg.TakeOver {
		unpin(ctx, js, cfg)
	}
	// msgs is never closed: the client may still run the delivery
	// callback once the consume context reports itself closed (seen when
	// the connection closes under it), and a send on a closed channel
	// panics. quit tells the workers and any late callback instead.
	msgs, quit := make(chan jetstream.Msg), make(chan struct{})
	var wg sync.WaitGroup
	for range max(cfg.Workers, 1) {
		wg.Go(func() {
			for {
				select {
				case msg := <-msgs:
					handle(msg)
				case <-quit:
					return
				}
			}
		})
	}
	err = run(ctx, cons, cfg, msgs, quit)
	close(quit)
	wg.Wait()
	if err != nil || ctx.Err() == nil {
		return err
	}
	if cfg.Group != "" && cfg.TakeOver {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		unpin(uctx, js, cfg)
	}
	return nil
}

// run pulls from cons into msgs until ctx ends or the consumer is lost; a
// delivery that comes after quit is closed is handed back.
func run(ctx context.Context, cons jetstream.Consumer, cfg Config, msgs chan<- jetstream.Msg, quit <-chan struct{}) error {
	failed := make(chan error, 1)
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(cfg.batch()),
		jetstream.PullExpiry(cfg.PullExpiry), jetstream.PullHeartbeat(cfg.heartbeat()),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case failed <- err:
				default:
				}
			}
		}),
	}
	if cfg.Group != "" {
		opts = append(opts, jetstream.PullPriorityGroup(cfg.Group))
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case msgs <- msg: // blocks while every worker is busy
		case <-ctx.Done():
			_ = msg.Nak() // hand it back now rather than after AckWait
		case <-quit:
			_ = msg.Nak()
		}
	}, opts...)
	if err != nil {
		return err
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}
	select {
	case <-ctx.Done():
	case err = <-failed:
		err = fmt.Errorf("%w: %w", ErrLost, err)
	}
	cc.Stop()
	<-cc.Closed()
	return err
}

// unpin releases the group's pin, best effort: failing, the pin runs out
// after PinnedTTL.
func unpin(ctx context.Context, js jetstream.JetStream, cfg Config) {
	if st, err := js.Stream(ctx, cfg.Stream); err == nil {
		_ = st.UnpinConsumer(ctx, cfg.Name, cfg.Group)
	}
}

// NumDelivered is how many times msg has been delivered, this time
// included; 0 when unknown.
func NumDelivered(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.NumDelivered
}
