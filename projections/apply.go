package projections

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/money"
	"github.com/orderstream/orderstream/order"
)

// Item is one log entry to apply: a decoded event (one of package order's
// events, or a pointer to one, which counts as the event), or a reason it
// could not be decoded, which makes it a dead letter.
type Item struct {
	Rec   eventstore.Recorded
	Event order.Event
	Err   error
}

// Decode turns a recorded event into an Item; an undecodable payload becomes
// a dead-letter Item rather than an error, so one bad event never stops the
// projection. An event of a type a newer build added is no dead letter: it
// is folded as a nil event, which counts in the order's revision and
// changes nothing else (convert.Foldable), as on the command side.
func Decode(rec eventstore.Recorded) Item {
	ev, err := convert.Foldable(convert.DecodeEvent(rec.Type, rec.Data))
	return Item{Rec: rec, Event: ev, Err: err}
}

// ErrInapplicable marks an event that decodes but makes no sense for the
// state the read model holds for its order: folding it would serve a row
// no history written by the command side can produce, so it is
// dead-lettered instead. The dead letter's reason says which rule it broke.
var ErrInapplicable = errors.New("event does not apply to the order")

// applicable reports, wrapping ErrInapplicable, why ev cannot be folded
// into the order's current state, or nil. The checks are structural only
// (the order's first event creates it, it is created once, under its own
// id, with a customer and a currency); state transitions are the domain's
// to decide when commands run, and history is folded as written.
func applicable(cur order.State, rec eventstore.Recorded, ev order.Event) error {
	if rec.OrderID == "" {
		return fmt.Errorf("%w: no order id in the log entry", ErrInapplicable)
	}
	created, isCreate := asCreated(ev)
	switch {
	case !isCreate && !cur.Exists():
		return fmt.Errorf("%w: %s before the order was created", ErrInapplicable, rec.Type)
	case isCreate && cur.Exists():
		return fmt.Errorf("%w: OrderCreated for an order that already exists", ErrInapplicable)
	case !isCreate:
		return nil
	case created.OrderID != rec.OrderID:
		return fmt.Errorf("%w: payload order id %q differs from the log's %q", ErrInapplicable, created.OrderID, rec.OrderID)
	case created.CustomerID == "":
		return fmt.Errorf("%w: OrderCreated without a customer", ErrInapplicable)
	case created.Currency == "":
		return fmt.Errorf("%w: OrderCreated without a currency", ErrInapplicable)
	}
	return nil
}

type statusKey struct {
	customer string
	status   order.Status
}

type spendKey struct{ customer, currency string }

// Apply applies items (in log order) and moves the checkpoint to the last
// one's position, all in one transaction: either the whole batch and its
// checkpoint are committed or none of it. Items at or below the checkpoint
// were applied before and are skipped, so re-delivery after a crash counts
// nothing twice. An item that could not be decoded, or whose event does
// not apply to its order's state (see ErrInapplicable), changes nothing but
// the dead_letters table. It returns the new checkpoint and the items
// dead-lettered by this call; an error means nothing was committed (nor
// anything a runner's apply held uncommitted, which the log replays).
func (m *ReadModel) Apply(ctx context.Context, items []Item) (position uint64, dead []DeadLetter, err error) {
	position, dead, _, err = m.apply(ctx, items, nil, false)
	return position, dead, err
}

// errClosed is a commit refused because the read model was closed.
var errClosed = errors.New("projections: read model closed")

// heldRows bounds the orders an open transaction holds: past it, an apply
// commits at once. A replay of a backlog fills a transaction faster than
// commitDelay elapses, and every row it holds stays in memory until then.
const heldRows = 4096

