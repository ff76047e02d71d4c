package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Limits of one Append.
const (
	// MaxEventsPerAppend is nats-server's default limit of messages in one
	// atomic batch.
	MaxEventsPerAppend = 1000
	// MaxAppendBytes bounds the payload plus headers of one Append: a command
	// never legitimately produces more, and a replicated batch travels as one
	// Raft proposal.
	MaxAppendBytes = 8 << 20
	// headerReserve is room for the headers added after the size check: the
	// expected sequence and, in batches, the batch id, sequence and commit.
	headerReserve = 160
)

// Append appends events to an order if the order's stream revision (the
// number of events in its history, the version of its last event) is still
// expectedRevision; 0 means the order must not exist yet. The events get the
// versions that follow it, in their metadata header (HeaderMeta). One event
// is one publish; several are one atomic batch: all of them land,
// contiguously, or none does.
//
// The server checks the revision as the subject sequence of the order's last
// event (Nats-Expected-Last-Subject-Sequence); the store finds the sequence
// of the event at expectedRevision itself, from what it last loaded or
// appended for the order, or with one direct get.
//
// When Meta.RequestID of the events is set, each event gets the message id
// "<requestID>:<index>", and a retry of a request that was already appended
// returns the original result with Duplicate set instead of an error: the
// server's duplicate window catches retries with the same revision, and a
// retry whose expected revision has become stale, or already counts the
// original, is recognised from the order's history (events whose request
// id is the request id), however old the original is. A retry that the
// server takes for new, once the window has passed, at a revision that
// already counts the original is appended again: a caller that reloads
// before retrying finds its request in the history itself.
//
// Errors: ErrInvalidOrderID, ErrEmptyAppend, ErrInvalidEvent and ErrTooLarge
// before anything is sent; ErrConflict when expectedRevision is stale;
// ErrUnavailable when JetStream cannot be reached or does not answer in time
// (also when a try without a request id got no answer and the next one
// found the order moved on); in those cases the events may or may not have
// been appended, and a retry with the same request id resolves which.
func (s *Store) Append(ctx context.Context, orderID string, expectedRevision uint64, events []EventData) (AppendResult, error) {
	if err := validateOrderID(orderID); err != nil {
		return AppendResult{}, err
	}
	if len(events) == 0 {
		return AppendResult{}, ErrEmptyAppend
	}
	if err := s.connected(); err != nil {
		return AppendResult{}, err
	}
	msgs, err := s.messages(orderID, expectedRevision, events)
	if err != nil {
		return AppendResult{}, err
	}
	ep := s.epoch() // before anything is asked: see versionMark.epoch
	seq, err := s.sequenceAt(ctx, orderID, expectedRevision, ep)
	var res AppendResult
	if err == nil {
		res, err = s.publish(ctx, msgs, seq)
	}
	// Remembered whether the append is new or a retry answered with the
	// original (by the server's duplicate window, or found in the
	// history): a publish retried across a leader change ends as the
	// latter, and LoadLatest must not then take a former leader's answer
	// without the order for the truth (see seen).
	if err == nil && !res.Duplicate {
		res.Version = expectedRevision + uint64(len(events))
		s.versions.appended(orderID, expectedRevision, len(events), res.Position, ep)
		return res, nil
	}
	if res, err = s.settle(ctx, orderID, expectedRevision, events, res, err); err == nil {
		s.versions.remember(orderID, res.Version, res.Position, ep)
	}
	return res, err
}

