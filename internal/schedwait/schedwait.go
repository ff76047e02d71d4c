// Package schedwait reads a Go runtime execution trace (such as ordersd
// serves under DEBUG_ADDR at /debug/pprof/trace) and answers the question
// a latency tail asks: while goroutines were ready to run, who had the
// processors?
//
// A goroutine that becomes runnable waits until a processor (a P) takes
// it; on a machine with few cores that wait is where a request's tail
// latency comes from when nothing in the request itself was slow. Analyze
// measures every such wait and, for the waits longer than a threshold,
// adds up the processor time that overlapped them by the function each
// running goroutine started in: the garbage collector's mark workers,
// grpc-go's connection readers, a NATS client's flusher, and so on. A CPU
// profile says where the time goes on average; this says who was running
// during the waits that make the tail.
package schedwait

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// ErrNoWaits reports a trace in which no goroutine was seen to wait for a
// processor: too short, or not an execution trace of a busy program.
var ErrNoWaits = errors.New("schedwait: the trace holds no runnable waits")

// Report is what Analyze finds in one trace.
type Report struct {
	// Waits is how many times a goroutine waited, runnable, for a
	// processor; the quantiles and maximum are of those waits.
	Waits               int
	P50, P99, P999, Max time.Duration
	// Over is the threshold of a long wait; Long counts the waits longer
	// than it and LongTotal adds up their durations.
	Over      time.Duration
	Long      int
	LongTotal time.Duration
	// During is how long at least one long wait went on: LongTotal with
	// the time during which several waited at once counted once.
	During time.Duration
	// Held is the processor time during the long waits (while at least
	// one of them went on), by the function the running goroutine started
	// in, most first. With several processors it can add up to more than
	// that time.
	Held []Holder
}

// Holder is one starting function's processor time during the long waits.
type Holder struct {
	Func  string // the function the goroutine started in; "?" if the trace does not say
	Time  time.Duration
	Share float64 // Time over the sum of every holder's Time
}

// run is a stretch of processor time of one goroutine.
type run struct {
	start, end trace.Time
	g          trace.GoID
}

// span is a stretch of time: a runnable goroutine's wait, or a stretch
// during which long waits went on.
type span struct{ start, end trace.Time }

// Analyze reads the execution trace in r and reports its runnable waits,
// attributing the processor time during those longer than over. It
// returns the reader's error for a trace it cannot parse, and ErrNoWaits
// for one without a runnable wait.
func Analyze(r io.Reader, over time.Duration) (*Report, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("schedwait: %w", err)
	}
	var (
		names    = namer{}
		running  = map[trace.GoID]trace.Time{}
		runnable = map[trace.GoID]trace.Time{}
		runs     []run
		long     []span
		waits    []time.Duration
		last     trace.Time
	)
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("schedwait: %w", err)
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		g := st.Resource.Goroutine()
		names.see(g, st.Stack)
		from, to := st.Goroutine()
		if from == to {
			// The state every goroutine is restated in at each of the
			// trace's generations (about a second): nothing happened.
			continue
		}
		at := ev.Time()
		switch to {
		case trace.GoRunnable:
			runnable[g] = at
		case trace.GoRunning:
			if since, ok := runnable[g]; ok {
				d := time.Duration(at - since)
				waits = append(waits, d)
				if d > over {
					long = append(long, span{since, at})
				}
				delete(runnable, g)
			}
			running[g] = at
		}
		if from == trace.GoRunning {
			if since, ok := running[g]; ok {
				runs = append(runs, run{since, at, g})
				delete(running, g)
			}
		}
	}
	// Runs still going when the trace ended end with it.
	for g, since := range running {
		runs = append(runs, run{since, last, g})
	}
	if len(waits) == 0 {
		return nil, ErrNoWaits
	}
	slices.Sort(waits)
	rep := &Report{Waits: len(waits), P50: quantile(waits, 0.5), P99: quantile(waits, 0.99), P999: quantile(waits, 0.999),
		Max: waits[len(waits)-1], Over: over, Long: len(long)}
	for _, w := range long {
		rep.LongTotal += time.Duration(w.end - w.start)
	}
	during := union(long)
	for _, w := range during {
		rep.During += time.Duration(w.end - w.start)
	}
	rep.Held = held(runs, during, names.names())
	return rep, nil
}

