package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/eventstore"
)

// Progress reports a rebuild's advance.
type Progress struct {
	EventsDone uint64  // events applied to the new read model
	Target     uint64  // log head the rebuild catches up to
	Position   uint64  // position the new read model reached
	Rate       float64 // events per second so far
	Percent    float64 // Position / Target × 100
	Swapped    bool    // the new read model is live; the last report
}

// swapGrace is how long a replaced read model stays open for queries that
// started on it before the swap.
const swapGrace = 10 * time.Second

// Rebuild replays the whole log into a new database beside the live one,
// which keeps serving queries, and swaps it in once it has caught up with
// the live read model. progress (may be nil) is called as it goes and once
// after the swap. It returns ErrRebuildRunning when one already runs; when
// ctx ends first, the live read model is untouched and the partial one
// deleted.
func (r *Runner) Rebuild(ctx context.Context, progress func(Progress)) error {
	rp, err := r.rebuild(ctx, progress)
	if err != nil {
		return err
	}
	r.rebuilt(rp, "the rebuild")
	return nil
}

// rebuilt counts and reports what the replay rp, swapped in by what (a
// rebuild, the bulk catch-up), dead-lettered: events it dead-lettered
// again count again (DeadLettered, the dead_lettered metric), as the
// replay met them again. The last event's time moves only forward: a
// rebuild swapped in under a runner that follows the log may end before
// the event the runner applied last.
func (r *Runner) rebuilt(rp *replay, what string) {
	r.dead.Add(rp.dead)
	for n := rp.last.UnixNano(); !rp.last.IsZero(); {
		old := r.lastTime.Load()
		if n <= old || r.lastTime.CompareAndSwap(old, n) {
			break
		}
	}
	if rp.dead > 0 {
		r.logger.Error("projection: events dead-lettered by "+what+"; see the read model's dead letters", "count", rp.dead)
	}
}

