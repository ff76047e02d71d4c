package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/internal/durable"
)

// ErrSubscriptionLost reports that a subscription's durable consumer was
// deleted (by an operator, say) while it was being consumed, or changed
// under it so that the server refuses its pulls (a subscriber under the
// same name with another pinned group). Subscribing again recreates or
// updates it; the events not acknowledged yet are delivered again.
var ErrSubscriptionLost = errors.New("eventstore: subscription lost")

// Defaults of the subscribe options.
const (
	DefaultAckWait    = 30 * time.Second // WithAckWait
	DefaultMaxPending = 1000             // WithMaxPending
	DefaultPullExpiry = 5 * time.Second  // WithPullExpiry
)

// minPullExpiry is the shortest pull the NATS client takes.
const minPullExpiry = time.Second

// Acknowledger settles one delivery of a durable subscription. Until it is
// settled the server holds the delivery for its subscriber, and delivers it
// again when AckWait passes without word.
type Acknowledger interface {
	// Ack settles the delivery as handled, without waiting for the server.
	Ack() error
	// DoubleAck settles the delivery as handled and waits for the server
	// to confirm, so that a nil error means it will not be delivered again.
	DoubleAck(ctx context.Context) error
	// Nak hands the delivery back to be delivered again now.
	Nak() error
	// NakWithDelay hands the delivery back to be delivered again after delay.
	NakWithDelay(delay time.Duration) error
	// InProgress tells the server the delivery is being worked on, which
	// restarts its AckWait.
	InProgress() error
	// Term settles the delivery as one that will never be handled: it is
	// not delivered again.
	Term() error
}

// Delivery is one event delivered by a subscription, to be settled through
// its Acknowledger.
type Delivery struct {
	Event Recorded
	// NumDelivered is how many times the event has been delivered to the
	// subscription, this time included: more than 1 means an earlier
	// delivery was handed back or never settled (its subscriber may have
	// crashed half-way). 0 means the count is unknown.
	NumDelivered uint64
	Acknowledger
}

// SubscribeConfig is how a subscription is set up: its subscribe options
// applied to the defaults (NewSubscribeConfig). It is exported so that other
// implementations of Subscribe read the options the same way.
type SubscribeConfig struct {
	Description string
	AckWait     time.Duration // WithAckWait
	MaxPending  int           // WithMaxPending
	Workers     int           // WithWorkers
	Group       string        // WithPinnedGroup
	PinnedTTL   time.Duration // WithPinnedGroup
	TakeOver    bool          // WithTakeOver
	PullExpiry  time.Duration // WithPullExpiry
	Ready       func()        // WithReady
	// Skipped is WithSkipped's function.
	Skipped func(subject string, position uint64, err error)
}

// SubscribeOption configures Subscribe.
type SubscribeOption func(*SubscribeConfig) error

// NewSubscribeConfig returns the defaults with opts applied, or the error of
// the first invalid option.
func NewSubscribeConfig(opts ...SubscribeOption) (SubscribeConfig, error) {
	c := SubscribeConfig{AckWait: DefaultAckWait, MaxPending: DefaultMaxPending, Workers: 1, PullExpiry: DefaultPullExpiry}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return SubscribeConfig{}, err
		}
	}
	return c, nil
}

// WithDescription describes the subscription's consumer to operators.
func WithDescription(d string) SubscribeOption {
	return func(c *SubscribeConfig) error { c.Description = d; return nil }
}

// WithAckWait sets how long the server waits for a delivery to be settled
// (or reported in progress) before it delivers it again (default 30 s): how
// soon the deliveries a crashed subscriber held come back.
func WithAckWait(d time.Duration) SubscribeOption {
	return func(c *SubscribeConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: ack wait %v must be positive", ErrInvalidOption, d)
		}
		c.AckWait = d
		return nil
	}
}

// WithMaxPending sets how many deliveries may be unsettled at once (default
// 1000). Set to the number of workers, every delivery is being worked on
// rather than waiting out its AckWait in a buffer.
func WithMaxPending(n int) SubscribeOption {
	return func(c *SubscribeConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: max pending %d must be positive", ErrInvalidOption, n)
		}
		c.MaxPending = n
		return nil
	}
}

// WithWorkers sets how many handlers run at once (default 1: one at a time,
// in log order).
func WithWorkers(n int) SubscribeOption {
	return func(c *SubscribeConfig) error {
		if n < 1 {
			return fmt.Errorf("%w: workers %d must be positive", ErrInvalidOption, n)
		}
		c.Workers = n
		return nil
	}
}

// WithPinnedGroup makes the subscription one pinned priority group across
// the processes subscribing under the same name: the server delivers to
// one of them at a time, and to another when that one stops pulling for
// ttl. A subscriber keeps pulling while its handlers are busy (what it is
// delivered meanwhile waits for a worker), so the group moves only when it
// stops, is cut off from the server or another takes over (WithTakeOver),
// never because one job runs long.
func WithPinnedGroup(group string, ttl time.Duration) SubscribeOption {
	return func(c *SubscribeConfig) error {
		if !validGroup(group) {
			return fmt.Errorf("%w: group name %q: 1 to 16 of A-Z, a-z, 0-9, '-', '_', '/' and '='", ErrInvalidOption, group)
		}
		if ttl <= 0 {
			return fmt.Errorf("%w: pinned ttl %v must be positive", ErrInvalidOption, ttl)
		}
		c.Group, c.PinnedTTL = group, ttl
		return nil
	}
}