// apply is Apply; when changes is not nil, it also appends to it each
// event it folded, with the order's state after it, for the feed. With
// hold, the transaction stays open after the batch, for the next batches
// and a later commit: the batch is visible to point reads at once (the
// recent orders hold its rows) and the caller must call commit. A batch
// that erased personal data commits at once even so, as does one that
// finds heldRows orders held. committed reports whether this call
// committed.
func (m *ReadModel) apply(ctx context.Context, items []Item, changes *[]Change, hold bool) (position uint64, dead []DeadLetter, committed bool, err error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	tx := m.open
	if tx == nil {
		// Not ctx: the transaction may outlive this batch, and
		// database/sql rolls a transaction back when its context ends.
		if tx, err = m.w.BeginTx(context.Background(), nil); err != nil {
			return 0, nil, false, err
		}
		m.open = tx
	}
	defer func() {
		if err != nil {
			m.rollback()
		}
	}()
	if err := ctx.Err(); err != nil {
		return 0, nil, false, err
	}
	// The statements run without ctx's cancellation: the driver watches a
	// cancellable context with a goroutine of its own for each statement,
	// and the statements here take microseconds each. ctx is checked after
	// the writes instead, so a batch whose ctx ended is still never
	// committed.
	sctx := context.WithoutCancel(ctx)
	if !m.appliedKnown {
		if err := tx.StmtContext(sctx, m.writes.position).QueryRowContext(sctx).Scan(&m.applied); err != nil {
			return 0, nil, false, err
		}
		m.durable, m.appliedKnown = m.applied, true
	}
	cp := m.applied
	if changes != nil {
		// Room for the batch at once: a Change holds a whole order's
		// state, and growing the slice by appends copied each one about
		// twice.
		*changes = slices.Grow(*changes, len(items))
	}
	bt := &batch{ctx: sctx, tx: tx, changes: changes, now: time.Now().UTC(),
		// Statements prepared once on the write connection, bound to this
		// transaction: nothing is parsed per event.
		loadOrder: tx.StmtContext(sctx, m.writes.loadOrder), recent: m.recent, carry: m.carry,
		states: map[string]*Order{}, dirtied: map[string]bool{}, stored: map[string]rowKeys{},
		statusDelta: map[statusKey]int64{}, spendDelta: map[spendKey]int64{}}
	if m.carry != nil {
		bt.rowAt, bt.seqs = tx.StmtContext(sctx, m.writes.fill.rowAt), map[string]int64{}
	}
	position = cp
	var last eventstore.Recorded // the event at position, when it moved
	erased := false
	for _, it := range items {
		if it.Rec.Position <= cp {
			continue
		}
		position, last = it.Rec.Position, it.Rec
		// A pointer to an event counts as the event: the summaries, the
		// refunds and the erasure below match events by value.
		it.Event = order.EventValue(it.Event)
		if f, ok := it.Event.(order.CustomerForgotten); ok && it.Err == nil {
			if err := bt.forget(it.Rec, f); err != nil {
				return 0, nil, false, err
			}
			erased = true
			continue
		}
		if err := bt.fold(it); err != nil {
			return 0, nil, false, err
		}
	}
	written, err := bt.write(m.writes, position != cp, position, checkpointEvent(last))
	if err != nil {
		return 0, nil, false, err
	}
	// A batch whose context ended while it was applied is not committed,
	// held or not (the log replays it).
	if err := ctx.Err(); err != nil {
		return 0, nil, false, err
	}
	m.applied = position
	held := m.recent.staged(position, written)
	if hold && !erased && m.scrubDue.Load() == 0 && held < heldRows {
		return position, bt.dead, false, nil
	}
	if err := m.commitLocked(); err != nil {
		return 0, nil, false, err
	}
	if m.carry != nil {
		m.carry.keep(bt)
	}
	if err := m.scrubIfDue(ctx, erased); err != nil {
		return position, bt.dead, true, err
	}
	return position, bt.dead, true, nil
}

// commit commits the transaction a held apply left open, if any, and
// returns the checkpoint as committed. committed reports whether there was
// one and it committed: an error with committed set is the WAL's scrub
// after the commit (see apply); without it, nothing held was committed and
// the log replays it.
func (m *ReadModel) commit(ctx context.Context) (position uint64, committed bool, err error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	if m.open == nil {
		return m.durable, false, nil
	}
	if err := m.commitLocked(); err != nil {
		return 0, false, err
	}
	return m.durable, true, m.scrubIfDue(ctx, false)
}

// scrubIfDue scrubs the WAL after a commit that erased personal data, or
// when an earlier scrub was left due.
func (m *ReadModel) scrubIfDue(ctx context.Context, erased bool) error {
	if erased || m.scrubDue.Load() != 0 {
		return m.scrub(ctx)
	}
	return nil
}