// quantile is the q-quantile of sorted: the smallest value at or above
// which lies no more than 1-q of them.
func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[max(0, int(math.Ceil(q*float64(len(sorted))))-1)]
}

// union merges spans that overlap, so that time during which several
// goroutines waited counts once.
func union(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.start, b.start) })
	var out []span
	for _, s := range spans {
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// wrappers start goroutines for a function they are given: the function
// inside them names the goroutine. Their closures (a deferred Done, say)
// are theirs too.
var wrappers = []string{
	"sync.(*WaitGroup).Go.func1",
	"golang.org/x/sync/errgroup.(*Group).Go.func1",
}

func isWrapper(fn string) bool {
	for _, w := range wrappers {
		if fn == w || strings.HasPrefix(fn, w+".") {
			return true
		}
	}
	return false
}

// namer names goroutines by the function they started in, from the stacks
// the trace gives of them: creation gives the function the go statement
// started (a wrapper, for WaitGroup.Go), later stacks what runs inside the
// wrapper. A stack taken at an asynchronous preemption can lack frames,
// so those are not used, and each goroutine takes the name most of its
// stacks give, preferring one that is not a wrapper's.
type namer map[trace.GoID]map[string]int

func (n namer) see(g trace.GoID, s trace.Stack) {
	var frames []string
	for f := range s.Frames() {
		if strings.HasPrefix(f.Func, "runtime.asyncPreempt") {
			return
		}
		frames = append(frames, f.Func)
	}
	if len(frames) == 0 {
		return
	}
	// Frames run from the innermost: the goroutine started in the last
	// one, or, under a wrapper, in the one the wrapper called. A stack in
	// the wrapper's own closure (its deferred Done) names nothing.
	fn := frames[len(frames)-1]
	if len(frames) > 1 && isWrapper(fn) {
		if fn = frames[len(frames)-2]; isWrapper(fn) {
			return
		}
	}
	if n[g] == nil {
		n[g] = map[string]int{}
	}
	n[g][fn]++
}

// names is each goroutine's name: its most frequent, a wrapper's only
// when nothing else named it, ties to the first in order.
func (n namer) names() map[trace.GoID]string {
	out := make(map[trace.GoID]string, len(n))
	for g, votes := range n {
		best, bestVotes, bestWrapper := "", 0, true
		for fn, v := range votes {
			w := isWrapper(fn)
			better := (bestWrapper && !w) || (w == bestWrapper && (v > bestVotes || (v == bestVotes && fn < best)))
			if best == "" || better {
				best, bestVotes, bestWrapper = fn, v, w
			}
		}
		out[g] = best
	}
	return out
}

// held adds up, by the function each goroutine started in (names, "?" for
// one the trace never named), the processor time of runs during spans.
func held(runs []run, spans []span, names map[trace.GoID]string) []Holder {
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.start, b.start) })
	var longest trace.Time
	for _, r := range runs {
		longest = max(longest, r.end-r.start)
	}
	byFunc := map[string]time.Duration{}
	var total time.Duration
	for _, w := range spans {
		// A run overlapping w starts before w ends and, being at most
		// longest long, no earlier than longest before w starts.
		i, _ := slices.BinarySearchFunc(runs, w.start-longest, func(r run, t trace.Time) int { return cmp.Compare(r.start, t) })
		for ; i < len(runs) && runs[i].start < w.end; i++ {
			if lo, hi := max(runs[i].start, w.start), min(runs[i].end, w.end); hi > lo {
				fn := cmp.Or(names[runs[i].g], "?")
				byFunc[fn] += time.Duration(hi - lo)
				total += time.Duration(hi - lo)
			}
		}
	}
	out := make([]Holder, 0, len(byFunc))
	for fn, d := range byFunc {
		out = append(out, Holder{Func: fn, Time: d, Share: float64(d) / float64(total)})
	}
	slices.SortFunc(out, func(a, b Holder) int {
		return cmp.Or(cmp.Compare(b.Time, a.Time), cmp.Compare(a.Func, b.Func))
	})
	return out
}