// messages checks events (one request, within the size limits) and builds
// their messages, the first at revision expectedRevision+1.
func (s *Store) messages(orderID string, expectedRevision uint64, events []EventData) ([]*nats.Msg, error) {
	if len(events) > MaxEventsPerAppend {
		return nil, fmt.Errorf("%w: %d events, at most %d per append", ErrTooLarge, len(events), MaxEventsPerAppend)
	}
	rid := events[0].Meta.RequestID
	for i := range events {
		if events[i].Meta.RequestID != rid {
			return nil, fmt.Errorf("%w: event %d has request id %q, event 0 has %q: one append is one request",
				ErrInvalidEvent, i, events[i].Meta.RequestID, rid)
		}
	}
	subject := s.Subject(orderID)
	maxPayload := int(s.nc.MaxPayload())
	msgs := make([]*nats.Msg, len(events))
	total := 0
	for i := range events {
		h, err := eventHeader(&events[i], expectedRevision+uint64(i)+1, s.cfg.format)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if rid != "" {
			h[jetstream.MsgIDHeader] = []string{messageID(rid, i)}
		}
		size := headerSize(h) + len(events[i].Data) + headerReserve
		if maxPayload > 0 && size > maxPayload {
			return nil, fmt.Errorf("%w: event %d is %d bytes with headers, the server allows %d", ErrTooLarge, i, size, maxPayload)
		}
		if total += size; total > MaxAppendBytes {
			return nil, fmt.Errorf("%w: more than %d bytes in one append", ErrTooLarge, MaxAppendBytes)
		}
		msgs[i] = &nats.Msg{Subject: subject, Header: h, Data: events[i].Data}
	}
	return msgs, nil
}

// settle answers an append that the server reported as a duplicate (res)
// or refused (err): the original result of a retried request, or the
// classified error.
func (s *Store) settle(ctx context.Context, orderID string, expectedRevision uint64, events []EventData, res AppendResult, err error) (AppendResult, error) {
	rid := events[0].Meta.RequestID
	// Only these rare paths name the operation in their errors.
	op := fmt.Sprintf("append %d event(s) to order %s at revision %d", len(events), orderID, expectedRevision)
	if err == nil && res.Duplicate {
		// The server answers with the message whose id it matched, the
		// first of the retry's events; the original may have had more
		// (the store knows a request by its id alone), and the answer is
		// its last, which the order's history holds. When it does not
		// (another order used the request id, as the server's window is
		// keyed by message id alone, or the history came from a replica
		// that lags the leader), the leader says whose the message is, so
		// that a reused id never reports success for events never written.
		if orig, found, lerr := s.findRequest(ctx, orderID, rid); lerr == nil && found {
			return AppendResult{Position: orig.Position, Version: orig.Version, Duplicate: true}, nil
		}
		if res.Version, err = s.checkOwner(ctx, orderID, rid, res.Position); err != nil {
			var reused *RequestReusedError
			if errors.As(err, &reused) {
				return AppendResult{}, err
			}
			return AppendResult{}, classify(op+": request "+rid, err)
		}
	}
	if err == nil {
		return res, nil
	}
	dupID := apiErrorCode(err) == codeAtomicPublishDuplicateMsgID
	if rid != "" && (dupID || errors.Is(classify(op, err), ErrConflict)) {
		// nats-server checks the expected subject sequence before message ids
		// for single publishes on a non-clustered stream, and answers batches
		// with duplicate ids without the original position; both are settled
		// from the order's history.
		if orig, found, lerr := s.findRequest(ctx, orderID, rid); lerr != nil {
			return AppendResult{}, classify(op+": looking for request "+rid, lerr)
		} else if found {
			return AppendResult{Position: orig.Position, Version: orig.Version, Duplicate: true}, nil
		}
		if dupID {
			return AppendResult{}, fmt.Errorf("eventstore: %s: request id %q was already used for other events: %w: %w", op, rid, ErrConflict, err)
		}
	}
	return AppendResult{}, classify(op, err)
}

// publishAttempt bounds one try of a publish. While the stream elects a
// leader a publish gets no answer at all; a try that waited out the whole
// deadline of its caller would keep it waiting long after the new leader
// took over, so the publish is tried again every publishAttempt instead,
// with the same message ids, which the server deduplicates.
const publishAttempt = time.Second

