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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLost reports that the consumer was deleted or vanished while it was
// being consumed, or was changed under its subscriber so that the server
// refuses the subscriber's pulls (400 Bad Request: another subscriber under
// the same name set another priority group). Consuming again recreates or
// updates it.
var ErrLost = errors.New("consumer lost")

// ErrStopped reports that the client stopped consuming on its own while ctx
// was live, for a reason other than a lost consumer: its connection closed
// for good, say (the error then wraps the client's connection-closed
// error). Nothing is delivered any more, so Consume returns rather than
// leave its caller waiting.
var ErrStopped = errors.New("consume stopped")

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
// returns nil), the consumer is lost (ErrLost) or the client stops
// consuming (ErrStopped). Messages wait in a buffer for a free worker, taken
// in the order they came; none is started after ctx ended, and those still
// waiting when Consume stops, and any that arrives after ctx ended, are
// handed back with a negative acknowledgement once no handler runs.
// Consume returns only after every handler has returned; until then it
// keeps pulling, so that a pinned group's pin stays with it: a standby
// pinned meanwhile would handle later messages while this one still
// handles an earlier.
//
// With a pinned group and TakeOver, Consume unpins the group when it starts
// (a crashed holder's pin would otherwise hold it for PinnedTTL with nobody
// pulling) and again when ctx ends, so a standby takes over at once.
func Consume(ctx context.Context, js jetstream.JetStream, cfg Config, handle func(jetstream.Msg)) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, cfg.consumer())
	if err != nil {
		if ctx.Err() != nil {
			// Ended before the consumer was set up: the end asked for,
			// not a failure to report.
			return nil
		}
		return err
	}
	if cfg.Group != "" && cfg.TakeOver {
		unpin(ctx, js, cfg)
	}
	buf := newBuffer(cfg.MaxPending)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range max(cfg.Workers, 1) {
		wg.Go(func() {
			for {
				// Once ctx ends or consuming stops, what is still
				// buffered is handed back rather than started.
				select {
				case <-ctx.Done():
					return
				case <-quit:
					return
				case msg := <-buf.msgs:
					// The select may take it over ctx's end or the
					// stop of consuming: handed back, not started.
					if closed(quit) || ctx.Err() != nil {
						buf.back(msg)
						return
					}
					handle(msg)
				}
			}
		})
	}
	// The pulls stop when run's own context ends: after the handlers
	// return, not when ctx does.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	if ctx.Err() != nil {
		stopRun() // ended before it began: no handler to wait for
	}
	ran := make(chan error, 1)
	go func() { ran <- run(runCtx, js.Conn(), cons, cfg, buf.put) }()
	select {
	case err = <-ran:
		close(quit)
		wg.Wait()
	case <-ctx.Done():
		wg.Wait()
		stopRun()
		err = <-ran
	}
	if ctx.Err() != nil {
		// Ended by ctx: what the pulls met meanwhile (the connection
		// closed, the consumer deleted) is not this call's outcome.
		err = nil
	}
	// Handed back only now that no handler runs: a standby that gets them
	// at once never handles a later message while this one still handles
	// an earlier.
	buf.close()
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

// buffer holds the messages delivered and not yet taken by a worker.
//
// The client's delivery callback must never block: the client renews its
// pulls only after the callback returns, so a callback blocked while every
// worker is busy stops the pulls, and with them the pinned group's pin,
// which the server then moves to a standby after PinnedTTL; two
// subscribers would run at once, out of log order. The server hands out at
// most MaxPending unacknowledged messages, so a buffer that large takes
// every delivery without blocking. One worker taking from it in order keeps
// the log order.
type buffer struct {
	msgs chan jetstream.Msg
	// mu orders put against close, so that nothing is buffered after
	// close has handed the buffer back: the client may still run the
	// delivery callback once the consume context reports itself closed
	// (seen when the connection closes under it).
	mu     sync.Mutex
	closed bool
}

func newBuffer(maxPending int) *buffer {
	return &buffer{msgs: make(chan jetstream.Msg, max(maxPending, 1))}
}

// put is the delivery callback. A message that arrives once no worker takes
// any more waits here all the same, to be handed back with the rest (close):
// handed back at once, it would come straight back to this subscriber,
// which still holds the pin while its handlers finish.
func (b *buffer) put(msg jetstream.Msg) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = msg.Nak() // hand it back now rather than after AckWait
		return
	}
	select {
	case b.msgs <- msg:
	default:
		// Full: the server delivered more than MaxPending, which only a
		// redelivery of a message still buffered (its AckWait ran out
		// while it waited), or the consumer updated to a larger
		// MaxPending by another subscriber, does. Left unsettled, the
		// message is delivered again after AckWait; blocking would stop
		// the pulls.
	}
	b.mu.Unlock()
}

