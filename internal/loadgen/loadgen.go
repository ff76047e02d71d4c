// Package loadgen drives a running ordersd with an open-loop load and
// reports throughput and latency percentiles.
//
// Open loop: requests are scheduled at a constant arrival rate, and each
// one's latency is measured from its scheduled time, not from when it was
// finally sent. A server that stalls therefore shows its stall in the
// percentiles instead of silently slowing the generator down (coordinated
// omission). When Concurrency requests are already in flight, a scheduled
// request waits for a free slot and its wait counts in its latency, as a
// user's would; with Config.Drop it is not sent and is counted as dropped
// instead (useful to find peak throughput without a growing queue).
//
// Targets: the gRPC API, the REST API, or "raw": the same operations done
// bare on JetStream (a publish with an expected last subject sequence,
// re-read and retried after a lost race as the command side does, and a
// direct get), against a separate stream, to give the floor the system is
// compared with.
//
// RunClosed is the closed-loop counterpart (each client sends its next
// request when the previous one is answered), for throughput not capped by
// an offered rate; Floor uses it to measure a child ordersd against raw
// gRPC and raw JetStream in one run.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Op is one kind of request.
type Op string

// The operations of a mix.
const (
	Create Op = "create"
	Add    Op = "add"
	Place  Op = "place"
	Get    Op = "get"
	List   Op = "list"
)

// Mix weights the operations.
type Mix map[Op]int

// ParseMix reads "create=40,add=30,place=10,get=15,list=5".
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		w, err := strconv.Atoi(v)
		op := Op(k)
		if !ok || err != nil || w < 0 || (op != Create && op != Add && op != Place && op != Get && op != List) {
			return nil, fmt.Errorf("mix %q: want op=weight with ops create, add, place, get, list", part)
		}
		m[op] = w
	}
	total := 0
	for _, w := range m {
		total += w
	}
	if total == 0 {
		return nil, errors.New("mix: weights add up to 0")
	}
	return m, nil
}

// String writes the mix as ParseMix reads it, ops in the order create,
// add, place, get, list, those of weight 0 left out.
func (m Mix) String() string {
	var parts []string
	for _, op := range []Op{Create, Add, Place, Get, List} {
		if w := m[op]; w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", op, w))
		}
	}
	return strings.Join(parts, ",")
}

// ops lists each op as often as its weight, in a fixed order, so a seeded
// draw from it is repeatable.
func (m Mix) ops() []Op {
	ops := make([]Op, 0, 100)
	for op, w := range m {
		for range w {
			ops = append(ops, op)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i] < ops[j] })
	return ops
}

// Target performs operations.
type Target interface {
	// Do performs one op. It returns a short error class ("" on success)
	// such as a gRPC code name or an HTTP status.
	Do(ctx context.Context, op Op, r *rand.Rand) (class string)
	Close() error
}

// Config is one run.
type Config struct {
	Rate        float64       // requests per second
	Concurrency int           // max in flight
	Duration    time.Duration // how long to schedule requests
	Mix         Mix
	Timeout     time.Duration // per request
	// Drop skips a scheduled request when Concurrency requests are in
	// flight, instead of queueing it. Queued requests keep their scheduled
	// time, so a saturated server shows as latency; dropped ones show only
	// as a count.
	Drop bool
}

// OpStats are the results of one operation.
type OpStats struct {
	Count  int64            `json:"count"`
	Errors map[string]int64 `json:"errors,omitempty"`
	P50    float64          `json:"p50_ms"`
	P90    float64          `json:"p90_ms"`
	P99    float64          `json:"p99_ms"`
	P999   float64          `json:"p99_9_ms"`
	Max    float64          `json:"max_ms"`
	// OverRange counts the latencies above maxLatency, which the
	// quantiles hold as maxLatency: a sample the histogram could not
	// hold would otherwise leave the quantiles while still counted, and
	// make them look better than the run was.
	OverRange int64 `json:"over_range,omitempty"`
	// LateOK counts the successes a closed loop had answered only after
	// its run ended (RunClosed): their latencies are in the quantiles, and
	// they are not in the rate, which is the successes answered within the
	// run over its length (OKRate).
	LateOK int64 `json:"late_ok,omitempty"`
}

// Report is the result of a run.
type Report struct {
	Target     string  `json:"target"`
	Rate       float64 `json:"offered_rate"`
	Duration   float64 `json:"duration_s"`
	Completed  int64   `json:"completed"`
	Dropped    int64   `json:"dropped"`
	Throughput float64 `json:"throughput"`
	// OKThroughput is OKRate: the successes per second, those a closed
	// loop had answered after its end left out; what the floor's ratios
	// compare, where Throughput counts every answer.
	OKThroughput float64         `json:"ok_throughput"`
	Overall      OpStats         `json:"overall"`
	Ops          map[Op]*OpStats `json:"ops"`
	// CPU is what the run cost in processor time, where it was measured
	// (ordersbench floor's phases).
	CPU  *CPU `json:"cpu,omitempty"`
	hist map[Op]*hdrhistogram.Histogram
}

