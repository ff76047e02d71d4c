package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/internal/durable"
	"github.com/orderstream/orderstream/eventstore/internal/streamcfg"
	"github.com/orderstream/orderstream/internal/backoff"
)

// Msg is one firing (or other message) delivered by Subscribe, to be settled
// through its Acknowledger.
type Msg struct {
	Subject string
	Data    []byte
	// Sequence is the message's in the stream, for Delete.
	Sequence uint64
	// NumDelivered counts deliveries as eventstore.Delivery does.
	NumDelivered uint64
	eventstore.Acknowledger
}

// Each hands fn the subject and data of the messages on the subjects
// matching filters, in stream order, as of the call: pending timers, kept
// records and firings not yet deleted (a pending timer is its schedule
// message until it fires). What is added while it reads may be handed out
// too: a timer that fires meanwhile can come as pending and as fired. It reads through
// an ordered consumer, without disturbing any subscription, and deletes
// that consumer when it ends. A caller that keeps only some of the
// messages (the soonest, say) holds no more than those: the stream may
// hold a timer for every open order.
func (s *Stream) Each(ctx context.Context, fn func(subject string, data []byte), filters ...string) error {
	if err := s.under(filters...); err != nil {
		return err
	}
	if _, err := s.ensure(ctx); err != nil {
		return err
	}
	// One reset at most per fetch: nats.go rebuilds an ordered consumer
	// before each fetch, without the caller's context, and by default
	// tries for ever when it cannot (the connection closed, no meta
	// leader), which held the read, and the RPC that asked for it, past
	// its deadline. A fetch that fails is tried again while ctx lasts and
	// the connection is open (fetchRetry), unless the server refused it.
	cons, err := s.js.OrderedConsumer(ctx, s.name, jetstream.OrderedConsumerConfig{FilterSubjects: filters, MaxResetAttempts: 1})
	if err != nil {
		return s.missing(fmt.Errorf("schedule: read: %w", err))
	}
	defer streamcfg.DropConsumer(ctx, s.js, s.name, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return s.missing(fmt.Errorf("schedule: read: %w", err))
	}
	for left := info.NumPending; left > 0; {
		// Without a wait: a timer that fires or is purged between the
		// count and the fetch leaves fewer than counted, and a fetch
		// that waited for the count held the list up for its 5 s.
		var batch jetstream.MessageBatch
		for try := 1; ; try++ {
			if err := ctx.Err(); err != nil {
				return s.missing(fmt.Errorf("schedule: read: %w", err))
			}
			if batch, err = cons.FetchNoWait(int(min(left, 1000))); err == nil {
				break
			}
			if s.js.Conn().IsClosed() || refused(err) || backoff.Sleep(ctx, fetchRetry.Delay(try)) != nil {
				return s.missing(fmt.Errorf("schedule: read: %w", err))
			}
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			fn(msg.Subject(), msg.Data())
			if md, err := msg.Metadata(); err == nil {
				left = md.NumPending
			}
		}
		if err := batch.Error(); err != nil {
			return s.missing(fmt.Errorf("schedule: read: %w", err))
		}
		if n == 0 {
			break
		}
	}
	return nil
}

// fetchRetry spaces the tries of a read's fetch that failed (its consumer
// could not be rebuilt: a meta leader election, a timeout).
var fetchRetry = backoff.Policy{Base: 100 * time.Millisecond, Cap: time.Second, Jitter: backoff.Equal}

// refused reports a fetch the server refused for good (the stream deleted
// under the read, say: 404): tried again, it is refused again, and the read
// would only end at its deadline. A server that cannot answer yet (503, no
// meta leader) and a request that went unanswered are tried again.
func refused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500
}

// Subscribe consumes the messages on the subjects matching filter (the
// firings, say) through the durable subscription name until ctx ends, then
// returns nil, with eventstore.Store.Subscribe's semantics: every message
// is delivered until it is settled, handed to handle on the WithWorkers
// goroutines, and Subscribe returns once every handle call has. It returns
// the error of an invalid option or name (eventstore.ErrInvalidOption, as
// the event store's), eventstore.ErrSubscriptionLost when the
// consumer is deleted or changed under it while it runs, the server's
// error setting it up, or the client's when it stops consuming on its own
// (the connection closed for good). The caller subscribes again.
func (s *Stream) Subscribe(ctx context.Context, name, filter string, handle func(Msg), opts ...eventstore.SubscribeOption) error {
	if err := s.under(filter); err != nil {
		return err
	}
	cfg, err := eventstore.NewSubscribeConfig(opts...)
	if err != nil {
		return err
	}
	if err := eventstore.ValidSubscriptionName(name); err != nil {
		return err
	}
	if _, err := s.ensure(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // ended before it began: the end asked for
		}
		return err
	}
	err = durable.Consume(ctx, s.js, durable.Config{
		Stream: s.name, Name: name, Description: cfg.Description, Filter: filter,
		AckWait: cfg.AckWait, MaxPending: cfg.MaxPending, Workers: cfg.Workers,
		Group: cfg.Group, PinnedTTL: cfg.PinnedTTL, TakeOver: cfg.TakeOver, PullExpiry: cfg.PullExpiry, Ready: cfg.Ready,
	}, func(msg jetstream.Msg) {
		m := Msg{Subject: msg.Subject(), Data: msg.Data(), NumDelivered: durable.NumDelivered(msg), Acknowledger: msg}
		if md, err := msg.Metadata(); err == nil {
			m.Sequence = md.Sequence.Stream
		}
		handle(m)
	})
	switch {
	case errors.Is(err, durable.ErrLost):
		return fmt.Errorf("%w: %s: %w", eventstore.ErrSubscriptionLost, name, err)
	case err != nil:
		return s.missing(fmt.Errorf("schedule: subscribe %s: %w", name, err))
	}
	return nil
}
