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
	"slices"
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
	// Held is the processor time that overlapped the long waits, by the
	// function the running goroutine started in, most first. Its times
	// add up to more than LongTotal when several processors ran at once.
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

// wait is a stretch of one goroutine's time runnable without a processor.
type wait struct{ start, end trace.Time }

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
		names    = map[trace.GoID]string{}
		running  = map[trace.GoID]trace.Time{}
		runnable = map[trace.GoID]trace.Time{}
		runs     []run
		long     []wait
		waits    []time.Duration
	)
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("schedwait: %w", err)
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		g := st.Resource.Goroutine()
		if fn, known := names[g]; !known || wrappers[fn] {
			// A wrapper's name says nothing of the goroutine: a later
			// stack of it (when it blocks, say) names what it runs.
			if fn := startFunc(st.Stack); fn != "" || !known {
				names[g] = cmp.Or(fn, "?")
			}
		}
		from, to := st.Goroutine()
		at := ev.Time()
		switch to {
		case trace.GoRunnable:
			runnable[g] = at
		case trace.GoRunning:
			if since, ok := runnable[g]; ok {
				d := time.Duration(at - since)
				waits = append(waits, d)
				if d > over {
					long = append(long, wait{since, at})
				}
				delete(runnable, g)
			}
			running[g] = at
		}
		if from == trace.GoRunning && to != trace.GoRunning {
			if since, ok := running[g]; ok {
				runs = append(runs, run{since, at, g})
				delete(running, g)
			}
		}
	}
	if len(waits) == 0 {
		return nil, ErrNoWaits
	}
	slices.Sort(waits)
	q := func(p float64) time.Duration { return waits[min(len(waits)-1, int(p*float64(len(waits))))] }
	rep := &Report{Waits: len(waits), P50: q(0.5), P99: q(0.99), P999: q(0.999), Max: waits[len(waits)-1], Over: over, Long: len(long)}
	for _, w := range long {
		rep.LongTotal += time.Duration(w.end - w.start)
	}
	rep.Held = held(runs, long, names)
	return rep, nil
}

// wrappers start goroutines for a function they are given: the function
// inside them names the goroutine.
var wrappers = map[string]bool{
	"sync.(*WaitGroup).Go.func1":                   true,
	"golang.org/x/sync/errgroup.(*Group).Go.func1": true,
	"?": true,
}

// startFunc is the function a goroutine started in, from one of its
// stacks: the outermost frame that is not a wrapper's ("" for no stack).
// A stack that holds nothing but a wrapper names the wrapper.
func startFunc(s trace.Stack) string {
	var frames []string
	for f := range s.Frames() {
		frames = append(frames, f.Func)
	}
	for i := len(frames) - 1; i >= 0; i-- {
		if !wrappers[frames[i]] || i == 0 {
			return frames[i]
		}
	}
	return ""
}

// held adds up, by the function each goroutine started in (names), the
// processor time of runs that overlapped the waits.
func held(runs []run, waits []wait, names map[trace.GoID]string) []Holder {
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.start, b.start) })
	var longest trace.Time
	for _, r := range runs {
		longest = max(longest, r.end-r.start)
	}
	byFunc := map[string]time.Duration{}
	var total time.Duration
	for _, w := range waits {
		// A run overlapping w starts before w ends and, being at most
		// longest long, no earlier than longest before w starts.
		i, _ := slices.BinarySearchFunc(runs, w.start-longest, func(r run, t trace.Time) int { return cmp.Compare(r.start, t) })
		for ; i < len(runs) && runs[i].start < w.end; i++ {
			if lo, hi := max(runs[i].start, w.start), min(runs[i].end, w.end); hi > lo {
				byFunc[names[runs[i].g]] += time.Duration(hi - lo)
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