// publish sends the events of one append, trying again while the stream
// does not answer, within ctx (or the JetStream context's DefaultTimeout
// when ctx has no deadline).
func (s *Store) publish(ctx context.Context, msgs []*nats.Msg, expected uint64) (AppendResult, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	unanswered := false
	for {
		var res AppendResult
		var err error
		if len(msgs) == 1 {
			res, err = s.publishOne(ctx, msgs[0], expected)
		} else {
			actx, acancel := context.WithTimeout(ctx, publishAttempt)
			res, err = s.publishBatch(actx, msgs, expected)
			acancel()
		}
		if unanswered && msgs[0].Header.Get(jetstream.MsgIDHeader) == "" && errors.Is(classify("", err), ErrConflict) {
			// An earlier try got no answer, and the server may have stored
			// it: then this one found its own events in the way. Without
			// message ids nothing tells the two apart, so the append is
			// what an unanswered one is, not a conflict, whose caller would
			// decide again and append a second time.
			return AppendResult{}, fmt.Errorf("%w: a try got no answer and the next found the order moved on, maybe by that try (%v)", ErrUnavailable, err)
		}
		if err == nil || ctx.Err() != nil || !s.nc.IsConnected() || !errors.Is(classify("", err), ErrUnavailable) || storeRefused(err) {
			return res, err
		}
		// Nobody took a publish that met no responders: it stored nothing.
		unanswered = unanswered || !errors.Is(err, nats.ErrNoResponders)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < publishRetryPause {
			return res, err
		}
		t := time.NewTimer(publishRetryPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, err
		case <-t.C:
		}
	}
}

// messageID is the message id of the event at index i of an append under
// request id rid: the server's duplicate window holds it.
func messageID(rid string, i int) string { return rid + ":" + strconv.Itoa(i) }

// MessageIDSize is what the message id of the event at index i of an
// append under request id rid adds to the event's size as the JetStream
// store checks it against the server's max payload (0 without a request
// id), for a store that must refuse the same events (the memory store).
func MessageIDSize(rid string, i int) int {
	if rid == "" {
		return 0
	}
	return len(jetstream.MsgIDHeader) + len(messageID(rid, i)) + 4 // as headerSize counts a value
}

// publishRetryPause separates the tries of a publish that got no answer.
const publishRetryPause = 50 * time.Millisecond

