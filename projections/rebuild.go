package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
	if !r.rebuilding.CompareAndSwap(false, true) {
		return ErrRebuildRunning
	}
	defer r.rebuilding.Store(false)
	if progress == nil {
		progress = func(Progress) {}
	}
	nm, err := r.dir.newModel(ctx)
	if err != nil {
		return err
	}
	swapped := false
	defer func() {
		if !swapped {
			discard(nm)
		}
	}()
	endBulk, err := nm.bulk(ctx)
	if err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}
	target, err := r.log_.Head(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	var done, pos uint64
	report := func(sw bool) {
		p := Progress{EventsDone: done, Target: target, Position: pos, Swapped: sw}
		if s := time.Since(start).Seconds(); s > 0 {
			p.Rate = float64(done) / s
		}
		if target > 0 {
			p.Percent = min(float64(pos)/float64(target)*100, 100)
		} else {
			p.Percent = 100
		}
		progress(p)
	}
	apply := func(batch []Item) error {
		p, _, err := nm.Apply(ctx, batch)
		if err != nil {
			return err
		}
		done += uint64(len(batch))
		pos = p
		return nil
	}
	if target > 0 {
		lastReport := time.Now()
		err := r.readRange(ctx, 1, target, func(batch []Item) error {
			if err := apply(batch); err != nil {
				return err
			}
			if time.Since(lastReport) > 200*time.Millisecond {
				report(false)
				lastReport = time.Now()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("projections: rebuild: %w", err)
		}
		report(false)
	}
	// Before the catch-up, which holds the live applies: building the
	// indexes is the one long step left, and nothing waits on it here.
	if err := endBulk(ctx); err != nil {
		return fmt.Errorf("projections: rebuild: %w", err)
	}

	// Catch up with the live read model and swap, with live applies held,
	// so both stand at the same position at the moment of the swap. The
	// catch-up reads as the live runner does, so a message that cannot be
	// decoded is dead-lettered here too rather than failing the rebuild.
	r.applyMu.Lock()
	live := r.Position()
	if live > pos {
		if err := r.readRange(ctx, pos+1, live, apply); err != nil {
			r.applyMu.Unlock()
			return fmt.Errorf("projections: rebuild catch-up: %w", err)
		}
	}
	if pos < live {
		r.applyMu.Unlock()
		return fmt.Errorf("projections: rebuild reached %d, live read model is at %d", pos, live)
	}
	if err := ctx.Err(); err != nil {
		r.applyMu.Unlock()
		return err
	}
	if err := r.dir.makeCurrent(nm); err != nil {
		r.applyMu.Unlock()
		return fmt.Errorf("projections: swap: %w", err)
	}
	old := r.rm.Swap(nm)
	swapped = true
	r.applyMu.Unlock()
	time.AfterFunc(swapGrace, func() { discard(old) })
	if target < pos {
		target = pos
	}
	report(true)
	return nil
}

// readRange delivers the log from position from to position to (inclusive)
// in batches, through an ordered consumer: the fastest way to read a long
// range, and it leaves no state on the server. A message that cannot be
// decoded is delivered as a dead-letter Item, as the live runner does.
func (r *Runner) readRange(ctx context.Context, from, to uint64, fn func([]Item) error) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cons, err := r.js.OrderedConsumer(cctx, r.log_.StreamName(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{r.log_.SubjectPrefix() + ".*"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return err
	}
	// Nothing left from there (the rest was deleted) would never deliver.
	if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 {
		return nil
	}
	// Larger than the live runner's batches: nothing waits on a replay's
	// freshness, and with scattered order ids each commit rewrites pages
	// all over the id index, so fewer, bigger commits replay 1.7x faster
	// than batches of 1,000 (BenchmarkRebuild).
	const batchSize = 5000
	msgs := make(chan jetstream.Msg, batchSize*2)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-cctx.Done():
		}
	}, jetstream.PullMaxMessages(batchSize*2))
	if err != nil {
		return err
	}
	defer cc.Stop()
	batch := make([]Item, 0, batchSize)
	for {
		var m jetstream.Msg
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m = <-msgs:
		}
		it := r.decode(m)
		// Appended after to: not part of the range.
		beyond := it.Rec.Position > to
		if !beyond {
			batch = append(batch, it)
		}
		// A deleted message at the head would never be delivered: no
		// pending messages also means the end.
		reached := it.Rec.Position >= to
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			reached = true
		}
		if len(batch) > 0 && (len(batch) == batchSize || reached || len(msgs) == 0) {
			if err := fn(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
		if reached {
			return nil
		}
	}
}