// MaxRate is the highest rate Run schedules: one request a nanosecond.
const MaxRate = 1e9

// Run drives t with cfg until cfg.Duration has passed and every request
// has finished, or ctx ends.
func Run(ctx context.Context, name string, t Target, cfg Config) (*Report, error) {
	// Written so that NaN, which every comparison rejects, fails too; past
	// 1e9/s the interval between requests is under a nanosecond, 0, and
	// the schedule would never reach the end of the run.
	if !(cfg.Rate > 0 && cfg.Rate <= MaxRate) || cfg.Concurrency <= 0 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("loadgen: rate (up to %g/s), concurrency and duration must be positive", float64(MaxRate))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	ops := cfg.Mix.ops()
	rec := newRecorder(name)
	rec.rep.Rate = cfg.Rate
	record := rec.record
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	var dropped atomic.Int64
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	end := start.Add(cfg.Duration)
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), 1))
	for i := int64(0); ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if !at.Before(end) || ctx.Err() != nil {
			break
		}
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		op := ops[rng.IntN(len(ops))]
		if cfg.Drop {
			select {
			case sem <- struct{}{}:
			default:
				dropped.Add(1)
				continue
			}
		} else {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				continue
			}
		}
		seed := rng.Uint64()
		wg.Go(func() {
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			class := t.Do(rctx, op, rand.New(rand.NewPCG(seed, 2)))
			record(op, time.Since(at), class)
		})
	}
	wg.Wait()
	rep := rec.finish(time.Since(start))
	rep.Dropped = dropped.Load()
	return rep, nil
}

// recorder collects one run's latencies, per operation and overall.
type recorder struct {
	mu      sync.Mutex
	rep     *Report
	overall *hdrhistogram.Histogram
}

func newRecorder(name string) *recorder {
	return &recorder{
		rep:     &Report{Target: name, Ops: map[Op]*OpStats{}, hist: map[Op]*hdrhistogram.Histogram{}},
		overall: newHistogram(),
	}
}

// maxLatency is the top of the latency histograms, far above what any
// request of a run can take (their timeouts are seconds), so that no
// quantile has to leave a sample out; one above it is held at it and
// counted (OpStats.OverRange).
const maxLatency = time.Hour

// newHistogram holds latencies in microseconds, from 1 µs to maxLatency,
// to three significant digits.
func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(maxLatency/time.Microsecond), 3)
}

// op returns op's histogram and stats, made on first use (with r.mu held).
func (r *recorder) op(op Op) (*hdrhistogram.Histogram, *OpStats) {
	h, ok := r.rep.hist[op]
	if !ok {
		h = newHistogram()
		r.rep.hist[op] = h
		r.rep.Ops[op] = &OpStats{Errors: map[string]int64{}}
	}
	return h, r.rep.Ops[op]
}

func (r *recorder) record(op Op, lat time.Duration, class string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, st := r.op(op)
	us := max(lat.Microseconds(), 1)
	if top := int64(maxLatency / time.Microsecond); us > top {
		us = top
		st.OverRange++
	}
	// In range now, so neither can fail; the counts are taken from the
	// histograms (finish), which therefore hold every sample counted.
	_ = h.RecordValue(us)
	_ = r.overall.RecordValue(us)
	if class != "" {
		st.Errors[class]++
	}
}

// lateOK counts a success of op answered after a closed loop's end.
func (r *recorder) lateOK(op Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, st := r.op(op)
	st.LateOK++
}

// finish computes the percentiles and the throughput over elapsed.
func (r *recorder) finish(elapsed time.Duration) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.rep
	rep.Duration = elapsed.Seconds()
	rep.Completed, rep.Overall.Errors, rep.Overall.OverRange, rep.Overall.LateOK = 0, nil, 0, 0
	for op, s := range rep.Ops {
		fill(s, rep.hist[op])
		rep.Completed += s.Count
		rep.Overall.OverRange += s.OverRange
		rep.Overall.LateOK += s.LateOK
		for k, v := range s.Errors {
			if rep.Overall.Errors == nil {
				rep.Overall.Errors = map[string]int64{}
			}
			rep.Overall.Errors[k] += v
		}
	}
	fill(&rep.Overall, r.overall)
	rep.Throughput = float64(rep.Completed) / elapsed.Seconds()
	rep.OKThroughput = rep.OKRate()
	return rep
}