// publishOne publishes m expecting the order's last event at position
// expected, as jetstream.PublishMsg would but reading the answer with
// parsePubAck, and waits publishAttempt for the answer at most (less when
// ctx ends sooner). A publish nobody answers (nats.ErrNoResponders, while
// the stream elects a leader) is returned at once: publish tries it again.
//
// It waits with the connection's own timer rather than a context of its
// own, which cost seven allocations per append; ctx is looked at before
// the publish, not while it waits: the wait is short and bounded, and a
// caller that went away meanwhile gets its answer a moment later.
func (s *Store) publishOne(ctx context.Context, m *nats.Msg, expected uint64) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	wait, err := waitWithin(ctx, publishAttempt)
	if err != nil {
		return AppendResult{}, err
	}
	m.Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(expected, 10)}
	resp, err := s.nc.RequestMsg(m, wait)
	if err != nil {
		return AppendResult{}, err
	}
	ack, err := parsePubAck(resp.Data)
	if err != nil {
		return AppendResult{}, err
	}
	return AppendResult{Position: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// waitWithin returns limit, or less when ctx's deadline comes sooner, and
// context.DeadlineExceeded when it has passed.
func waitWithin(ctx context.Context, limit time.Duration) (time.Duration, error) {
	if dl, ok := ctx.Deadline(); ok {
		if limit = min(limit, time.Until(dl)); limit <= 0 {
			return 0, context.DeadlineExceeded
		}
	}
	return limit, nil
}

func (s *Store) publishBatch(ctx context.Context, msgs []*nats.Msg, expected uint64) (AppendResult, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	// The first message is acknowledged before the rest is sent so that a
	// batch the server cannot start (limits, atomic publish disabled) fails
	// with its real reason instead of as an incomplete batch at commit.
	ackWait, err := waitWithin(ctx, s.js.Options().DefaultTimeout)
	if err != nil {
		return AppendResult{}, err
	}
	bp, err := jetstreamext.NewBatchPublisher(s.js, jetstreamext.BatchFlowControl{AckFirst: true, AckTimeout: ackWait})
	if err != nil {
		return AppendResult{}, err
	}
	last := len(msgs) - 1
	for i, m := range msgs[:last] {
		var opts []jetstreamext.BatchMsgOpt
		if i == 0 {
			opts = append(opts, jetstreamext.WithBatchExpectLastSequencePerSubject(expected))
		}
		if err := bp.AddMsg(m, opts...); err != nil {
			_ = bp.Discard() // the server drops the staged messages when the batch times out
			return AppendResult{}, err
		}
	}
	ack, err := bp.CommitMsg(ctx, msgs[last])
	if err != nil {
		return AppendResult{}, err
	}
	return AppendResult{Position: ack.Sequence}, nil
}

// findRequest looks for events of request rid in the order's history and
// returns the last one. The whole history: a retry's expected revision may
// be stale, or may already count the original (its caller reloaded the
// order after an answer that never came). A history that lacks it is read
// again as the leader has it: a retry comes right after its original,
// when a replica answering the first read may not hold it yet, and the
// retry was told ErrConflict for its own change.
func (s *Store) findRequest(ctx context.Context, orderID, rid string) (Recorded, bool, error) {
	for _, load := range []func(context.Context, string, uint64) ([]Recorded, error){s.LoadAfter, s.LoadLatestAfter} {
		recs, err := load(ctx, orderID, 0)
		if err != nil {
			return Recorded{}, false, err
		}
		var last Recorded
		found := false
		for _, r := range recs {
			if r.Meta.RequestID == rid {
				last, found = r, true
			}
		}
		if found {
			return last, found, nil
		}
	}
	return Recorded{}, false, nil
}

// checkOwner verifies that the event at pos belongs to orderID, and returns
// its version. It asks the stream leader, which acknowledged the duplicate:
// a lagging replica may not hold the original yet.
func (s *Store) checkOwner(ctx context.Context, orderID, rid string, pos uint64) (uint64, error) {
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	raw, found, err := s.leaderGet(ctx, msgGetRequest{Seq: pos})
	if err != nil && !errors.Is(err, ErrMalformedEvent) {
		return 0, err
	}
	var rec Recorded
	if err == nil && found {
		rec, err = DecodeRawMsg(raw, s.cfg.prefix)
	}
	if err != nil || !found {
		return 0, fmt.Errorf("%w: the request id was already used for another order", ErrConflict)
	}
	if rec.OrderID != orderID {
		return 0, &RequestReusedError{RequestID: rid, OrderID: rec.OrderID, Position: pos}
	}
	return rec.Version, nil
}

// sequenceAt returns the log position of the order's event at version, the
// subject sequence the server compares with the order's last event: 0 for
// version 0. It fails with ErrConflict when the order's last event is not at
// version, so that nothing is sent for a revision known to be stale. ep is
// the connection's epoch when the append began (Store.epoch).
func (s *Store) sequenceAt(ctx context.Context, orderID string, version, ep uint64) (uint64, error) {
	if version == 0 {
		return 0, nil
	}
	if seq, ok := s.versions.lookup(orderID, version, ep); ok {
		return seq, nil
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	raw, err := s.stream.GetLastMsgForSubject(ctx, s.Subject(orderID))
	found := !errors.Is(err, jetstream.ErrMsgNotFound)
	if found && err != nil {
		return 0, err
	}
	var last Recorded
	if found {
		if last, err = DecodeRawMsg(raw, s.cfg.prefix); err != nil {
			return 0, err
		}
	}
	if !found || (last.Version != 0 && last.Version < version) {
		// A direct get may be answered by a replica behind the leader:
		// an order with fewer events than expected there may have them
		// all on the leader, whose answer decides (a log never loses
		// events, so more than expected is stale wherever it is read).
		raw, found, err = s.leaderGet(ctx, msgGetRequest{LastFor: s.Subject(orderID)})
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, fmt.Errorf("%w: order %s has no events, revision %d expected", ErrConflict, orderID, version)
		}
		if last, err = DecodeRawMsg(raw, s.cfg.prefix); err != nil {
			return 0, err
		}
	}
	if last.Version == 0 {
		// Written before versions were recorded: the order's revision is
		// the number of its events.
		info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(s.Subject(orderID)))
		if err != nil {
			return 0, err
		}
		last.Version = info.State.Subjects[s.Subject(orderID)]
	}
	s.versions.remember(orderID, last.Version, last.Position, ep)
	if last.Version != version {
		return 0, fmt.Errorf("%w: order %s is at revision %d, %d expected", ErrConflict, orderID, last.Version, version)
	}
	return last.Position, nil
}