// commitLocked commits the open transaction (with m.applyMu held).
func (m *ReadModel) commitLocked() error {
	if m.closed.Load() {
		m.rollback()
		return errClosed
	}
	if err := m.open.Commit(); err != nil {
		m.rollback()
		return err
	}
	m.open, m.durable = nil, m.applied
	m.recent.committed()
	m.ck.committed()
	return nil
}

// rollback abandons the open transaction, if any, and what the recent
// orders held of it. A failed commit may or may not have reached the file:
// the next apply reads the checkpoint back.
func (m *ReadModel) rollback() {
	if m.open != nil {
		_ = m.open.Rollback()
	}
	m.open, m.appliedKnown = nil, false
	m.recent.rolledBack(m.durable)
}

// batch is one Apply's work in progress: the orders it loaded and changed,
// the summary deltas, the dead letters, all written at the end.
type batch struct {
	ctx       context.Context
	tx        *sql.Tx
	loadOrder *sql.Stmt
	recent    *recent
	carry     *carry    // nil outside a bulk fill
	rowAt     *sql.Stmt // a bulk fill's read of a row by seq
	changes   *[]Change
	now       time.Time
	states    map[string]*Order
	// dirty holds the orders to write, each with the position of the
	// first event that changed it in this batch, in the order of those
	// positions (the batch's events are in log order), which is the
	// order writeOrders writes them in; dirtied holds their ids.
	dirty   []dirtyOrder
	dirtied map[string]bool
	// stored holds the indexed columns of the rows load found.
	stored map[string]rowKeys
	// seqs holds, in a bulk fill, the seq of each row load found or the
	// batch inserted: the fill finds and updates its rows by seq.
	seqs        map[string]int64
	statusDelta map[statusKey]int64
	spendDelta  map[spendKey]int64
	// spendSteps holds, for a key whose payments and refunds in the
	// batch pull both ways, its steps in log order (those of one sign
	// before the first of the other summed into one): see write.
	spendSteps map[spendKey][]int64
	dead       []DeadLetter
	// lookups counts the orders load looked for beyond the batch: in the
	// carry, the recent orders or the file.
	lookups int
}

// firstOfOrder reports an item that the log says opens its order's
// history: an OrderCreated at version 1, the first message on the order's
// subject. No row can hold an order before its first event is applied, so
// its load need not look.
func firstOfOrder(it Item) bool {
	_, isCreate := asCreated(it.Event)
	return isCreate && it.Rec.Version == 1
}

// asCreated returns ev as an OrderCreated. Events reach the fold as values
// (apply turns pointers into them, order.EventValue).
func asCreated(ev order.Event) (order.OrderCreated, bool) {
	e, ok := ev.(order.OrderCreated)
	return e, ok
}

// load returns the order's state as of this batch: the first time, in a
// bulk fill as loadFilled finds it, else from the file unless first says
// the order has no row yet (a lookup that must miss costs a walk of the id
// index all the same, and every order's history starts with one).
func (b *batch) load(id string, first bool) (*Order, error) {
	if o, ok := b.states[id]; ok {
		return o, nil
	}
	if !first {
		b.lookups++
	}
	if b.carry != nil {
		return b.loadFilled(id, first)
	}
	o := &Order{}
	if first {
		b.states[id] = o
		return o, nil
	}
	// The recent orders hold the row as the last commit left it: only
	// this connection writes, and each commit puts the rows it wrote
	// there (recent.committed).
	row, _, cached := b.recent.get(id)
	if !cached {
		err := b.loadOrder.QueryRowContext(b.ctx, id).Scan(&row.rev, &row.customer, &row.body)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			b.states[id] = o
			return o, nil
		case err != nil:
			return nil, err
		}
	}
	pb, err := readBody(id, row.customer, row.body)
	if err != nil {
		return nil, err
	}
	o.Revision, o.State = row.rev, convert.OrderFromProto(pb)
	b.stored[id] = keysOf(o.State)
	b.states[id] = o
	return o, nil
}

