package eventstore

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// An order's trail is the log positions of its first events, as this
// process appended or loaded them. A load asks the server for each of
// them by its position, and only for what follows the trail by subject.
//
// Why: the server finds an order's next event after a position by walking
// the messages of its message block from that position until one is on
// the order's subject (nats-server keeps, per block, only the first and the
// last sequence of each subject). Between two events of an order written a
// while apart lie thousands of other orders' messages, and under the mixed
// load that walk was a tenth of ordersd's CPU (BENCHMARKS.md). A get at the
// event's own position finds it at once.
//
// Why it is safe: every append checks the order's last position on the
// server, so no event of the order lies between the positions of two
// consecutive versions, and the event at a position never changes on a
// stream that denies deletes and purges. Each answer to a get by position
// is the order's first event at or after it, checked to be the event the
// trail expects there, at its position and version, and no two answers may
// fill one place: an event deleted since (on a stream that allows it) is
// answered by the next one, which fails those checks. Anything that fails
// them (a lagging replica, a deleted event, an append whose events were not
// stored side by side) cuts the trail back to what the load did not ask
// for, and the load reads the order by subject as it would without one,
// which puts what it read back on the trail.

// maxTrailGets bounds the gets by position a load sends at once (each
// answer is a whole event, outside the byte limit of a page): the events
// after the first maxTrailGets are read by subject after them.
const maxTrailGets = 16

// maxTrail bounds a trail, and with it what versionCache holds: 8 bytes an
// event, at most 512 bytes an order. An order's events after its first
// maxTrail are read by subject (as are all of the orders of a histories
// cache's maxCachedEvents, which is the same).
const maxTrail = 64

// trailAfter returns the trail's first positions after position, at most
// maxTrailGets, and the version of the first of them (none when the trail
// ends at or before it); more reports that the trail goes on after them.
func (c *versionCache) trailAfter(orderID string, position uint64) (positions []uint64, version uint64, more bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.get(orderID)
	t := e.trail
	i, _ := slices.BinarySearch(t, position+1)
	if i == len(t) {
		return nil, 0, false
	}
	end := min(len(t), i+maxTrailGets)
	return slices.Clone(t[i:end]), uint64(i) + 1, end < len(t)
}

// extendTrail adds the positions of recs, the order's events oldest first,
// to its trail where they continue it. An event the trail holds at another
// position replaces the trail from there on.
func (c *versionCache) extendTrail(orderID string, recs []Recorded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.get(orderID)
	for _, r := range recs {
		if !e.extend(r.Version, r.Position) {
			break
		}
	}
	c.put(orderID, e)
}

// appended remembers an append at expectedRevision of n events, the last
// at position, begun in epoch, as remember does, and extends the order's trail by them:
// the append's events are taken to be stored side by side, which a load
// checks.
func (c *versionCache) appended(orderID string, expectedRevision uint64, n int, position, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, _ := c.get(orderID)
	e.mark(expectedRevision+uint64(n), position, epoch)
	for i := range uint64(n) {
		if !e.extend(expectedRevision+i+1, position-uint64(n)+i+1) {
			break
		}
	}
	c.put(orderID, e)
}

// extend puts the event at version and position on the trail and reports
// whether the next version may follow. A version 0 (an event written
// before versions were recorded, whose get by position cannot be checked),
// one beyond the version after the trail's end, or one beyond maxTrail
// does not go on it.
func (e *versionMark) extend(version, position uint64) bool {
	n := uint64(len(e.trail))
	if version == 0 || version > n+1 || version > maxTrail {
		return false
	}
	if version <= n {
		if e.trail[version-1] == position {
			return true
		}
		e.trail, n = e.trail[:version-1], version-1
	}
	if n > 0 && position <= e.trail[n-1] {
		return false
	}
	e.trail = append(e.trail, position)
	return true
}

// cutTrail forgets the order's trail after position: a load from there
// found it wrong, or could not check it.
func (c *versionCache) cutTrail(orderID string, position uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.get(orderID); ok {
		i, _ := slices.BinarySearch(e.trail, position+1)
		e.trail = e.trail[:i]
		c.put(orderID, e)
	}
}

// receiveAt reads the answers to gets of an order's events at positions
// (ascending), the first at version, sent with send, appending the events
// to dst in order, and closes g. ok is false, dst unchanged, when an answer
// is not the event expected at its position.
func (g *pendingGet) receiveAt(ctx context.Context, positions []uint64, version uint64, dst []Recorded) (_ []Recorded, ok bool, _ error) {
	defer g.close()
	n := len(dst)
	got := slices.Grow(dst, len(positions))[:n+len(positions)]
	clear(got[n:])
	for range positions {
		m, err := g.next(ctx)
		if err != nil {
			return dst, false, err
		}
		if m.Header.Get(jetstream.SequenceHeader) == "" {
			if m.Header.Get("Status") == statusNoResponders {
				return dst, false, nats.ErrNoResponders
			}
			return dst, false, nil
		}
		r, err := recordedFromDirect(m, g.s.cfg.prefix)
		if err != nil {
			return dst, false, err
		}
		i, found := slices.BinarySearch(positions, r.Position)
		if !found || r.Version != version+uint64(i) || got[n+i].Position != 0 {
			return dst, false, nil
		}
		got[n+i] = r
	}
	return got, true, nil
}