// maxVersionsKept bounds versionCache: about 130 bytes an order, and 8 more
// for each event of its trail.
const maxVersionsKept = 1 << 16

// versionCache remembers, per order, the version and log position of the
// last event the store loaded or appended, so that an append at that
// version needs no look-up, and the positions of the order's first events
// (its trail), so that a load asks for each by its position. While the log
// keeps what it acknowledged, what it holds never goes stale (the event at
// a version keeps its position), it may only be behind the order, which the
// server's check of the expected sequence then catches as a conflict. A
// log that went back (a NATS server restarted without its last events)
// reuses positions: the order's last event may be at the position
// remembered for a later version of it, written since by another process
// at a lower one, and the server's check passes. Such a restart makes the
// connection reconnect, so a version's position is taken only within the
// connection's epoch it was seen in (versionMark.epoch); a trail checks
// itself at every load.
//
// It keeps two generations of up to maxVersionsKept/2 orders each: an
// order written goes into the current one, and when that is full it
// becomes the previous one, and the previous one is dropped. So the last
// maxVersionsKept/2 orders written are always remembered (LoadLatest's
// refusal of a former leader's older answer needs that of the orders
// acknowledged a moment before), and the current generation never loses
// an entry: one map at its bound, an entry dropped for each new order,
// filled with deleted slots that every look-up of a new order probed
// past, 0.76 µs an append (BenchmarkVersionCacheNewOrders). The previous
// generation loses only the orders written again, which move to the
// current one.
type versionCache struct {
	mu        sync.Mutex
	cur, prev map[string]versionMark
}

// versionMark is what versionCache holds for an order.
type versionMark struct {
	version, position uint64
	// epoch is the connection's (Store.epoch) when the read or append
	// that saw version at position began: a reconnect since may have
	// been to a server that lost it.
	epoch uint64
	// seen is the highest position seen; it differs from position when a
	// lagging replica's read came after an append. seenAt is when it was
	// raised, in Unix nanoseconds (WithLeaderStepDown).
	seen   uint64
	seenAt int64
	// trail holds the positions of the order's events at versions 1 to
	// len(trail), as loads and appends of this process saw them.
	trail []uint64
}

func (c *versionCache) remember(orderID string, version, position, epoch uint64) {
	if version == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.get(orderID)
	e.mark(version, position, epoch)
	c.put(orderID, e)
}

// mark records the order's last version and position, as an append or a
// load begun in epoch saw them.
func (e *versionMark) mark(version, position, epoch uint64) {
	e.version, e.position, e.epoch = version, position, epoch
	if position > e.seen {
		e.seen, e.seenAt = position, time.Now().UnixNano()
	}
}

// get returns what is remembered of orderID. c.mu must be held.
func (c *versionCache) get(orderID string) (versionMark, bool) {
	if e, ok := c.cur[orderID]; ok {
		return e, true
	}
	e, ok := c.prev[orderID]
	return e, ok
}

// put remembers e for orderID in the current generation, starting a new
// one when it is full. c.mu must be held.
func (c *versionCache) put(orderID string, e versionMark) {
	if _, ok := c.cur[orderID]; !ok {
		if c.cur == nil || len(c.cur) >= maxVersionsKept/2 {
			c.prev, c.cur = c.cur, make(map[string]versionMark, len(c.cur))
		}
		delete(c.prev, orderID)
	}
	c.cur[orderID] = e
}

// seen returns the highest position of the order's events this process
// saw appended or read (0 when none is remembered), and when it saw it.
// The stream denies deletes and purges, so the order's last event is never
// below it, unless the log itself went back (WithLeaderStepDown).
func (c *versionCache) seen(orderID string) (position uint64, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.get(orderID)
	return e.seen, time.Unix(0, e.seenAt)
}

// forget drops what is remembered of orderID: the log went back under it
// (LoadLatestAfter), and its positions and trail are no longer the log's.
func (c *versionCache) forget(orderID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, orderID)
	delete(c.prev, orderID)
}

// lookup returns the position remembered for the order's event at
// version, when it was seen in epoch.
func (c *versionCache) lookup(orderID string, version, epoch uint64) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.get(orderID)
	if !ok || e.version != version || e.epoch != epoch {
		return 0, false
	}
	return e.position, true
}
