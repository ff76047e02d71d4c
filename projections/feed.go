package projections

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// ErrOverflow ends a Subscription whose reader fell further behind than its
// buffer: the feed never waits for a reader, so one slow watcher cannot
// slow the projection or the other watchers. Behind is judged as each
// commit is published: a subscription that still holds a buffer's worth of
// changes unread then is ended; one that does not is handed the whole
// commit, however large (an erasure of a customer with many orders, a
// commit of a catch-up), what exceeds its buffer held for it until its
// reader makes room.
var ErrOverflow = errors.New("projections: watcher fell behind its buffer")

// ErrFeedRestarted ends a Subscription when the feed restarts ahead of
// what it published: the read model's checkpoint moved past changes the
// feed never saw (a runner starting on a read model ahead of the feed, as
// after catching up in bulk). Its watcher would otherwise miss them
// without a word; resuming from its last change, it learns that the feed
// no longer holds them.
var ErrFeedRestarted = errors.New("projections: the feed restarted ahead of its watchers")

// ErrFeedStopped ends a Subscription when the runner feeding the feed
// stops (its node shutting down), after the runner's last commit was
// published: the feed will publish nothing more until a runner starts on
// it again. Subscription.StoppedAt says from where its watcher can
// resume.
var ErrFeedStopped = errors.New("projections: the feed stopped with its runner")

// DefaultFeedHistory is how many recent changes a Feed keeps for watchers
// that resume.
const DefaultFeedHistory = 10000

// Change is one event as the read model applied it: the order's state
// after it. A Change is shared by every watcher and must not be modified.
type Change struct {
	Position uint64 // log position of the event
	OrderID  string
	Type     string // event type
	Actor    string
	State    order.State  // the order after the event
	Prev     order.Status // the order's status before the event
	Revision uint64       // the order's revision after the event, as the read model keeps it
}

// Feed fans the changes the projection commits out to watchers. The runner
// publishes each commit's changes after the commit, so a list or a summary
// of the read model never shows a change the feed has not yet published
// (see Subscribe). A point read may: it answers as of the applied
// position, up to a commit ahead of the feed, and a watcher starting from
// one skips the feed's changes at or below the position it read. It keeps
// the last changes (a bounded history) so a watcher resuming from a recent
// position misses nothing.
type Feed struct {
	mu sync.Mutex
	// pos is the position the feed has published up to: every change at
	// or below it was published, none above it was.
	pos uint64
	// floor: history holds every change above it. floorDropped is how
	// many changes at the floor the history dropped (0 when the floor is
	// where it started, 2 when that may carry several: see start): more
	// than one, they were a group (an erasure's), and a watcher resuming
	// at the floor may have seen only part of it.
	floor        uint64
	floorDropped int
	history      []*Change // ring of at most max changes, oldest at head
	head         int
	max          int
	byOrder      map[string]map[*Subscription]struct{}
	all          map[*Subscription]struct{}
	// ahead holds the subscriptions that began after a position the feed
	// had not published yet (Subscription.ahead), until it does.
	ahead map[*Subscription]struct{}
	// published counts the commits published, for Subscription.behind.
	published uint64
	// erased holds the position of each customer's latest erasure the
	// feed published (at most maxErasures customers), for Fresh, and
	// lastErasure the latest of them all: a change at or after it needs
	// no look, and that is nearly every change, without the lock.
	// erasedBelow is the latest erasure erased no longer holds: it drops
	// the oldest first (forget), so it holds every erasure after that.
	erased      map[string]uint64
	erasedBelow uint64
	lastErasure atomic.Uint64
	// stopped: the runner stopped (stop) and has not started again; a
	// subscription made meanwhile is ended at once.
	stopped bool
	// live is closed while a runner runs the feed (Live): by start, and
	// replaced by an open one at stop.
	live chan struct{}
}

// maxErasures bounds the erasures a feed remembers for Fresh: a change
// waits in a watcher's buffer for the time that watcher takes to send a
// few hundred changes, far less than so many erasures take, unless the
// watcher's client stopped reading. One that held a change while more were
// published is told to resume instead (Fresh).
const maxErasures = 4096