// loadFilled is load in a bulk fill: from the carry, else from the row
// the fill's index finds, read by seq. It looks even for an order whose
// first event this is (a miss costs a map probe), since the fill has no
// unique index on id until its end: a repeated creation (which the log's
// append never writes) then overwrites the order's row as the live
// upsert does, rather than adding a second row for the id.
func (b *batch) loadFilled(id string, first bool) (*Order, error) {
	o, found := &Order{}, false
	if c, ok := b.carry.take(id); ok {
		o, found = c.o, true
		b.seqs[id] = c.seq
	} else if seq, ok := b.carry.rows.find(id); ok {
		rowID, row, err := b.readAt(seq)
		switch {
		case err != nil:
			return nil, err
		case rowID == id:
			pb, err := readBody(id, row.customer, row.body)
			if err != nil {
				return nil, err
			}
			o.Revision, o.State, found = row.rev, convert.OrderFromProto(pb), true
			b.seqs[id] = seq
		}
	}
	if found {
		b.stored[id] = keysOf(o.State)
		if first {
			o = &Order{}
		}
	}
	b.states[id] = o
	return o, nil
}

// readAt reads the row seq in a bulk fill: its order id ("" when there
// is no such row; no row has an empty id) and its columns.
func (b *batch) readAt(seq int64) (id string, row storedRow, err error) {
	err = b.rowAt.QueryRowContext(b.ctx, seq).Scan(&id, &row.rev, &row.customer, &row.body)
	if errors.Is(err, sql.ErrNoRows) {
		return "", storedRow{}, nil
	}
	return id, row, err
}

// idAt reads the id of the row seq, for the fill's index.
func (b *batch) idAt(seq int64) (string, bool, error) {
	id, _, err := b.readAt(seq)
	return id, id != "", err
}

// deadLetter records rec as a dead letter for reason.
func (b *batch) deadLetter(rec eventstore.Recorded, reason error) error {
	d := DeadLetter{Position: rec.Position, OrderID: rec.OrderID, Type: rec.Type, Reason: reason.Error(), RecordedAt: b.now}
	if _, err := b.tx.ExecContext(b.ctx, `INSERT OR IGNORE INTO dead_letters (position, order_id, type, reason, recorded_at) VALUES (?, ?, ?, ?, ?)`,
		d.Position, d.OrderID, d.Type, d.Reason, b.now.UnixNano()); err != nil {
		return err
	}
	b.dead = append(b.dead, d)
	return nil
}

// fold applies one item above the checkpoint to its order, or records it
// as a dead letter.
func (b *batch) fold(it Item) error {
	pos := it.Rec.Position
	if it.Err != nil {
		return b.deadLetter(it.Rec, it.Err)
	}
	o, err := b.load(it.Rec.OrderID, firstOfOrder(it))
	if err != nil {
		return err
	}
	if o.Revision >= pos {
		return nil
	}
	// Checked here rather than in the domain's Evolve, which stays a
	// total function over any history; the read model refuses to serve
	// rows no valid history could produce.
	if reason := applicable(o.State, it.Rec, it.Event); reason != nil {
		return b.deadLetter(it.Rec, reason)
	}
	old := o.State
	o.State = order.Evolve(o.State, it.Event, eventTime(it.Rec))
	o.Revision = pos
	b.markDirty(it.Rec.OrderID, pos)
	if b.changes != nil {
		*b.changes = append(*b.changes, Change{Position: pos, OrderID: it.Rec.OrderID, Type: it.Rec.Type, Actor: it.Rec.Meta.Actor,
			State: o.State, Prev: old.Status, Revision: o.Revision})
	}
	b.count(old, o.State, it.Event)
	return nil
}

// eventTime is when rec's event occurred, or, for an event written
// without that, when the log recorded it: the time the read model folds
// it at.
func eventTime(rec eventstore.Recorded) time.Time {
	if !rec.Meta.OccurredAt.IsZero() {
		return rec.Meta.OccurredAt
	}
	return rec.Time
}

// markDirty records that the event at position changed the order id,
// keeping the first such position of the batch.
func (b *batch) markDirty(id string, position uint64) {
	if !b.dirtied[id] {
		b.dirtied[id] = true
		b.dirty = append(b.dirty, dirtyOrder{id, position})
	}
}

// dirtyOrder is an order a batch changed, and the position of the first
// event that changed it in the batch.
type dirtyOrder struct {
	id       string
	position uint64
}

