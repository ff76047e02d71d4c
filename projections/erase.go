package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// Keyring is what the projection needs of customers' data keys: opening
// sealed personal data, and dropping a forgotten customer's key from its
// cache when the log says so (*pii.Keyring implements it).
type Keyring interface {
	convert.Keyring
	Drop(customerID string)
}

// WithKeyring opens the sealed personal data of events with keys; without
// it personal data reads as erased. The runner drops a customer's cached
// key as it decodes the customer's CustomerForgotten event, before what
// follows it, so that a process that did not do the forgetting stops
// opening their data too. Invalid: nil.
func WithKeyring(keys Keyring) Option {
	return func(r *Runner) error {
		if keys == nil {
			return fmt.Errorf("%w: WithKeyring(nil)", ErrInvalidOption)
		}
		r.keys = keys
		return nil
	}
}

// DecodeWith is Decode opening sealed personal data with keys (nil: it
// reads as erased). A key that could not be fetched is an Item whose Err
// wraps convert.ErrKeyUnavailable: the runner reads it again later rather
// than dead-lettering it.
func DecodeWith(ctx context.Context, keys convert.Keyring, rec eventstore.Recorded) Item {
	ev, err := convert.Foldable(convert.OpenEvent(ctx, keys, rec.OrderID, rec.Type, rec.Data))
	return Item{Rec: rec, Event: ev, Err: err}
}

// keyTrouble returns the first item whose key could not be fetched.
func keyTrouble(batch []Item) error {
	for _, it := range batch {
		if err := it.keyTrouble(); err != nil {
			return err
		}
	}
	return nil
}

// keyTrouble is keyTrouble of one item.
func (it Item) keyTrouble() error {
	if errors.Is(it.Err, convert.ErrKeyUnavailable) {
		return fmt.Errorf("projections: at position %d: %w", it.Rec.Position, it.Err)
	}
	return nil
}

// decodeInOrder decodes rec as DecodeWith does, and when it is a
// CustomerForgotten drops the customer's cached key from keys at once,
// before anything after it in the log is decoded. Another process may
// have done the forgetting while this one still holds the key: an event
// appended after the CustomerForgotten but sealed before the key was
// destroyed (a command racing the forget, on another subject) would
// otherwise be opened with it, folded in the clear after the erasure ran,
// and never erased. Callers decode the log in order.
func decodeInOrder(ctx context.Context, keys Keyring, rec eventstore.Recorded) Item {
	it := DecodeWith(ctx, keys, rec)
	if f, ok := it.Event.(order.CustomerForgotten); ok && it.Err == nil {
		keys.Drop(f.CustomerID)
	}
	return it
}

// holdsPersonalData reports whether s still shows personal data in the
// clear. It is not the negation of State.PersonalDataErased: an event
// decoded after its customer's key was destroyed (the projection lagging
// behind the erasure) erases only its own fields, so an order may show an
// erased tracking number beside an address still in the clear from its
// creation, and the erasure must still reach the address.
func holdsPersonalData(s order.State) bool {
	return (s.Shipping != nil && !s.Shipping.Erased) || s.TrackingNumber != ""
}

// eraseState returns s with its personal data marked erased.
func eraseState(s order.State) order.State {
	if s.Shipping != nil {
		s.Shipping = &order.Address{Erased: true}
	}
	if s.TrackingNumber != "" {
		s.TrackingNumber, s.TrackingNumberErased = "", true
	}
	return s
}