// NewFeed returns a feed keeping the last history changes (DefaultFeedHistory
// when history <= 0).
func NewFeed(history int) *Feed {
	if history <= 0 {
		history = DefaultFeedHistory
	}
	return &Feed{max: history, byOrder: map[string]map[*Subscription]struct{}{}, all: map[*Subscription]struct{}{}, ahead: map[*Subscription]struct{}{}, erased: map[string]uint64{}, live: make(chan struct{})}
}

// Subscription receives the changes a Subscribe call asked for.
type Subscription struct {
	f     *Feed
	order string
	match func(*Change) bool
	c     chan *Change
	done  chan struct{}
	err   error // set before done is closed
	// erasuresAt is the feed's latest erasure when the subscription
	// began: its backlog, taken from the history, was erased up to it,
	// so only an erasure after it can apply to what the subscription
	// holds (Fresh).
	erasuresAt uint64
	// ahead is the position the subscription began after, while the
	// feed has not published it (a list read from the read model's file
	// before the feed heard of its commit): the lone change it wants at
	// it is its own last, which publish drops as a backlog would.
	ahead uint64
	// Under the feed's lock: spill holds, in order, the changes of a
	// commit that did not fit in c, which a feeder goroutine (feeding)
	// moves into c as the reader makes room; published is the commit
	// (Feed.published) behind was judged at; gone is closed once the
	// subscription is removed, which ends the feeder.
	spill     []*Change
	feeding   bool
	published uint64
	behind    bool
	removed   bool
	gone      chan struct{}
	// stoppedAt, set when the feed stopped with nothing spilled for the
	// subscription (stoppedOK), is the position the feed had published
	// up to: every change the subscription wants up to it is in c.
	stoppedAt uint64
	stoppedOK bool
}

// C delivers the changes, in log order.
func (s *Subscription) C() <-chan *Change { return s.c }

// Done is closed when the feed ended the subscription; Err says why. The
// changes buffered before that stay readable from C.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the feed ended the subscription (ErrOverflow,
// ErrFeedRestarted or ErrFeedStopped) once Done is closed, and nil before.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Caught returns the position the feed has published up to, with ok true
// when the subscription holds none of its changes unread (none in C, none
// waiting for room there): its watcher, having sent what it took from C,
// has sent every change it wants up to that position, and may tell its
// client to resume from there. ok is false too once the subscription
// ended.
func (s *Subscription) Caught() (position uint64, ok bool) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.removed || len(s.c) > 0 || len(s.spill) > 0 {
		return 0, false
	}
	return s.f.pos, true
}

// StoppedAt returns, for a subscription ended with ErrFeedStopped, the
// position the feed had published up to when it stopped, with ok true when
// every change the subscription wants up to that position is in C: a
// watcher that sent them all may resume from it, though no change of its
// own is there. That is what lets a watch of some orders resume after its
// node restarted: the restarted feed keeps the changes after the read
// model's checkpoint, which is that position, while the watch's last
// change may lie far below it. ok is false before Done is closed, for
// another ending, and when the changes that did not fit in the buffer were
// dropped with the subscription: the watcher resumes from its last change.
func (s *Subscription) StoppedAt() (position uint64, ok bool) {
	if !errors.Is(s.Err(), ErrFeedStopped) {
		return 0, false
	}
	return s.stoppedAt, s.stoppedOK
}

// Fresh returns c as the watcher may send it now: c itself, or, when the
// feed has since published an erasure of its customer, a copy with the
// personal data erased. A change waits in the subscription's buffer
// until its watcher sends it, and one published before the erasure still
// shows what the erasure removed (the feed does not modify a change a
// watcher holds). Watchers send every change through Fresh.
//
// ok is false when the feed can no longer tell: more than maxErasures
// customers were forgotten since the subscription began, and c, from
// before the oldest erasure the feed still remembers, shows personal data
// of a customer it does not. The watcher must not send c; it resumes from
// the last change it sent, from the history or the log, both erased.
func (s *Subscription) Fresh(c *Change) (fresh *Change, ok bool) {
	if !holdsPersonalData(c.State) || c.Position >= s.f.lastErasure.Load() {
		return c, true
	}
	s.f.mu.Lock()
	at, known := s.f.erased[c.State.CustomerID]
	unsure := !known && c.Position < s.f.erasedBelow && s.f.erasedBelow > s.erasuresAt
	s.f.mu.Unlock()
	if unsure {
		return nil, false
	}
	if fg := (forgotten{customerID: c.State.CustomerID, at: at}); !known || !fg.erases(c) {
		return c, true
	}
	erased := *c
	erased.State = eraseState(c.State)
	return &erased, true
}