// count adds what one event changed to the customer summaries' deltas.
func (b *batch) count(old, cur order.State, e order.Event) {
	if old.Status != cur.Status || old.CustomerID != cur.CustomerID {
		if old.Exists() {
			b.statusDelta[statusKey{old.CustomerID, old.Status}]--
		}
		if cur.Exists() {
			b.statusDelta[statusKey{cur.CustomerID, cur.Status}]++
		}
	}
	k := spendKey{cur.CustomerID, cur.Currency}
	if p, ok := e.(order.PaymentAuthorized); ok {
		b.spend(k, p.Amount)
	}
	if ref, ok := refundAmount(e); ok {
		b.spend(k, -ref)
	}
}

// spend adds one payment (d > 0) or refund (d < 0) of key k to the batch.
// Steps of one sign are summed: saturating addition is associative for
// them. Once a step of the other sign comes, the key keeps its steps, since
// summed first and then added to the stored spend they may not give what
// adding them one by one gives once the spend is at int64's bound.
func (b *batch) spend(k spendKey, d int64) {
	sum := b.spendDelta[k]
	b.spendDelta[k] = money.AddSaturating(sum, d)
	switch steps, ok := b.spendSteps[k]; {
	case ok:
		b.spendSteps[k] = append(steps, d)
	case sum != 0 && (sum > 0) != (d > 0):
		if b.spendSteps == nil {
			b.spendSteps = map[spendKey][]int64{}
		}
		b.spendSteps[k] = []int64{sum, d}
	}
}

// checkpointEvent names the event at a checkpoint's position in the log:
// the position, its order (or subject) id, its version and the time the
// log stored it, in nanoseconds. An event taken again at a position a log
// lost is stored at another time, so even the same command retried names
// another. The position tells a name written for another position than
// the checkpoint's (by a build before names were kept, run on the file
// meanwhile, which moves the position alone): that name says nothing.
func checkpointEvent(rec eventstore.Recorded) string {
	return strconv.FormatUint(rec.Position, 10) + ":" + rec.OrderID + "/" + strconv.FormatUint(rec.Version, 10) + "@" + strconv.FormatInt(rec.Time.UnixNano(), 10)
}