// customerOrders lists the ids of customerID's orders: those stored and
// those of the batch not yet written. A bulk fill dropped the index of
// orders by customer, so the first erasure it meets builds it (the rest
// of the fill keeps it up to date): without it every erasure read the
// whole table, and a rebuild of a log with erasures took time in their
// number times its size (at 300,000 orders, 150 erasures took the fill
// from 66k to 27k events/s).
func (b *batch) customerOrders(customerID string) ([]string, error) {
	if c := b.carry; c != nil && c.customerIndex != "" && !c.customerIndexed {
		if _, err := b.tx.ExecContext(b.ctx, c.customerIndex); err != nil {
			return nil, err
		}
		// Rolled back with the batch, the index is built at the fill's
		// end still (it builds the indexes the file lacks).
		c.customerIndexed = true
	}
	rows, err := b.tx.QueryContext(b.ctx, `SELECT id FROM orders WHERE customer_id = ?`, customerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	seen := map[string]bool{}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		seen[id] = true
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for id, o := range b.states {
		if o.State.CustomerID == customerID && !seen[id] {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// forget erases the personal data of every order of a forgotten customer
// in the batch, and records a change of each order it erased, for
// watchers, at the event's position. The rows are rewritten, not patched:
// with secure_delete on, SQLite zeroes the old cells, and apply checkpoints
// the WAL after the commit (scrub), so no copy of the plain text survives
// in the files.
func (b *batch) forget(rec eventstore.Recorded, f order.CustomerForgotten) error {
	ids, err := b.customerOrders(f.CustomerID)
	if err != nil {
		return err
	}
	for _, id := range ids {
		o, err := b.load(id, false)
		if err != nil {
			return err
		}
		if !holdsPersonalData(o.State) {
			continue
		}
		o.State = eraseState(o.State)
		b.markDirty(id, rec.Position)
		if b.changes != nil {
			*b.changes = append(*b.changes, Change{Position: rec.Position, OrderID: id, Type: rec.Type, Actor: rec.Meta.Actor,
				State: o.State, Prev: o.State.Status, Revision: o.Revision})
		}
	}
	return nil
}

// scrub moves every page of the WAL into the database file and truncates
// the WAL, so that the pages that held erased personal data do not survive
// in it. It retries while readers hold older snapshots, up to a bound, and
// then leaves it due (scrubDue) rather than stall the projection: the next
// apply scrubs again, and so does a retry in the background
// (retryScrub), so that a quiet read model does not keep the erased data
// in its WAL until something else is written. Errors are SQLite's.
// m.applyMu is held.
func (m *ReadModel) scrub(ctx context.Context) error {
	done, err := m.truncateWAL(ctx)
	if err == nil && done {
		m.scrubDue.Store(0)
		return nil
	}
	// A number of its own, even when an earlier scrub is due still: a
	// retry that began before this erasure must not settle it.
	m.scrubDue.Store(m.scrubs.Add(1))
	m.scheduleScrub()
	return err
}

// scrubRetryPause is how long a scrub left due waits for its retry in the
// background.
const scrubRetryPause = 5 * time.Second

// scheduleScrub arranges a retryScrub the model's scrubPause from now,
// unless one is pending.
func (m *ReadModel) scheduleScrub() {
	if !m.closed.Load() && m.scrubScheduled.CompareAndSwap(false, true) {
		time.AfterFunc(m.scrubPause, m.retryScrub)
	}
}

// retryScrub truncates the WAL on the checkpoint connection when a scrub
// is due, without the apply lock: its busy timeout is short, so a reader
// that still holds an older snapshot costs the projection only that wait,
// and the retry comes again later. A scrub is settled only if no erasure
// was left due since this retry began (scrubDue holds a number of its
// own for each).
func (m *ReadModel) retryScrub() {
	m.scrubScheduled.Store(false)
	if due := m.scrubDue.Load(); due != 0 && !m.closed.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// A failure leaves the scrub due: the next apply's scrub returns
		// the error, and this retries.
		if done, err := m.ck.truncate(ctx); err == nil && done {
			m.scrubDue.CompareAndSwap(due, 0)
		}
		cancel()
		if m.scrubDue.Load() != 0 {
			m.scheduleScrub()
		}
	}
	if m.scrubRetried != nil {
		m.scrubRetried()
	}
}

// truncateWAL checkpoints the whole WAL into the database file, syncs it
// and truncates the WAL, retrying while readers hold older snapshots or
// another connection checkpoints, for half a second at most. It runs on
// the checkpoint connection, whose busy timeout is short (checkpointBusy):
// a TRUNCATE that waits holds new writes back, and on the write
// connection, whose timeout is 10 s, one reader's long snapshot stalled
// the projection that long. It reports whether it got through. Errors are
// SQLite's, or ctx's.
func (m *ReadModel) truncateWAL(ctx context.Context) (bool, error) {
	for start := time.Now(); time.Since(start) < 500*time.Millisecond; {
		if done, err := m.ck.truncate(ctx); err != nil || done {
			return done && err == nil, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false, nil
}