// Close ends the subscription; the feed sends it nothing more.
func (s *Subscription) Close() {
	s.f.mu.Lock()
	s.f.remove(s)
	s.f.mu.Unlock()
}

// Subscribe registers a watcher of one order (orderID not empty) or of the
// changes match accepts (match nil: every change), with a buffer of buffer
// changes. It returns the position the feed had published up to at that
// moment: the subscription receives every later change, and a read of the
// read model made after Subscribe returns reflects at least that
// position. When after is at or below it, backlog holds the kept changes
// after after (up to that position) and ok reports whether the history
// reaches back that far (it does not when after is the position of a
// change it dropped, and it keeps others at after, or, for a subscription
// by match, dropped others at after too); with ok false the backlog is
// incomplete and empty.
// Several changes share one position when an erasure changes each of a
// customer's orders: a watcher resuming from such a position may have seen
// only some of them, so when the subscription wants more than one change
// at after, the backlog starts with all of them.
func (f *Feed) Subscribe(orderID string, match func(*Change) bool, buffer int, after uint64) (s *Subscription, published uint64, backlog []*Change, ok bool) {
	s = &Subscription{f: f, order: orderID, match: match, c: make(chan *Change, max(buffer, 1)), done: make(chan struct{}), gone: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.erasuresAt = f.lastErasure.Load()
	if orderID != "" {
		m := f.byOrder[orderID]
		if m == nil {
			m = map[*Subscription]struct{}{}
			f.byOrder[orderID] = m
		}
		m[s] = struct{}{}
	} else {
		f.all[s] = struct{}{}
	}
	if f.stopped {
		// The backlog and ok are as below; the subscription gets no
		// later change, and says so at once.
		defer f.stopSub(s)
	}
	if after > f.pos {
		// One from now (after at its largest) is sent what comes after
		// f.pos, with no change of its own to skip: kept among those
		// ahead, where no position ever reaches it, it was looked at on
		// every publish for its whole life, under the runner's apply
		// lock (tens of thousands of open watches: milliseconds a commit).
		if after != math.MaxUint64 {
			s.ahead = after
			f.ahead[s] = struct{}{}
		}
		return s, f.pos, nil, true
	}
	if after < f.floor {
		return s, f.pos, nil, false
	}
	// A watcher of changes by match (not of one order, which has one
	// change at a position at most) resuming at the floor of a dropped
	// group may have wanted a dropped change it did not see.
	if after == f.floor && orderID == "" && f.floorDropped > 1 {
		return s, f.pos, nil, false
	}
	// The history is in log order: from the newest back to the first
	// change at or above after.
	n := len(f.history)
	i := n
	for i > 0 && f.history[(f.head+i-1)%n].Position >= after {
		i--
	}
	atAfter := 0
	for ; i < n; i++ {
		c := f.history[(f.head+i)%n]
		if c.Position == after && after <= f.floor && (orderID == "" || s.wants(c)) {
			// The floor is the position of a change the history
			// dropped: what it keeps at it is the rest of a group, of
			// which the watcher may have seen the dropped part and not
			// this, or this and not the dropped part. A watcher by
			// match may have wanted the dropped part, whether or not it
			// wants what is kept.
			return s, f.pos, nil, false
		}
		if !s.wants(c) {
			continue
		}
		if c.Position == after {
			atAfter++
		}
		backlog = append(backlog, c)
	}
	if atAfter == 1 {
		// The watcher's own last change: it saw it.
		backlog = backlog[1:]
	}
	return s, f.pos, backlog, true
}

func (s *Subscription) wants(c *Change) bool {
	if s.order != "" {
		return c.OrderID == s.order
	}
	return s.match == nil || s.match(c)
}

// remove unregisters s; f.mu is held.
func (f *Feed) remove(s *Subscription) {
	if !s.removed {
		s.removed, s.spill = true, nil
		close(s.gone)
	}
	delete(f.ahead, s)
	if s.order != "" {
		if m := f.byOrder[s.order]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(f.byOrder, s.order)
			}
		}
		return
	}
	delete(f.all, s)
}