// mergeReports is the report of parts run one after another as one run
// named name: their durations, counts and errors added up, their latency
// histograms merged, the throughput over the summed duration, their CPU
// added up when every part has it. The offered rate is the last part's
// (the parts of one phase share it).
func mergeReports(name string, parts []*Report) *Report {
	rec := newRecorder(name)
	m := rec.rep
	var elapsed time.Duration
	cpu, metered := CPU{}, len(parts) > 0
	for _, p := range parts {
		if p.CPU == nil {
			metered = false
		} else {
			cpu = cpu.add(*p.CPU)
		}
		// Rounded, not truncated: a part's seconds times 1e9 can fall a hair
		// short of its whole nanoseconds.
		elapsed += time.Duration(math.Round(p.Duration * float64(time.Second)))
		m.Dropped += p.Dropped
		m.Rate = p.Rate
		for op, s := range p.Ops {
			h, st := rec.op(op)
			h.Merge(p.hist[op])
			rec.overall.Merge(p.hist[op])
			st.OverRange += s.OverRange
			st.LateOK += s.LateOK
			for k, v := range s.Errors {
				st.Errors[k] += v
			}
		}
	}
	m = rec.finish(elapsed)
	if metered {
		m.CPU = &cpu
	}
	return m
}

// RunClosed drives t with a closed loop: clients goroutines each send the
// next request as soon as the previous one is answered, for d (or until
// ctx ends), with ops drawn from mix. The throughput is what the target
// sustains at that concurrency, not capped by an offered rate: the
// successes answered within d, over d (OKRate; those still running at the
// end are recorded with their latencies and errors when answered, but not
// rated: Count and LateOK). Latency is each request's own round trip.
// Report.Rate is 0.
func RunClosed(ctx context.Context, name string, t Target, clients int, d time.Duration, mix Mix, timeout time.Duration) (*Report, error) {
	if clients <= 0 || d <= 0 {
		return nil, errors.New("loadgen: clients and duration must be positive")
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ops := mix.ops()
	if len(ops) == 0 {
		return nil, errors.New("loadgen: empty mix")
	}
	rec := newRecorder(name)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(c)))
			for ctx.Err() == nil {
				op := ops[rng.IntN(len(ops))]
				// The request's own deadline is not the run's, so the
				// end of the run cuts none off: one that ends after it,
				// failed or not, is recorded like any other, or the
				// failures at the end would go missing. Rates count the
				// successes alone (OKRate).
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
				t0 := time.Now()
				class := t.Do(rctx, op, rng)
				t1 := time.Now()
				rcancel()
				rec.record(op, t1.Sub(t0), class)
				if class == "" && t1.After(end) {
					rec.lateOK(op)
				}
			}
		})
	}
	wg.Wait()
	// The rate is over the run's length, of what was answered within it:
	// over the time until the slowest request still running at the end
	// was answered, with every other client idle meanwhile, an operation
	// with a longer tail was rated lower than its floor for its tail
	// alone (a tenth of a one-second round for a 100 ms straggler).
	return rec.finish(min(d, time.Since(start))), nil
}

// fill sets s's count and quantiles from h, so that the count is of the
// samples the quantiles are of.
func fill(s *OpStats, h *hdrhistogram.Histogram) {
	s.Count = h.TotalCount()
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	s.P50, s.P90, s.P99, s.P999 = ms(50), ms(90), ms(99), ms(99.9)
	s.Max = float64(h.Max()) / 1000
}

// String renders the report as a table.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: offered %.0f/s for %.1fs, completed %d (%.0f/s), dropped %d\n", r.Target, r.Rate, r.Duration, r.Completed, r.Throughput, r.Dropped)
	fmt.Fprintf(&b, "%-8s %8s %9s %9s %9s %9s %9s  %s\n", "op", "count", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors")
	ops := make([]string, 0, len(r.Ops))
	for op := range r.Ops {
		ops = append(ops, string(op))
	}
	sort.Strings(ops)
	row := func(name string, s *OpStats) {
		over := ""
		if s.OverRange > 0 {
			over = fmt.Sprintf("  %d above %s, held at it", s.OverRange, maxLatency)
		}
		fmt.Fprintf(&b, "%-8s %8d %9.2f %9.2f %9.2f %9.2f %9.2f  %v%s\n", name, s.Count, s.P50, s.P90, s.P99, s.P999, s.Max, s.Errors, over)
	}
	for _, op := range ops {
		row(op, r.Ops[Op(op)])
	}
	row("all", &r.Overall)
	return b.String()
}
