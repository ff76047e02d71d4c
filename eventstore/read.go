package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"math"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// followInactiveThreshold lets the server drop the consumer of a Follow
	// whose process died, since nats-server allows only 1,000 consumers per
	// stream by default. A live Follow keeps it active with its pull
	// requests, and the ordered consumer recreates it after a longer outage.
	followInactiveThreshold = 10 * time.Second
	// tailWait bounds how long Read keeps asking for events before its head
	// that the answering replica does not have (it lags, or they were
	// deleted), and tailRetry is the pause between those requests.
	tailWait  = 2 * time.Second
	tailRetry = 20 * time.Millisecond
)

// Load returns all events of an order, oldest first, or an empty slice when
// the order has none. It is LoadAfter(ctx, orderID, 0).
func (s *Store) Load(ctx context.Context, orderID string) ([]Recorded, error) {
	if err := s.connected(); err != nil {
		return nil, err
	}
	return s.LoadAfter(ctx, orderID, 0)
}

// epoch is the count of the connection's reconnects: a log that went back
// did so across a server's restart, which made the connection reconnect
// (see versionCache). 0 without a connection of the store's own.
func (s *Store) epoch() uint64 {
	if s.nc == nil {
		return 0
	}
	return s.nc.Stats().Reconnects
}

// connected fails fast while the connection is down or reconnecting: a
// request would otherwise wait in the reconnect buffer until its deadline,
// and a caller is better served by an immediate ErrUnavailable it can retry.
func (s *Store) connected() error {
	if s.nc != nil && !s.nc.IsConnected() {
		if s.nc.IsClosed() {
			return fmt.Errorf("%w: %w", ErrUnavailable, nats.ErrConnectionClosed)
		}
		return fmt.Errorf("%w: not connected to NATS (%s)", ErrUnavailable, s.nc.Status())
	}
	return nil
}

// LoadAfter returns the order's events with Position > afterPosition, oldest
// first, or an empty slice when there are none. Loaded from the start
// (afterPosition 0), events written before versions were recorded are
// numbered by their place in the history. It reads with direct gets,
// without creating a consumer: each event whose position the store knows
// (the order's trail, see trailAfter) at that position, then one plain get
// for an event after them, and only when there is one (or no trail) the
// rest with batched gets on the order's subject, page after page.
// On a replicated stream any current replica may answer, so an event
// appended a moment ago, even one acknowledged to this process, may be
// missing; Append's expected revision catches such a stale read, and
// LoadLatest is the read to use where no append follows.
//
// Errors: ErrInvalidOrderID; ErrUnavailable when JetStream cannot be reached
// or does not answer in time (without a ctx deadline the JetStream context's
// DefaultTimeout applies to the whole load); ErrMalformedEvent when a stored
// message cannot be decoded.
func (s *Store) LoadAfter(ctx context.Context, orderID string, afterPosition uint64) ([]Recorded, error) {
	if err := validateOrderID(orderID); err != nil {
		return nil, err
	}
	recs := []Recorded{}
	if afterPosition == math.MaxUint64 {
		return recs, nil
	}
	ep := s.epoch() // before anything is asked: see versionMark.epoch
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	subject := s.Subject(orderID)
	req := directGetRequest{Seq: afterPosition + 1, NextFor: subject, Batch: s.pageSize, MaxBytes: s.pageBytes}
	// What the trail knows is asked for by position, and at the same time
	// whether anything follows it (see trailAfter): one plain get of the
	// order's first event after it, which finds none unless another
	// process appended. Not a batched get: to answer one, the server
	// counts the order's events it has left, and from a position in an
	// older half of the stream it walks every message of that position's
	// block before it (nats-server's fileStore.NumPending): 6.8–9.4% of
	// ordersd's CPU under the mixed load on a young log, and on any log
	// up to a block's walk for each load of an order whose last event is
	// older than half of it. When the trail goes on past the gets (an
	// order of more than maxTrailGets events after afterPosition), events
	// do follow them, and the first page of them is asked for instead.
	var page *pendingGet // that first page, asked for already
	if positions, version, more := s.versions.trailAfter(orderID, afterPosition); len(positions) > 0 {
		at, err := s.send(&directGetRequest{NextFor: subject}, positions)
		if err != nil {
			return nil, classify("load order "+orderID, err)
		}
		after := positions[len(positions)-1] + 1
		var probe *pendingGet
		if more {
			next := req
			next.Seq = after
			page, err = s.send(&next, nil)
		} else {
			probe, err = s.send(&directGetRequest{NextFor: subject}, []uint64{after})
		}
		if err != nil {
			at.close()
			return nil, classify("load order "+orderID, err)
		}
		defer page.close()
		defer probe.close()
		var ok bool
		if recs, ok, err = at.receiveAt(ctx, positions, version, recs); err != nil {
			return nil, classify("load order "+orderID, err)
		}
		switch {
		case !ok:
			s.versions.cutTrail(orderID, afterPosition)
			page.close()
			page = nil
		case more:
			req.Seq = after
		default:
			found, err := probe.found(ctx)
			if err != nil {
				return nil, classify("load order "+orderID, err)
			}
			if !found {
				return s.loaded(orderID, afterPosition, recs, ep), nil
			}
			req.Seq = after
		}
	}
	for {
		n := len(recs)
		var pending uint64
		var err error
		if page != nil {
			recs, pending, err = page.receive(ctx, recs)
			page = nil
		} else {
			recs, pending, err = s.getBatch(ctx, &req, recs)
		}
		if err != nil {
			return nil, classify("load order "+orderID, err)
		}
		if pending == 0 || len(recs) == n {
			return s.loaded(orderID, afterPosition, recs, ep), nil
		}
		req.Seq = recs[len(recs)-1].Position + 1
	}
}