// Position returns the position the feed has published up to.
func (f *Feed) Position() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos
}

// Live returns a channel closed while a runner runs the feed: from its
// start until it stops. Before the start the feed has published nothing
// and knows no position: a watch starting from now would be told position
// 0, and ended as the runner starts the feed at its checkpoint
// (ErrFeedRestarted).
func (f *Feed) Live() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live
}

// Watchers returns how many subscriptions are open.
func (f *Feed) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.all)
	for _, m := range f.byOrder {
		n += len(m)
	}
	return n
}

// start tells the feed the read model's checkpoint as a runner starts on
// it. Changes at or below what the feed already published are not
// published again; when the checkpoint is ahead of the feed, the changes
// in between were never seen, so the history restarts there and every
// open subscription ends with ErrFeedRestarted, but for one that began
// after a position the checkpoint did not pass. A feed stopped with an
// earlier runner takes subscriptions again.
//
// several reports that the checkpoint's position may carry several
// changes (an erasure's, one for each of the customer's orders). The feed
// never saw them, and a watcher by match resuming there (cut off
// part-way through them, as a shutdown cuts its streams) would otherwise
// be told the history is whole and never be sent the rest: the floor
// counts as a dropped group, so that Subscribe says it is not.
func (f *Feed) start(checkpoint uint64, several bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = false
	select {
	case <-f.live:
	default:
		close(f.live)
	}
	if checkpoint > f.pos {
		f.pos, f.floor, f.floorDropped = checkpoint, checkpoint, 0
		if several {
			f.floorDropped = 2
		}
		f.history, f.head = nil, 0
		f.each(func(s *Subscription) { f.restart(s, checkpoint, several) })
	}
}

// each calls fn with every open subscription, of one order or by match;
// fn may end it. f.mu is held.
func (f *Feed) each(fn func(*Subscription)) {
	for s := range f.all {
		fn(s)
	}
	for _, subs := range f.byOrder {
		for s := range subs {
			fn(s)
		}
	}
}

// restart ends s with ErrFeedRestarted, unless s began after a position
// at or past checkpoint (a watch resumed on a node whose runner had not
// started yet, from where the node stopped): it misses nothing, and at
// checkpoint itself it wants nothing more, unless that may be part of a
// group the feed never saw (several) and s is by match, as Subscribe
// refuses it. f.mu is held.
func (f *Feed) restart(s *Subscription, checkpoint uint64, several bool) {
	_, ahead := f.ahead[s]
	switch {
	case !ahead || s.ahead < checkpoint, s.ahead == checkpoint && several && s.order == "":
		f.end(s, ErrFeedRestarted)
	case s.ahead == checkpoint:
		s.ahead = 0
		delete(f.ahead, s)
	}
}

// forgotten is a customer forgotten at a log position.
type forgotten struct {
	customerID string
	at         uint64
}

// forgottenIn appends to dst the customers batch forgot.
func forgottenIn(dst []forgotten, batch []Item) []forgotten {
	for _, it := range batch {
		if f, ok := it.Event.(order.CustomerForgotten); ok && it.Err == nil {
			dst = append(dst, forgotten{f.CustomerID, it.Rec.Position})
		}
	}
	return dst
}