// rebuild is Rebuild; it returns the replay, whose position, dead letters
// and last event the swapped-in read model holds.
func (r *Runner) rebuild(ctx context.Context, progress func(Progress)) (*replay, error) {
	if !r.rebuilding.CompareAndSwap(false, true) {
		return nil, ErrRebuildRunning
	}
	defer r.rebuilding.Store(false)
	if progress == nil {
		progress = func(Progress) {}
	}
	nm, err := r.dir.newModel(ctx)
	if err != nil {
		return nil, err
	}
	swapped := false
	defer func() {
		if !swapped {
			discard(nm)
		}
	}()
	endBulk, err := nm.bulk(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: rebuild: %w", err)
	}
	target, err := r.events.Head(ctx)
	if err != nil {
		return nil, err
	}
	rp := &replay{nm: nm, target: target, start: time.Now(), progress: progress}
	if target > 0 {
		lastReport := time.Now()
		err := r.readRange(ctx, 1, target, func(batch []Item) error {
			if err := rp.apply(ctx, batch); err != nil {
				return err
			}
			if time.Since(lastReport) > 200*time.Millisecond {
				rp.report(false)
				lastReport = time.Now()
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("projections: rebuild: %w", err)
		}
		rp.report(false)
	}
	// Before the catch-up, which holds the live applies: building the
	// indexes is the one long step left, and nothing waits on it here.
	if err := endBulk(ctx); err != nil {
		return nil, fmt.Errorf("projections: rebuild: %w", err)
	}
	if err := r.swapIn(ctx, rp); err != nil {
		return nil, err
	}
	swapped = true
	rp.target = max(rp.target, rp.pos)
	rp.report(true)
	return rp, nil
}

// swapIn catches the new read model up with the live one and swaps it in,
// with live applies held, so both stand at the same position at the moment
// of the swap. The catch-up reads as the live runner does, so a message
// that cannot be decoded is dead-lettered here too rather than failing the
// rebuild.
func (r *Runner) swapIn(ctx context.Context, rp *replay) (err error) {
	// Cancelled, or refused, once the runner is stopping (swapping).
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !r.swapping(func() { cancel(ErrRunnerStopped) }) {
		return ErrRunnerStopped
	}
	defer r.swapping(nil)
	defer func() {
		// Cancelled by the runner's stop, not by the rebuild's caller:
		// said as such, so that the caller is not told it left.
		if err != nil && errors.Is(context.Cause(ctx), ErrRunnerStopped) {
			err = fmt.Errorf("%w: %w", ErrRunnerStopped, err)
		}
	}()
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	// What the live model holds uncommitted would be lost with it. The
	// commit is the live model's own, which a failure stops: the
	// rebuild's caller giving up must not fail it.
	if err := r.commit(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	live := r.Position()
	if live > rp.pos {
		if err := r.readRange(ctx, rp.pos+1, live, func(batch []Item) error { return rp.apply(ctx, batch) }); err != nil {
			return fmt.Errorf("projections: rebuild catch-up: %w", err)
		}
	}
	if rp.pos < live {
		return fmt.Errorf("projections: rebuild reached %d, live read model is at %d", rp.pos, live)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.dir.makeCurrent(rp.nm); err != nil {
		return fmt.Errorf("projections: swap: %w", err)
	}
	r.retire(r.rm.Swap(rp.nm))
	if rp.pos > live {
		// The new model is ahead of the live one (the replay read past
		// a runner still catching up): the feed never saw the changes in
		// between, so it restarts there and ends its watchers
		// (ErrFeedRestarted), and the runner goes on from the new
		// checkpoint.
		r.feed.start(rp.pos, severalAt(context.WithoutCancel(ctx), rp.nm, rp.pos))
		r.move(&r.committed, rp.pos)
	}
	return nil
}

// replay is the state of a rebuild's new read model.
type replay struct {
	nm        *ReadModel
	target    uint64 // log head the rebuild catches up to
	start     time.Time
	done, pos uint64
	dead      uint64    // events dead-lettered
	last      time.Time // occurred-at of the last event applied
	progress  func(Progress)
}

func (rp *replay) apply(ctx context.Context, batch []Item) error {
	p, dead, err := rp.nm.Apply(ctx, batch)
	if err != nil {
		return err
	}
	rp.done += uint64(len(batch))
	rp.pos, rp.dead = p, rp.dead+uint64(len(dead))
	if len(batch) > 0 {
		rp.last = eventTime(batch[len(batch)-1].Rec)
	}
	return nil
}

func (rp *replay) report(swapped bool) {
	p := Progress{EventsDone: rp.done, Target: rp.target, Position: rp.pos, Swapped: swapped}
	if s := time.Since(rp.start).Seconds(); s > 0 {
		p.Rate = float64(rp.done) / s
	}
	if rp.target > 0 {
		p.Percent = min(float64(rp.pos)/float64(rp.target)*100, 100)
	} else {
		p.Percent = 100
	}
	rp.progress(p)
}

// rebuildBatch is the size of a rebuild's batches: larger than the live
// runner's, since nothing waits on a replay's freshness, so that there are
// fewer commits. When the replay still inserted into the id index (before
// schema 5), whose pages each commit rewrote all over, batches of 5,000
// replayed 1.7x faster than batches of 1,000 (BenchmarkRebuild).
const rebuildBatch = 5000

// readRange delivers the log from position from to position to (inclusive)
// in batches. A message that cannot be decoded is delivered as a
// dead-letter Item, as the live runner does.
//
// Reading and decoding (the client's parsing, opening sealed data) run on
// their own goroutines, ahead of fn: a replay is otherwise one goroutine
// that waits for the network while SQLite idles and the other way round,
// and with a second core the two overlap.
func (r *Runner) readRange(ctx context.Context, from, to uint64, fn func([]Item) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A batch is handed over when fn is ready for it, and until then
	// decodeRange gathers what arrives into it.
	pool := make(itemSlices, 4)
	batches, read := produce(ctx, from, to, func(ctx context.Context, from, to uint64, out chan<- []Item) error {
		return r.decodeRange(ctx, from, to, out, pool)
	})
	var err error
	for items := range batches {
		if err == nil {
			if err = fn(items); err != nil {
				cancel() // the reader stops; drain what it already sent
			}
		}
		pool.put(items)
	}
	// After a failed apply fn's error is the one returned, whatever
	// the reader reports.
	if readErr := <-read; err == nil {
		err = readErr
	}
	return err
}

// decodeRange reads the log from from to to, decodes it, and sends it on
// out in batches. A read yields what has arrived, and its read-ahead
// bounds that (2,000 messages), while each batch a replay applies is one
// commit: so what arrives while the receiver is busy is gathered into one
// batch, until it holds rebuildBatch events (fewer than twice that, since
// a read's batch is added whole), and handed over as soon as the receiver
// is ready, whatever its size. On a read error what was gathered is
// dropped: the callers abandon the range. It returns once the read has
// stopped, whatever ends it. The read's batches go back to pool once
// gathered, and the gathered ones come from it.
func (r *Runner) decodeRange(ctx context.Context, from, to uint64, out chan<- []Item, pool itemSlices) error {
	ctx, cancel := context.WithCancel(ctx)
	decoded, read := produce(ctx, from, to, func(ctx context.Context, from, to uint64, out chan<- []Item) error {
		return r.decodeBatches(ctx, from, to, out, pool)
	})
	defer func() {
		cancel()
		for range decoded { // until the read and its consumer have stopped
		}
	}()
	var gathered []Item
	in := decoded
	for in != nil || len(gathered) > 0 {
		var send chan<- []Item
		if len(gathered) > 0 {
			send = out
		}
		recv := in
		if len(gathered) >= rebuildBatch {
			recv = nil // full: hand it over first
		}
		select {
		case items, ok := <-recv:
			if !ok {
				if err := <-read; err != nil {
					return err
				}
				in = nil
				continue
			}
			if gathered == nil {
				gathered = pool.get(int(min(gatheredCap, to-from+1)))
			}
			gathered = append(gathered, items...)
			pool.put(items)
		case send <- gathered:
			gathered = nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil // the read ended without error (in closed)
}

// produce runs send on a goroutine of its own with an unbuffered channel,
// closed when send returns, and read, which then holds send's error: the
// receiver takes each batch when it is ready for it.
func produce(ctx context.Context, from, to uint64, send func(context.Context, uint64, uint64, chan<- []Item) error) (<-chan []Item, <-chan error) {
	out := make(chan []Item)
	read := make(chan error, 1)
	go func() {
		defer close(out)
		read <- send(ctx, from, to, out)
	}()
	return out, read
}

// decodeBatches reads the log from from to to and sends the read's
// batches, decoded, on out, each in a slice from pool.
func (r *Runner) decodeBatches(ctx context.Context, from, to uint64, out chan<- []Item, pool itemSlices) error {
	for b, err := range r.events.ReadBatches(ctx, from, eventstore.UpTo(to), eventstore.BatchSize(rebuildBatch)) {
		if err != nil {
			return err
		}
		items := r.itemsOf(ctx, pool.get(len(b.Entries)), b.Entries)
		if err := keyTrouble(items); err != nil {
			return err
		}
		select {
		case out <- items:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// gatheredCap is the most a batch decodeRange gathers can hold: it takes
// a read's batch (at most rebuildBatch events) while it holds fewer than
// rebuildBatch.
const gatheredCap = 2 * rebuildBatch

// itemSlices recycles a replay's batches. Apply keeps no item of a batch
// once it returns (the live runner refills its own batch the same way), so
// the read's batches and the gathered ones, about 740 bytes per event
// together, are filled again instead of being left to the GC, which at a
// million events marks the embedded server's subject index on every cycle.
// A nil itemSlices allocates every slice and keeps none.
type itemSlices chan []Item

// get returns an empty slice with room for n items.
func (p itemSlices) get(n int) []Item {
	select {
	case s := <-p:
		if cap(s) >= n {
			return s
		}
	default:
	}
	return make([]Item, 0, n)
}

// put hands s back for reuse, dropping what its items refer to; s is the
// caller's no more.
func (p itemSlices) put(s []Item) {
	clear(s)
	select {
	case p <- s[:0]:
	default:
	}
}