// back returns a message a worker took but will not start, to be handed
// back with the rest; one the buffer has no room for is handed back now.
func (b *buffer) back(msg jetstream.Msg) {
	select {
	case b.msgs <- msg:
	default:
		_ = msg.Nak()
	}
}

// close refuses later deliveries and hands back those still buffered.
func (b *buffer) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	for {
		select {
		case msg := <-b.msgs:
			_ = msg.Nak()
		default:
			return
		}
	}
}

// infoTimeout bounds the check that the consumer still exists.
const infoTimeout = 5 * time.Second

// run pulls from cons into deliver until ctx ends (nil), the consumer is
// lost (ErrLost) or the client stops consuming (ErrStopped).
//
// The server tells a waiting pull that its consumer was deleted, but none
// may wait (the client was disconnected, or between two pulls): later pulls
// then find no responder, and the client, which reports that and the
// missed heartbeats that follow, keeps pulling for ever. run asks the
// server whether the consumer still exists when it hears of either, rather
// than wait for deliveries that will never come.
func run(ctx context.Context, nc *nats.Conn, cons jetstream.Consumer, cfg Config, deliver func(jetstream.Msg)) error {
	lost := make(chan error, 1)     // the server said the consumer is gone
	check := make(chan struct{}, 1) // pulls go unanswered: is it still there?
	closed := make(chan error, 1)   // the connection closed for good
	notify := func(ch chan error, err error) {
		select {
		case ch <- err:
		default:
		}
	}
	opts := []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(cfg.batch()),
		jetstream.PullExpiry(cfg.PullExpiry), jetstream.PullHeartbeat(cfg.heartbeat()),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// This runs on the client's goroutines, which must not
			// wait for the server: run asks it.
			switch {
			case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound),
				errors.Is(err, jetstream.ErrBadRequest):
				notify(lost, err)
			case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoHeartbeat):
				select {
				case check <- struct{}{}:
				default:
				}
			case errors.Is(err, jetstream.ErrConnectionClosed):
				notify(closed, err)
			}
		}),
	}
	if cfg.Group != "" {
		opts = append(opts, jetstream.PullPriorityGroup(cfg.Group))
	}
	cc, err := cons.Consume(deliver, opts...)
	if err != nil {
		return err
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}
	// The client ends the consume context itself on a terminal error
	// (consumer deleted, 400 Bad Request, connection closed): nothing more
	// is delivered then.
	stopped := cc.Closed()
	for err == nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case e := <-lost:
			err = fmt.Errorf("%w: %w", ErrLost, e)
		case <-stopped:
			if ctx.Err() == nil {
				err = why(ctx, cons, lost, closed)
			}
		case <-check:
			// The server cannot say: the client keeps pulling, and the
			// next unanswered pull asks again.
			if e := lookup(ctx, cons); errors.Is(e, ErrLost) {
				err = e
			}
		}
	}
	stopPulls(nc, cc)
	return err
}

// drainWait bounds how long stopPulls waits for a drain to end.
const drainWait = 5 * time.Second

// stopPulls ends cc's pulls. Connected, it drains them: the messages the
// client has received and not yet passed to deliver are passed on, to be
// handed back with the rest, where a plain stop drops them and the server
// delivers them again only after AckWait. A drain takes the server's answer
// to a flush; should that not come within drainWait, stopPulls returns
// anyway, and what the drain passes on later is handed back at once (the
// buffer is closed by then). Not connected (or without a connection: nil),
// nothing can be handed back, and the pulls just stop.
func stopPulls(nc *nats.Conn, cc jetstream.ConsumeContext) {
	if nc == nil || nc.Status() != nats.CONNECTED {
		cc.Stop()
		<-cc.Closed()
		return
	}
	cc.Drain()
	t := time.NewTimer(drainWait)
	defer t.Stop()
	select {
	case <-cc.Closed():
	case <-t.C:
	}
}

// why tells why the client stopped consuming. Its error handler reports a
// lost consumer before it stops, but a closed connection may stop it first:
// failing a report, the server is asked, and the error of asking (the
// connection closed) is the cause.
func why(ctx context.Context, cons jetstream.Consumer, lost, closed <-chan error) error {
	select {
	case err := <-lost:
		return fmt.Errorf("%w: %w", ErrLost, err)
	case err := <-closed:
		return fmt.Errorf("%w: %w", ErrStopped, err)
	default:
	}
	switch err := lookup(ctx, cons); {
	case err == nil:
		return ErrStopped
	case errors.Is(err, ErrLost):
		return err
	default:
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
}

// lookup asks the server for cons: nil when it is there, ErrLost when it
// is gone, and otherwise the error of asking (unreachable, electing a
// leader), when the server cannot say.
func lookup(ctx context.Context, cons jetstream.Consumer) error {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	_, err := cons.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: %w", ErrLost, err)
	}
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

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