// publish hands a committed batch to the watchers and moves the feed to
// position. It never blocks: a watcher whose buffer is full is ended with
// ErrOverflow.
//
// The customers the batch forgot (forgot) have the personal data of their
// orders' changes from before the erasure erased first, both in changes
// (held before the erasure and committed with it) and in the changes the
// feed keeps, under the one lock: a watcher, live or resuming, would
// otherwise be served the address and tracking number as they were folded
// before the erasure, while a read of the order, or of its history from
// the log, shows them erased. Kept changes are replaced, not modified:
// watchers share them.
func (f *Feed) publish(position uint64, changes []Change, forgot []forgotten) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published++
	for _, fg := range forgot {
		f.remember(fg)
		for i := range changes {
			if c := &changes[i]; fg.erases(c) {
				c.State = eraseState(c.State)
			}
		}
		for i, c := range f.history {
			if fg.erases(c) {
				erased := *c
				erased.State = eraseState(c.State)
				f.history[i] = &erased
			}
		}
	}
	// A subscription that began after a position published now skips
	// the lone change it wants there (its own last); several there (an
	// erasure's group) are sent whole, as Subscribe's backlog sends them.
	var lone map[*Subscription]bool
	for s := range f.ahead {
		if s.ahead > position {
			continue
		}
		n := 0
		for i := range changes {
			if c := &changes[i]; c.Position == s.ahead && s.wants(c) {
				n++
			}
		}
		if lone == nil {
			lone = map[*Subscription]bool{}
		}
		lone[s] = n == 1
	}
	for i := range changes {
		c := &changes[i]
		if c.Position <= f.pos {
			continue
		}
		f.keep(c)
		for s := range f.byOrder[c.OrderID] {
			if !(c.Position == s.ahead && lone[s]) {
				f.send(s, c)
			}
		}
		for s := range f.all {
			if s.wants(c) && !(c.Position == s.ahead && lone[s]) {
				f.send(s, c)
			}
		}
	}
	f.pos = max(f.pos, position)
	// Those that began after a position published are like any other now
	// (every one in f.ahead began after the feed's position, so these are
	// the ones position reached).
	for s := range lone {
		s.ahead = 0
		delete(f.ahead, s)
	}
}

// remember records the erasure fg for Fresh. To make room it forgets the
// oldest erasures, an eighth of what it holds, and raises erasedBelow past
// them: Fresh tells what it can no longer know only when every erasure
// after erasedBelow is still there. f.mu is held.
func (f *Feed) remember(fg forgotten) {
	if _, ok := f.erased[fg.customerID]; !ok && len(f.erased) >= maxErasures {
		ats := slices.Sorted(maps.Values(f.erased))
		cut := ats[len(ats)/8]
		for id, at := range f.erased {
			if at <= cut {
				delete(f.erased, id)
			}
		}
		f.erasedBelow = max(f.erasedBelow, cut)
	}
	f.erased[fg.customerID] = max(f.erased[fg.customerID], fg.at)
	f.lastErasure.Store(max(f.lastErasure.Load(), fg.at))
}

// erases reports whether the erasure fg applies to c: a change of one of
// the customer's orders from before it that still shows personal data.
func (fg forgotten) erases(c *Change) bool {
	return c.Position < fg.at && c.State.CustomerID == fg.customerID && holdsPersonalData(c.State)
}

func (f *Feed) keep(c *Change) {
	if len(f.history) < f.max {
		f.history = append(f.history, c)
		return
	}
	if d := f.history[f.head].Position; d == f.floor {
		f.floorDropped++
	} else {
		f.floor, f.floorDropped = d, 1
	}
	f.history[f.head] = c
	f.head = (f.head + 1) % len(f.history)
}

// send hands c to s, unless s was already a buffer behind when this
// commit came (see ErrOverflow); f.mu is held.
func (f *Feed) send(s *Subscription, c *Change) {
	if s.published != f.published {
		s.published = f.published
		s.behind = len(s.c)+len(s.spill) >= cap(s.c)
	}
	switch {
	case s.removed:
	case s.behind:
		f.end(s, ErrOverflow)
	case len(s.spill) > 0:
		s.spill = append(s.spill, c)
	default:
		select {
		case s.c <- c:
		default:
			s.spill = append(s.spill, c)
			if !s.feeding {
				s.feeding = true
				go f.feed(s)
			}
		}
	}
}