// write writes the changed orders, the summary deltas and, when moved,
// the checkpoint. It returns the orders' rows as written.
func (b *batch) write(w writeStmts, moved bool, position uint64, event string) (map[string]storedRow, error) {
	ctx, tx := b.ctx, b.tx
	var ow orderWrites
	if b.carry == nil {
		ow = orderWrites{insert: tx.StmtContext(ctx, w.upsertOrder), updateBody: tx.StmtContext(ctx, w.updateBody), updateStatus: tx.StmtContext(ctx, w.updateStatus)}
	} else {
		f := w.fill
		ow = orderWrites{insert: tx.StmtContext(ctx, f.insert), insertMany: tx.StmtContext(ctx, f.insertMany), updateBody: tx.StmtContext(ctx, f.updateBody), updateStatus: tx.StmtContext(ctx, f.updateStatus),
			fill: &fillWrites{updateRow: tx.StmtContext(ctx, f.updateRow), seqs: b.seqs, inserted: func(id string, seq int64) error {
				b.seqs[id] = seq
				return b.carry.rows.add(id, seq, b.idAt)
			}}}
	}
	rows, err := writeOrders(ctx, ow, b.states, b.dirty, b.stored)
	if err != nil {
		return nil, err
	}
	for k, d := range b.statusDelta {
		if d == 0 {
			continue
		}
		if _, err := tx.StmtContext(ctx, w.addStatus).ExecContext(ctx, k.customer, int(k.status), d); err != nil {
			return nil, err
		}
	}
	for k, d := range b.spendDelta {
		if steps, ok := b.spendSteps[k]; ok {
			// One by one on the stored spend, as batches of one event
			// would: the read model a log leaves does not depend on how
			// its events came in batches.
			for _, step := range steps {
				if _, err := tx.StmtContext(ctx, w.addSpend).ExecContext(ctx, k.customer, k.currency, step); err != nil {
					return nil, err
				}
			}
			continue
		}
		if d == 0 {
			continue
		}
		if _, err := tx.StmtContext(ctx, w.addSpend).ExecContext(ctx, k.customer, k.currency, d); err != nil {
			return nil, err
		}
	}
	if moved {
		if _, err := tx.StmtContext(ctx, w.setPosition).ExecContext(ctx, position, event); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// upsertOrder writes one order's row, whole. A new row's seq is the
// position of the first event of the order the batch applied; a row that
// exists keeps its own. No other row holds that position: positions
// above the checkpoint are new, and migrated rows are numbered below 1.
const upsertOrder = `INSERT INTO orders (seq, id, customer_id, status, created_at, revision, body) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, status = excluded.status,
		created_at = excluded.created_at, revision = excluded.revision, body = excluded.body`

// updateBody rewrites an order's row whose indexed columns stay as they
// are. SQLite rewrites the entries of every index on a column an UPDATE
// sets, changed or not, so the upsert of an order that only gained an
// item dirtied a page of each of the three secondary indexes; without
// them a one-event commit took 70–83 µs instead of 110 µs
// (BenchmarkApplyToExistingOrders/item).
const updateBody = `UPDATE orders SET revision = ?, body = ? WHERE id = ?`

// updateStatus rewrites the row of an order that changed status only
// among its indexed columns, which touches the status index alone.
const updateStatus = `UPDATE orders SET status = ?, revision = ?, body = ? WHERE id = ?`

// A bulk fill's writes (see fillIndex): they take the row's seq where
// the others take the id, and a new row is inserted without the upsert's
// ON CONFLICT (id), which needs the orders_id index the fill drops.
const (
	insertOrder    = `INSERT INTO orders (seq, id, customer_id, status, created_at, revision, body) VALUES (?, ?, ?, ?, ?, ?, ?)`
	updateBodyAt   = `UPDATE orders SET revision = ?, body = ? WHERE seq = ?`
	updateStatusAt = `UPDATE orders SET status = ?, revision = ?, body = ? WHERE seq = ?`
	updateRowAt    = `UPDATE orders SET customer_id = ?, status = ?, created_at = ?, revision = ?, body = ? WHERE seq = ?`
)

// rowKeys are the indexed columns of an order's row.
type rowKeys struct {
	customer  string
	status    order.Status
	createdAt int64
}

func keysOf(s order.State) rowKeys {
	return rowKeys{customer: s.CustomerID, status: s.Status, createdAt: s.CreatedAt.UnixNano()}
}

// orderWrites are the ways writeOrders writes a row: insert writes a row
// load did not find (upsertOrder live, insertOrder in a bulk fill). In a
// bulk fill (fill not nil) all are the fill's, which take the seq instead
// of the id.
type orderWrites struct {
	insert, updateBody, updateStatus *sql.Stmt
	insertMany                       *sql.Stmt // a fill's insertOrders
	fill                             *fillWrites
}

// fillWrites is what a bulk fill's writeOrders needs besides orderWrites:
// the statement for a found row whose indexed columns changed (the
// upsert's conflict clause does that outside a fill), each found row's
// seq, and what to tell of each inserted one.
type fillWrites struct {
	updateRow *sql.Stmt
	seqs      map[string]int64
	inserted  func(id string, seq int64) error
}

// writeOrders writes the dirty orders' rows and returns them: an order
// whose row was found (stored) by updateBody when it keeps the indexed
// columns it had, by updateStatus when only its status changed, and any
// other by upsertOrder (in a bulk fill, a found row by updateRowAt and a
// new one by insertOrders, insertRows at a time, and insertOrder for the
// rest, which it tells w.fill of). Each body is its own
// buffer, since the recent orders keep it.
//
// It writes them in the order of the first event that changed each in
// the batch, which is also each new row's seq: new rows then go at the
// table's end in order, live and in a rebuild alike.
func writeOrders(ctx context.Context, w orderWrites, states map[string]*Order, dirty []dirtyOrder, stored map[string]rowKeys) (map[string]storedRow, error) {
	rows := make(map[string]storedRow, len(dirty))
	var scratch ordersv1.Order
	var pending newRows
	for _, d := range dirty {
		id := d.id
		o := states[id]
		s := o.State
		body, err := appendBody(nil, s, &scratch)
		if err != nil {
			return nil, err
		}
		k, found := stored[id]
		now := keysOf(s)
		var key any = id
		if w.fill != nil {
			key = w.fill.seqs[id]
		}
		var res sql.Result
		if !found && w.fill != nil {
			// A new row of a bulk fill waits to go in with the next ones.
			if err := pending.add(ctx, w, pendingRow{id: id, seq: int64(d.position), customer: s.CustomerID, status: int(s.Status),
				createdAt: s.CreatedAt.UnixNano(), rev: o.Revision, body: body}); err != nil {
				return nil, err
			}
			rows[id] = storedRow{rev: o.Revision, customer: s.CustomerID, body: body}
			continue
		}
		if err := pending.flush(ctx, w); err != nil {
			return nil, err
		}
		switch {
		case found && k == now:
			res, err = w.updateBody.ExecContext(ctx, o.Revision, body, key)
		case found && k.customer == now.customer && k.createdAt == now.createdAt:
			res, err = w.updateStatus.ExecContext(ctx, int(s.Status), o.Revision, body, key)
		case found && w.fill != nil:
			res, err = w.fill.updateRow.ExecContext(ctx, s.CustomerID, int(s.Status), s.CreatedAt.UnixNano(), o.Revision, body, key)
		default: // a new row, live (a fill's wait in pending)
			_, err = w.insert.ExecContext(ctx, int64(d.position), id, s.CustomerID, int(s.Status), s.CreatedAt.UnixNano(), o.Revision, body)
		}
		if err != nil {
			return nil, err
		}
		if res != nil {
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return nil, fmt.Errorf("projections: order %s: row found in this transaction is gone (%d rows, %v)", id, n, err)
			}
		}
		rows[id] = storedRow{rev: o.Revision, customer: s.CustomerID, body: body}
	}
	if err := pending.flush(ctx, w); err != nil {
		return nil, err
	}
	return rows, nil
}

// newRows are the new rows of a bulk fill waiting to be inserted,
// insertRows at a time (insertOrders), the rest one by one at the end of
// the batch or before a write of another kind, which keeps the batch's
// writes in its order.
type newRows struct {
	rows []pendingRow
	args []any
}

// add adds r, and inserts the rows waiting once there are insertRows.
func (n *newRows) add(ctx context.Context, w orderWrites, r pendingRow) error {
	n.rows = append(n.rows, r)
	if len(n.rows) < insertRows {
		return nil
	}
	return n.flush(ctx, w)
}

// flush inserts the rows waiting and tells w.fill of each.
func (n *newRows) flush(ctx context.Context, w orderWrites) error {
	if len(n.rows) == 0 {
		return nil
	}
	if len(n.rows) == insertRows {
		n.args = n.args[:0]
		for _, r := range n.rows {
			n.args = append(n.args, r.seq, r.id, r.customer, r.status, r.createdAt, r.rev, r.body)
		}
		if _, err := w.insertMany.ExecContext(ctx, n.args...); err != nil {
			return err
		}
	} else {
		for _, r := range n.rows {
			if _, err := w.insert.ExecContext(ctx, r.seq, r.id, r.customer, r.status, r.createdAt, r.rev, r.body); err != nil {
				return err
			}
		}
	}
	for _, r := range n.rows {
		if err := w.fill.inserted(r.id, r.seq); err != nil {
			return err
		}
	}
	n.rows = n.rows[:0]
	return nil
}

// pendingRow is a new row of a bulk fill waiting to be inserted with the
// next ones.
type pendingRow struct {
	id, customer   string
	seq, createdAt int64
	status         int
	rev            uint64
	body           []byte
}

// insertRows is how many new rows a bulk fill inserts in one statement:
// one statement's execution, binding and reset for 32 rows rather than
// for each. A rebuild of 300,000 one-event orders went from 86–95k to
// 102–104k events/s (BenchmarkRebuild, alternated runs).
const insertRows = 32

// insertOrders is insertOrder for insertRows rows.
var insertOrders = `INSERT INTO orders (seq, id, customer_id, status, created_at, revision, body) VALUES (?, ?, ?, ?, ?, ?, ?)` +
	strings.Repeat(`, (?, ?, ?, ?, ?, ?, ?)`, insertRows-1)