// loaded puts a load's events (the order's after afterPosition) on its
// trail and, for a load from the start, numbers events written before
// versions were recorded by their place and remembers the last, as seen by
// a load begun in epoch ep; it returns recs.
func (s *Store) loaded(orderID string, afterPosition uint64, recs []Recorded, ep uint64) []Recorded {
	s.versions.extendTrail(orderID, recs)
	if afterPosition == 0 && len(recs) > 0 {
		for i := range recs {
			if recs[i].Version == 0 { // written before versions were recorded
				recs[i].Version = uint64(i) + 1
			}
		}
		last := recs[len(recs)-1]
		s.versions.remember(orderID, last.Version, last.Position, ep)
	}
	return recs
}

// Read iterates over the global log from position from (0 and 1 both mean
// the beginning) up to the head of the stream as of the call, in order, and
// then ends. Events appended during the iteration are not included; use
// Follow for those. Deleted positions are skipped.
//
// It pages with batched direct gets rather than an ordered consumer: a
// consumer per call would be about twice as fast on a long log, but the
// server allows only 1,000 consumers per stream by default, and frequent
// reads would crowd out the consumers of projections and workers. On a
// replicated stream a lagging replica may answer; Read then asks again for
// up to two seconds before it concludes that the rest was deleted.
//
// On error it yields one (Recorded{}, err) and ends: ErrUnavailable when
// JetStream cannot be reached or a page does not arrive in time (each page
// is bounded by the JetStream context's DefaultTimeout when ctx has no
// deadline), ErrMalformedEvent for a message that cannot be decoded, or the
// wrapped ctx error when ctx ends before the head is reached (a deadline
// counts as ErrUnavailable): a Read cut short is never mistaken for a
// complete one. Stopping the loop early is fine.
func (s *Store) Read(ctx context.Context, from uint64) iter.Seq2[Recorded, error] {
	return func(yield func(Recorded, error) bool) {
		head, err := s.Head(ctx)
		if err != nil {
			yield(Recorded{}, err)
			return
		}
		seq := max(from, 1)
		var page []Recorded
		var giveUp time.Time
		for seq <= head {
			// Filtered even on a stream of order subjects only, as the
			// batch reads are: subjects may be added to the stream after
			// New looked at it, and a message on one was read as a
			// malformed event, which ended the read.
			req := directGetRequest{Seq: seq, NextFor: s.wildcard, Batch: int(min(uint64(s.pageSize), head-seq+1)), MaxBytes: s.pageBytes}
			pctx, cancel := s.withTimeout(ctx)
			var pending uint64
			page, pending, err = s.getBatch(pctx, &req, page[:0])
			cancel()
			if err != nil {
				yield(Recorded{}, classify(fmt.Sprintf("read from position %d", seq), err))
				return
			}
			for _, r := range page {
				if r.Position > head {
					return
				}
				if !yield(r, nil) || r.Position == head {
					return
				}
				seq = r.Position + 1
			}
			if pending > 0 {
				giveUp = time.Time{}
				continue
			}
			// The answering replica has nothing more before the head.
			if !s.replicated {
				return // a single copy: the rest was deleted
			}
			if giveUp.IsZero() {
				giveUp = time.Now().Add(tailWait)
			} else if time.Now().After(giveUp) {
				return
			}
			t := time.NewTimer(tailRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				yield(Recorded{}, classify(fmt.Sprintf("read from position %d", seq), ended(ctx)))
				return
			case <-t.C:
			}
		}
	}
}