// feed moves s's spilled changes into its channel, in order, as its reader
// makes room, until none is left or s is removed.
func (f *Feed) feed(s *Subscription) {
	for {
		f.mu.Lock()
		if len(s.spill) == 0 || s.removed {
			s.feeding = false
			f.mu.Unlock()
			return
		}
		c := s.spill[0]
		f.mu.Unlock()
		select {
		case s.c <- c:
		case <-s.gone:
			f.mu.Lock()
			s.feeding = false
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		// Sends only append to the spill and remove clears it: its
		// first change is still c unless s was removed.
		if !s.removed {
			s.spill[0] = nil
			s.spill = s.spill[1:]
		}
		f.mu.Unlock()
	}
}

// stop ends every subscription with ErrFeedStopped: the runner stopped,
// after publishing its last commit. It is called as the runner returns.
func (f *Feed) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	select {
	case <-f.live:
		f.live = make(chan struct{})
	default:
	}
	f.each(f.stopSub)
}

// stopSub ends s with ErrFeedStopped, recording where it may resume
// (StoppedAt); f.mu is held.
func (f *Feed) stopSub(s *Subscription) {
	if s.removed {
		return
	}
	s.stoppedAt, s.stoppedOK = f.pos, len(s.spill) == 0
	f.end(s, ErrFeedStopped)
}

// end ends s with err.
func (f *Feed) end(s *Subscription, err error) {
	f.remove(s)
	s.err = err
	close(s.done)
}

// bringsPersonalData reports whether e sets personal data on its order (a
// shipping address, or a tracking number), in the clear or erased.
func bringsPersonalData(e order.Event) bool {
	switch e := e.(type) {
	case order.OrderCreated:
		return e.Shipping != nil
	case order.ShippingAddressSet:
		return true
	case order.OrderShipped:
		return e.TrackingNumber != "" || e.TrackingNumberErased
	}
	return false
}

// HistoryChanges folds one order's history (as read back from the log, in
// order) into the changes the read model makes of it, for watchers
// resuming from a position the feed no longer holds. Entries the read
// model dead-letters (undecodable, or not applicable to the order) change
// nothing here either.
// Sealed personal data is opened with keys (nil: it reads as erased).
// An event whose key could not be read (the keys bucket did not answer:
// convert.ErrKeyUnavailable) is no dead letter: HistoryChanges returns
// that error, as the projection waits for the key, rather than changes
// that leave the event out.
//
// recs may also hold CustomerForgotten events, from the customers' subject,
// in log order among the order's: an erasure of the order's customer
// changes the order at its position when the order has personal data, as
// the read model's apply does (a watcher resuming through the log missed
// that change). As the runner does (decodeInOrder), a keys that can Drop
// (a Keyring) drops the customer's cached key there, before the events
// after it are opened: one sealed by another process that had not yet
// learnt of the erasure must not open in the clear here.
func HistoryChanges(ctx context.Context, keys convert.Keyring, recs []eventstore.Recorded) ([]Change, error) {
	decode := func(rec eventstore.Recorded) Item { return DecodeWith(ctx, keys, rec) }
	if k, ok := keys.(Keyring); ok {
		decode = func(rec eventstore.Recorded) Item { return decodeInOrder(ctx, k, rec) }
	}
	var (
		st       order.State
		out      []Change
		revision uint64
		// personal: the order has had personal data since the last
		// erasure. Read back after an erasure, that data decodes as
		// erased already, so the fields alone cannot tell whether an
		// erasure changes the order (a second erasure of its customer
		// does not).
		personal bool
	)
	for _, rec := range recs {
		it := decode(rec)
		if err := it.keyTrouble(); err != nil {
			return nil, err
		}
		if f, ok := it.Event.(order.CustomerForgotten); ok && it.Err == nil {
			if st.Exists() && f.CustomerID == st.CustomerID && personal {
				st, personal = eraseState(st), false
				out = append(out, Change{Position: rec.Position, OrderID: st.ID, Type: rec.Type, Actor: rec.Meta.Actor,
					State: st, Prev: st.Status, Revision: revision})
			}
			continue
		}
		if it.Err != nil || applicable(st, rec, it.Event) != nil {
			continue
		}
		personal = personal || bringsPersonalData(it.Event)
		prev := st.Status
		st = order.Evolve(st, it.Event, eventTime(rec))
		// The revision as apply keeps it.
		revision = rec.Position
		out = append(out, Change{Position: rec.Position, OrderID: rec.OrderID, Type: rec.Type, Actor: rec.Meta.Actor,
			State: st, Prev: prev, Revision: revision})
	}
	return out, nil
}