// WithTakeOver makes a pinned subscription take the group over when it
// starts, so one started after a crash does not wait out the dead one's
// pin (a live holder losing the pin this way finishes what it holds and
// stands by), and hand it over when it stops, so a standby takes over at
// once. It has no effect without WithPinnedGroup.
func WithTakeOver() SubscribeOption {
	return func(c *SubscribeConfig) error { c.TakeOver = true; return nil }
}

// WithPullExpiry sets how long one pull waits for deliveries (default 5 s).
// A pinned subscription pulls at least this often, which keeps its pin
// alive: keep it below the pinned TTL. At least 1 s: the NATS client
// refuses a shorter pull, so a shorter expiry is refused here rather than
// by every Subscribe.
func WithPullExpiry(d time.Duration) SubscribeOption {
	return func(c *SubscribeConfig) error {
		if d < minPullExpiry {
			return fmt.Errorf("%w: pull expiry %v below %v", ErrInvalidOption, d, minPullExpiry)
		}
		c.PullExpiry = d
		return nil
	}
}

// WithReady sets a function called once the subscription delivers (its
// consumer exists and is being pulled from), for a readiness check.
func WithReady(f func()) SubscribeOption {
	return func(c *SubscribeConfig) error { c.Ready = f; return nil }
}

// WithSkipped sets a function told of each message on the stream that is
// no event of this store (written there by hand, or by another program):
// Subscribe acknowledges and skips it, as nothing can act on it, and f lets
// the subscriber say so (an event a process manager never saw may be an
// order it never charged). err wraps ErrMalformedEvent. The memory store
// holds only events, so it never calls f.
func WithSkipped(f func(subject string, position uint64, err error)) SubscribeOption {
	return func(c *SubscribeConfig) error { c.Skipped = f; return nil }
}

// validGroup reports whether the server takes group as a priority group's
// name: a name it refuses failed every Subscribe with the server's error,
// which a caller retries for ever, rather than as an invalid option.
func validGroup(group string) bool {
	if group == "" || len(group) > 16 {
		return false
	}
	for _, r := range group {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-_/=", r)) {
			return false
		}
	}
	return true
}

// ValidSubscriptionName returns nil when name can name a subscription
// (Subscribe), and otherwise the error Subscribe returns for it: names the
// server would not take for a consumer are refused, those over
// maxSubscriptionName bytes among them.
func ValidSubscriptionName(name string) error {
	if name == "" || len(name) > maxSubscriptionName || strings.ContainsAny(name, ".*>/\\") ||
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return fmt.Errorf("%w: subscription name %q", ErrInvalidOption, name)
	}
	return nil
}

// maxSubscriptionName is the longest consumer name the server takes
// (nats-server's JSMaxNameLen): a longer one was refused by the server
// alone, with no sentinel, and a caller subscribing again on any error but
// an invalid option tried for ever.
const maxSubscriptionName = 255

// Subscribe consumes the order log through the durable subscription name
// until ctx ends, then returns nil. It is for process managers: every event
// from the beginning of the log is delivered until it is settled (see
// Acknowledger), and a subscriber that stops, crashes or hands a delivery
// back gets it again (Delivery.NumDelivered counts). Deliveries are
// handed to handle on the WithWorkers goroutines, in log order; those that
// arrive while every worker is busy wait for one (up to WithMaxPending),
// and those still waiting when Subscribe returns, or that arrive after ctx
// ended, are handed back at once. Subscribe returns only after every handle
// call has returned.
//
// Subscribers under one name share the subscription: each event goes to
// one of them (or, pinned, to one subscriber at a time). The subscription
// is created on first use and updated to opts on every call; its position
// is kept by the server across restarts.
//
// Messages on the stream that are not events of this store are acknowledged
// and skipped, nothing can act on them, and told to WithSkipped's function.
//
// It returns an error wrapping ErrInvalidOption for an invalid option or
// name; ErrUnavailable when JetStream
// cannot be reached to set the subscription up, or the connection closes
// for good while it runs; ErrSubscriptionLost when its consumer is deleted
// or changed under it while it runs (one deleted while the subscriber was
// disconnected is noticed once it reconnects). While the connection is
// merely down, Subscribe waits for it. The caller subscribes again on any
// error but an invalid option.
func (s *Store) Subscribe(ctx context.Context, name string, handle func(Delivery), opts ...SubscribeOption) error {
	cfg, err := NewSubscribeConfig(opts...)
	if err != nil {
		return err
	}
	if err := ValidSubscriptionName(name); err != nil {
		return err
	}
	err = durable.Consume(ctx, s.js, durable.Config{
		Stream: s.cfg.streamName, Name: name, Description: cfg.Description, Filter: s.wildcard,
		AckWait: cfg.AckWait, MaxPending: cfg.MaxPending, Workers: cfg.Workers,
		Group: cfg.Group, PinnedTTL: cfg.PinnedTTL, TakeOver: cfg.TakeOver, PullExpiry: cfg.PullExpiry, Ready: cfg.Ready,
	}, func(msg jetstream.Msg) {
		rec, err := DecodeMsg(msg, s.cfg.prefix)
		if err != nil {
			_ = msg.Ack()
			if cfg.Skipped != nil {
				var pos uint64
				if md, merr := msg.Metadata(); merr == nil {
					pos = md.Sequence.Stream
				}
				cfg.Skipped(msg.Subject(), pos, err)
			}
			return
		}
		handle(Delivery{Event: rec, NumDelivered: durable.NumDelivered(msg), Acknowledger: msg})
	})
	if errors.Is(err, durable.ErrLost) {
		return fmt.Errorf("%w: %s: %w", ErrSubscriptionLost, name, err)
	}
	return classify("subscribe "+name, err)
}
