package memstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// errSettled reports a delivery settled twice, or handed back after it
// was settled.
var errSettled = errors.New("memstore: delivery already settled")

// subscription is the state of one durable subscription, shared by the
// subscribers under its name; s.mu guards it.
type subscription struct {
	next       uint64               // the first position never delivered
	unsettled  map[uint64]*delivery // delivered, not settled yet
	ackWait    time.Duration
	maxPending int
	group      string
	members    []*subscriber // of a pinned group, in the order they came
	pin        *subscriber   // the member a pinned group delivers to
	changed    chan struct{} // closed (and replaced) when a delivery may have become due
}

// delivery is an unsettled delivery: delivered count times, due again at
// due unless settled before.
type delivery struct {
	count uint64
	due   time.Time
}

// subscriber is one Subscribe call. It is not empty: pointers to distinct
// zero-size values may be equal.
type subscriber struct{ _ byte }

// signal wakes the subscribers waiting for a delivery; s.mu is held.
func (sub *subscription) signal() {
	close(sub.changed)
	sub.changed = make(chan struct{})
}

// Subscribe consumes the log through the durable subscription name until
// ctx ends, then returns nil, as eventstore.Store.Subscribe does: every event
// from the beginning of the log is delivered until it is settled, a
// delivery handed back (Nak) or left unsettled for AckWait is delivered
// again with its count, a terminated one is not, and subscribers under one
// name share the subscription (pinned, one of them at a time: the first,
// or the last with WithTakeOver, and the next when it stops). The
// subscription lives as long as the store. Subscribe returns only after
// every handle call has returned; it returns the error of an invalid
// option or name.
func (s *Store) Subscribe(ctx context.Context, name string, handle func(eventstore.Delivery), opts ...eventstore.SubscribeOption) error {
	cfg, err := eventstore.NewSubscribeConfig(opts...)
	if err != nil {
		return err
	}
	if err := eventstore.ValidSubscriptionName(name); err != nil {
		return err
	}
	sub, me := s.join(name, cfg)
	defer s.leave(sub, me)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for {
				d, ok := s.take(ctx, sub, me)
				if !ok {
					return
				}
				handle(d)
			}
		})
	}
	wg.Wait()
	return nil
}

// join registers a subscriber of subscription name, creating it on first
// use and updating it to cfg.
func (s *Store) join(name string, cfg eventstore.SubscribeConfig) (*subscription, *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = make(map[string]*subscription)
	}
	sub := s.subs[name]
	if sub == nil {
		sub = &subscription{next: 1, unsettled: make(map[uint64]*delivery), changed: make(chan struct{})}
		s.subs[name] = sub
	}
	sub.ackWait, sub.maxPending, sub.group = cfg.AckWait, cfg.MaxPending, cfg.Group
	me := &subscriber{}
	sub.members = append(sub.members, me)
	if sub.pin == nil || cfg.TakeOver {
		sub.pin = me
	}
	sub.signal()
	return sub, me
}

// leave unregisters a subscriber, handing the pin to the next member.
func (s *Store) leave(sub *subscription, me *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.members = slices.DeleteFunc(sub.members, func(m *subscriber) bool { return m == me })
	if sub.pin == me {
		sub.pin = nil
		if len(sub.members) > 0 {
			sub.pin = sub.members[0]
		}
	}
	sub.signal()
}

// take waits for the next delivery for me, and returns false when ctx
// ends first.
func (s *Store) take(ctx context.Context, sub *subscription, me *subscriber) (eventstore.Delivery, bool) {
	for ctx.Err() == nil {
		s.mu.Lock()
		d, wait, ok := s.pick(sub, me)
		appended, changed := s.appended, sub.changed
		s.mu.Unlock()
		if ok {
			return d, true
		}
		due := time.NewTimer(wait)
		if wait == 0 {
			due.Stop()
		}
		select {
		case <-ctx.Done():
		case <-appended:
		case <-changed:
		case <-due.C:
		}
		due.Stop()
	}
	return eventstore.Delivery{}, false
}

// pick returns the delivery due for me, if there is one: the lowest
// position due again, else the next event never delivered while fewer
// than maxPending are unsettled. Otherwise wait is how long until the next
// one falls due, 0 for no such time. s.mu is held.
func (s *Store) pick(sub *subscription, me *subscriber) (d eventstore.Delivery, wait time.Duration, ok bool) {
	if sub.group != "" && sub.pin != me {
		return eventstore.Delivery{}, 0, false
	}
	now := time.Now()
	var pos uint64
	for p, u := range sub.unsettled {
		if !u.due.After(now) {
			if pos == 0 || p < pos {
				pos = p
			}
		} else if w := u.due.Sub(now); wait == 0 || w < wait {
			wait = w
		}
	}
	if pos == 0 && sub.next <= uint64(len(s.log)) && len(sub.unsettled) < sub.maxPending {
		pos = sub.next
		sub.next++
		sub.unsettled[pos] = &delivery{}
	}
	if pos == 0 {
		return eventstore.Delivery{}, wait, false
	}
	u := sub.unsettled[pos]
	u.count++
	u.due = now.Add(sub.ackWait)
	a := &acker{s: s, sub: sub, pos: pos}
	return eventstore.Delivery{Event: s.at(pos), NumDelivered: u.count, Acknowledger: a}, 0, true
}

// acker settles one delivery. As the JetStream client's message does, it
// answers once: after an Ack, Term or Nak of it, every call (InProgress
// too) fails, and the event handed back by a Nak is delivered again
// whatever the handler calls after it.
type acker struct {
	s   *Store
	sub *subscription
	pos uint64
	// answered: this delivery was acknowledged, terminated or handed
	// back. s.mu guards it.
	answered bool
}

// update applies f to the delivery's state, if it is still unsettled and
// this delivery has not answered, and wakes the subscribers; settle
// removes it. Any call but InProgress (progress) answers the delivery.
func (a *acker) update(settle, progress bool, f func(*delivery)) error {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	u := a.sub.unsettled[a.pos]
	if u == nil || a.answered {
		return errSettled
	}
	a.answered = !progress
	if settle {
		delete(a.sub.unsettled, a.pos)
	} else {
		f(u)
	}
	a.sub.signal()
	return nil
}

// Ack settles the delivery as handled.
func (a *acker) Ack() error { return a.update(true, false, nil) }

// DoubleAck settles the delivery as handled; it is settled when it returns.
func (a *acker) DoubleAck(context.Context) error { return a.update(true, false, nil) }

// Term settles the delivery as one that will never be handled.
func (a *acker) Term() error { return a.update(true, false, nil) }

// Nak hands the delivery back to be delivered again now.
func (a *acker) Nak() error { return a.NakWithDelay(0) }

// NakWithDelay hands the delivery back to be delivered again after delay.
func (a *acker) NakWithDelay(delay time.Duration) error {
	return a.update(false, false, func(u *delivery) { u.due = time.Now().Add(delay) })
}

// InProgress restarts the delivery's AckWait.
func (a *acker) InProgress() error {
	return a.update(false, true, func(u *delivery) { u.due = time.Now().Add(a.sub.ackWait) })
}