// Follow iterates over the global log from position from (0 and 1 both mean
// the beginning), in order, and then keeps delivering events as they are
// appended, until ctx is done. It uses an ordered consumer, which survives
// reconnects and server restarts by recreating itself where it left off.
//
// When ctx is done the iteration ends without yielding an error: the caller
// cancelled it and can check ctx.Err() itself. Other errors are yielded once
// as (Recorded{}, err) and end the iteration: ErrUnavailable when the
// consumer cannot be created or the connection is closed, ErrMalformedEvent
// for a message that cannot be decoded (a projection must not skip events
// silently).
func (s *Store) Follow(ctx context.Context, from uint64) iter.Seq2[Recorded, error] {
	return func(yield func(Recorded, error) bool) {
		cfg := s.consumerConfig(from, &readOptions{})
		cfg.InactiveThreshold = followInactiveThreshold
		fail := func(err error) {
			if ctx.Err() == nil {
				yield(Recorded{}, classify(fmt.Sprintf("follow from position %d", from), err))
			}
		}
		cctx, cancel := s.withTimeout(ctx)
		cons, err := s.js.OrderedConsumer(cctx, s.cfg.streamName, cfg)
		cancel()
		if err != nil {
			fail(err)
			return
		}
		msgs, err := cons.Messages()
		if err != nil {
			fail(err)
			return
		}
		defer msgs.Stop()
		// Stop also interrupts the ordered consumer's own retry loop, which
		// does not watch ctx, so that Follow ends promptly during an outage.
		defer context.AfterFunc(ctx, msgs.Stop)()
		for {
			m, err := msgs.Next(jetstream.NextContext(ctx))
			if err != nil {
				fail(err)
				return
			}
			r, err := DecodeMsg(m, s.cfg.prefix)
			if err != nil {
				fail(err)
				return
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// directGetRequest is nats-server's JSApiMsgGetRequest, reduced to the
// fields of a batched get.
type directGetRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// Status codes of direct get control messages.
const (
	statusEndOfBatch   = "204"
	statusNotFound     = "404"
	statusNoResponders = "503"
	headerNumPending   = "Nats-Num-Pending"
)

// getBatch runs one batched direct get and appends the decoded events to dst.
// It returns how many matching messages the server still had after the
// last one it sent, so the caller knows whether to ask for another page.
//
// It talks to the direct get API itself instead of using
// jetstreamext.GetBatch because that helper ends its iterator silently on a
// timeout (a short read would pass for the whole history) and reports "no
// responders" as an unsupported server.
func (s *Store) getBatch(ctx context.Context, req *directGetRequest, dst []Recorded) ([]Recorded, uint64, error) {
	g, err := s.send(req, nil)
	if err != nil {
		return dst, 0, err
	}
	return g.receive(ctx, dst)
}

// pendingGet is a direct get sent, whose answers are on their way to its
// own inbox.
type pendingGet struct {
	s   *Store
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// send sends req, or, with seqs, one copy of req for each of them at that
// sequence, all answered to one inbox.
func (s *Store) send(req *directGetRequest, seqs []uint64) (*pendingGet, error) {
	// A channel sized for the whole answer (a page plus the end-of-batch
	// marker, or one message per sequence) so that nothing is ever
	// dropped: SubscribeSync would allocate its default 64k-slot channel
	// (512 KiB) for every page.
	ch := make(chan *nats.Msg, max(req.Batch, len(seqs), 1)+1)
	sub, err := s.nc.ChanSubscribe(s.nc.NewInbox(), ch)
	if err != nil {
		return nil, err
	}
	g := &pendingGet{s: s, sub: sub, ch: ch}
	publish := func(r directGetRequest) error {
		body, err := json.Marshal(&r)
		if err != nil {
			return err
		}
		return s.nc.PublishRequest(s.directSub, sub.Subject, body)
	}
	if seqs == nil {
		err = publish(*req)
	}
	for _, seq := range seqs {
		r := *req
		r.Seq = seq
		if err = publish(r); err != nil {
			break
		}
	}
	if err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// close stops the answers; it may be called again.
func (g *pendingGet) close() {
	if g != nil {
		_ = g.sub.Unsubscribe()
	}
}

// next waits for the next answer.
func (g *pendingGet) next(ctx context.Context) (*nats.Msg, error) {
	select {
	case m := <-g.ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// found reads the answer to one plain get (no batch) and reports whether
// it found a message, and closes g.
func (g *pendingGet) found(ctx context.Context) (bool, error) {
	defer g.close()
	m, err := g.next(ctx)
	if err != nil {
		return false, err
	}
	if m.Header.Get(jetstream.SequenceHeader) != "" {
		return true, nil
	}
	return false, g.statusError(m)
}

// statusError reads an answer that carries no message: nil for 404
// (nothing there), the error of any other status.
func (g *pendingGet) statusError(m *nats.Msg) error {
	switch status := m.Header.Get("Status"); status {
	case statusNotFound:
		return nil
	case statusNoResponders:
		return nats.ErrNoResponders
	default:
		return fmt.Errorf("direct get on stream %s: status %s %s", g.s.cfg.streamName, status, m.Header.Get("Description"))
	}
}

// receive reads the answer to a batched get, appending the events to dst,
// and closes g. It returns how many matching messages the server still had
// after the last one it sent.
func (g *pendingGet) receive(ctx context.Context, dst []Recorded) ([]Recorded, uint64, error) {
	defer g.close()
	for {
		m, err := g.next(ctx)
		if err != nil {
			return dst, 0, err
		}
		if m.Header.Get(jetstream.SequenceHeader) == "" {
			if m.Header.Get("Status") != statusEndOfBatch {
				return dst, 0, g.statusError(m)
			}
			pending, err := strconv.ParseUint(m.Header.Get(headerNumPending), 10, 64)
			if err != nil {
				return dst, 0, fmt.Errorf("%w: direct get end of batch without %s", ErrMalformedEvent, headerNumPending)
			}
			return dst, pending, nil
		}
		r, err := recordedFromDirect(m, g.s.cfg.prefix)
		if err != nil {
			return dst, 0, err
		}
		dst = append(dst, r)
	}
}
