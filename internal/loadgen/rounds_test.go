package loadgen

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/rawbench"
)

// instant answers gets at once and fails creates as Unavailable.
type instant struct{}

func (instant) Do(_ context.Context, op Op, _ *rand.Rand) string {
	if op == Create {
		return "Unavailable"
	}
	return ""
}

func (instant) Close() error { return nil }

// Merged runs add up to one run: durations, counts and errors summed, the
// throughput over the summed duration, and every latency quantile between
// the runs' own.
func TestMergeReportsAddsRunsUp(t *testing.T) {
	mix, _ := ParseMix("get=1,create=1")
	var parts []*Report
	for range 3 {
		r, err := RunClosed(t.Context(), "part", instant{}, 2, 30*time.Millisecond, mix, 0)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, r)
	}
	m := mergeReports("merged", parts)
	var completed, gets, creates, unavailable, late int64
	var duration, lowP99, highP99, highMax float64
	lowP99 = parts[0].Overall.P99
	for _, p := range parts {
		completed += p.Completed
		gets += p.Ops[Get].Count
		creates += p.Ops[Create].Count
		unavailable += p.Overall.Errors["Unavailable"]
		late += p.Overall.LateOK
		duration += p.Duration
		lowP99, highP99, highMax = min(lowP99, p.Overall.P99), max(highP99, p.Overall.P99), max(highMax, p.Overall.Max)
	}
	if m.Target != "merged" || m.Completed != completed || m.Overall.Count != completed || m.Ops[Get].Count != gets || m.Ops[Create].Count != creates {
		t.Fatalf("merged %q: completed %d (overall %d), gets %d, creates %d; want %d, %d, %d", m.Target, m.Completed, m.Overall.Count, m.Ops[Get].Count, m.Ops[Create].Count, completed, gets, creates)
	}
	if m.Ops[Create].Errors["Unavailable"] != unavailable || m.Overall.Errors["Unavailable"] != unavailable || len(m.Ops[Get].Errors) != 0 {
		t.Fatalf("errors: create %v, overall %v, get %v; want %d unavailable", m.Ops[Create].Errors, m.Overall.Errors, m.Ops[Get].Errors, unavailable)
	}
	// Durations go through time.Duration: equal to the nanosecond.
	if d := m.Duration - duration; d > 1e-9 || d < -1e-9 {
		t.Fatalf("duration %v, want %v", m.Duration, duration)
	}
	if m.Throughput != float64(completed)/m.Duration {
		t.Fatalf("throughput %v, want %v", m.Throughput, float64(completed)/m.Duration)
	}
	// The JSON's rate of successes is the one the ratios compare.
	if ok := float64(completed-unavailable-late) / m.Duration; m.OKThroughput != ok || m.OKRate() != ok || m.Overall.LateOK != late {
		t.Fatalf("successes %v/s (OKRate %v), want %v", m.OKThroughput, m.OKRate(), ok)
	}
	if m.Overall.P99 < lowP99 || m.Overall.P99 > highP99 || m.Overall.Max != highMax {
		t.Fatalf("p99 %v outside the parts' %v–%v, or max %v not theirs (%v)", m.Overall.P99, lowP99, highP99, m.Overall.Max, highMax)
	}
}

// Merged latencies are those of one recording of every sample: each
// part records a spread of its own (the parts differ by orders of
// magnitude, so a merge that kept one part's histogram, or averaged the
// parts' quantiles, would show), and every quantile, maximum, count and
// error of the merge equals what a single recorder of all the samples
// reports.
func TestMergeReportsEqualsOneRecording(t *testing.T) {
	all := newRecorder("all")
	var parts []*Report
	for i, base := range []time.Duration{time.Millisecond, 40 * time.Millisecond, 3 * time.Second} {
		part := newRecorder("part")
		for j := range 200 + 100*i {
			lat := base + time.Duration(j)*base/50
			op, class := Get, ""
			if j%3 == 0 {
				op = Create
			}
			if j%7 == 0 {
				class = "Unavailable"
			}
			part.record(op, lat, class)
			all.record(op, lat, class)
		}
		parts = append(parts, part.finish(time.Second))
	}
	want := all.finish(3 * time.Second)
	got := mergeReports("merged", parts)
	same := func(what string, g, w OpStats) {
		t.Helper()
		if g.Count != w.Count || g.P50 != w.P50 || g.P90 != w.P90 || g.P99 != w.P99 || g.P999 != w.P999 || g.Max != w.Max ||
			g.Errors["Unavailable"] != w.Errors["Unavailable"] || len(g.Errors) != len(w.Errors) {
			t.Fatalf("%s: merged %+v, one recording %+v", what, g, w)
		}
	}
	same("overall", got.Overall, want.Overall)
	for _, op := range []Op{Get, Create} {
		same(string(op), *got.Ops[op], *want.Ops[op])
	}
	if got.Completed != want.Completed || got.Duration != want.Duration || got.Throughput != want.Throughput {
		t.Fatalf("merged completed %d in %vs (%v/s), want %d in %vs (%v/s)", got.Completed, got.Duration, got.Throughput, want.Completed, want.Duration, want.Throughput)
	}
}

// The phases run in turn, round after round, and each phase's reports come
// back in round order; the first error stops the rounds.
func TestInterleaveAlternatesPhases(t *testing.T) {
	var order []string
	ph := func(name string, fail int) phase {
		n := 0
		return func(_ context.Context, d time.Duration) (*Report, error) {
			n++
			order = append(order, name)
			if n == fail {
				return nil, context.Canceled
			}
			return &Report{Target: name, Duration: d.Seconds(), Completed: int64(n)}, nil
		}
	}
	reps, err := interleave(t.Context(), 3, time.Second, ph("a", 0), ph("b", 0), ph("c", 0))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "abcabcabc" {
		t.Fatalf("ran %q, want abcabcabc", got)
	}
	for i, name := range []string{"a", "b", "c"} {
		if len(reps[i]) != 3 {
			t.Fatalf("%s: %d reports, want 3", name, len(reps[i]))
		}
		for round, r := range reps[i] {
			if r.Target != name || r.Completed != int64(round+1) || r.Duration != 1 {
				t.Fatalf("%s round %d: %+v", name, round, r)
			}
		}
	}
	order = nil
	if _, err := interleave(t.Context(), 3, time.Second, ph("a", 0), ph("b", 2)); err == nil {
		t.Fatal("an error did not stop the rounds")
	}
	if got := strings.Join(order, ""); got != "abab" {
		t.Fatalf("ran %q, want abab: stopped at b's second slice", got)
	}
}

// Against a running ordersd, the interleaved rounds give one ratio per
// round and the merged phases: the floors and CreateOrder each ran once
// per round, for the round's share of the phase, and settle ran after
// each CreateOrder slice. Each merged phase says what it cost in CPU, on
// both sides (here one process: the ordersd is in the test's).
func TestAgainstFloorsInRounds(t *testing.T) {
	a, g := inProcessOrdersd(t, map[string]string{"ROLES": "command"})
	cfg := FloorConfig{Clients: 2, Phase: 300 * time.Millisecond, Rounds: 3, Progress: io.Discard}
	settled := 0
	ph, err := againstFloors(t.Context(), cfg, &ordersd{grpc: a.GRPC, nats: a.NATS, pid: os.Getpid()}, g, "create", "cpu-create",
		func(context.Context) error { settled++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	create, ratios := ph.Create, ph.Ratios
	// Times per request add up: the command floor is derived from the
	// two floors measured in this phase.
	if want := 1 / (1/ph.GRPCFloor + 1/ph.JetStreamFloor); ph.GRPCFloor <= 0 || ph.JetStreamFloor <= 0 || math.Abs(ph.CommandFloor-want) > 1e-9*want {
		t.Fatalf("floors %v/s gRPC, %v/s JetStream, command floor %v/s, want %v/s", ph.GRPCFloor, ph.JetStreamFloor, ph.CommandFloor, want)
	}
	for name, c := range map[string]CPUPer{"gRPC floor": ph.GRPCFloorCPU, "JetStream floor": ph.JetStreamFloorCPU, "create": perRequest(create)} {
		if c.Server <= 0 || c.Client <= 0 {
			t.Fatalf("%s: CPU %+v per request", name, c)
		}
	}
	if len(ratios) != 3 || settled != 3 {
		t.Fatalf("%d ratios and %d settles, want one of each per round: %v", len(ratios), settled, ratios)
	}
	for _, r := range ratios {
		if r <= 0 {
			t.Fatalf("a round's ratio is %v: %v", r, ratios)
		}
	}
	if create.Completed == 0 || len(create.Overall.Errors) != 0 || create.Target != "create" {
		t.Fatalf("CreateOrder: %q, %d completed, errors %v", create.Target, create.Completed, create.Overall.Errors)
	}
	// Three slices of 100 ms, each run to its end.
	if create.Duration < 0.3 {
		t.Fatalf("CreateOrder ran %.3f s over three slices of 0.1 s", create.Duration)
	}
	if n := rawStreams(t, a.NATS); n != 0 {
		t.Fatalf("%d raw streams left behind", n)
	}
}

// A gRPC round trip and a JetStream publish done one after the other
// take the sum of their times: 1/200 s + 1/300 s is 1/120 s.
func TestCommandFloorAddsTimesPerRequest(t *testing.T) {
	for _, tc := range []struct{ grpc, js, want float64 }{
		{200, 300, 120},
		{100, 100, 50},
		{1000, 250, 200},
		{0, 300, 0},
		{200, 0, 0},
	} {
		if got := commandFloor(tc.grpc, tc.js); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("commandFloor(%v, %v) = %v, want %v", tc.grpc, tc.js, got, tc.want)
		}
	}
}

// fixedRates is a phase that reports, round after round, the next of
// rates: that many successful requests in one second.
func fixedRates(name string, rates ...int) phase {
	round := 0
	return func(context.Context, time.Duration) (*Report, error) {
		rec := newRecorder(name)
		for range rates[round] {
			rec.record(Create, time.Millisecond, "")
		}
		round++
		return rec.finish(time.Second), nil
	}
}

// CreateOrder against known floors: each round's ratio is CreateOrder
// over that round's command floor, and the phase's command floor that of
// the merged floors.
func TestCreateAgainstFloorsWithKnownRates(t *testing.T) {
	cfg := FloorConfig{Clients: 1, Phase: 2 * time.Second, Rounds: 2, Progress: io.Discard}
	// Round 1: floors 200/s and 300/s, command floor 120/s, CreateOrder
	// 60/s: 0.5. Round 2: 100/s and 100/s, 50/s, CreateOrder 40/s: 0.8.
	ph, err := createAgainstFloors(t.Context(), cfg, &ordersd{}, "cpu-create",
		fixedRates("grpc-floor", 200, 100), fixedRates("jetstream-floor", 300, 100), fixedRates("create", 60, 40))
	if err != nil {
		t.Fatal(err)
	}
	if len(ph.Ratios) != 2 || math.Abs(ph.Ratios[0]-0.5) > 1e-9 || math.Abs(ph.Ratios[1]-0.8) > 1e-9 {
		t.Fatalf("ratios %v, want [0.5 0.8]", ph.Ratios)
	}
	// Merged over two seconds: 300 gRPC checks (150/s), 400 publishes
	// (200/s): 1/150 + 1/200 = 7/600, a command floor of 600/7 per second.
	if ph.GRPCFloor != 150 || ph.JetStreamFloor != 200 || math.Abs(ph.CommandFloor-600.0/7) > 1e-9 {
		t.Fatalf("floors %v/s gRPC, %v/s JetStream, command floor %v/s; want 150, 200, %v", ph.GRPCFloor, ph.JetStreamFloor, ph.CommandFloor, 600.0/7)
	}
	if ph.Create.Completed != 100 || ph.Create.OKRate() != 50 {
		t.Fatalf("CreateOrder: %d in %v s, want 100 in 2 s", ph.Create.Completed, ph.Create.Duration)
	}
}

// A JetStream floor slice publishes to a raw stream of its own and deletes
// it when it ends, before the next slice of any phase runs.
func TestJetStreamFloorSliceLeavesNoStream(t *testing.T) {
	a, _ := inProcessOrdersd(t, map[string]string{"ROLES": "command"})
	cfg := FloorConfig{Clients: 2, Progress: io.Discard}
	r, err := jetStreamFloorPhase(cfg, &ordersd{nats: a.NATS})(t.Context(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed == 0 || len(r.Overall.Errors) != 0 {
		t.Fatalf("JetStream floor: %d published, errors %v", r.Completed, r.Overall.Errors)
	}
	if n := rawStreams(t, a.NATS); n != 0 {
		t.Fatalf("%d raw streams left after the slice", n)
	}
}

// rawStreams counts the raw floor's streams on the NATS server at addr.
func rawStreams(t *testing.T, addr string) int {
	t.Helper()
	_, js := estest.ConnectURL(t, "nats://"+addr)
	_, err := js.Stream(t.Context(), rawbench.RawStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return 0
	case err != nil:
		t.Fatal(err)
	}
	return 1
}

// GetOrder against its own gRPC floor, in rounds: one ratio per round,
// the merged GetOrder over every slice, every read answered.
func TestGetAgainstFloorInRounds(t *testing.T) {
	a, g := inProcessOrdersd(t, nil)
	// Orders for the reads, as the floor's CreateOrder phase leaves them.
	if _, err := RunClosed(t.Context(), "create", g, 2, 100*time.Millisecond, Mix{Create: 1}, 0); err != nil {
		t.Fatal(err)
	}
	cfg := FloorConfig{Clients: 2, Phase: 300 * time.Millisecond, Rounds: 3, Progress: io.Discard}
	ph, err := getAgainstFloor(t.Context(), cfg, &ordersd{grpc: a.GRPC, nats: a.NATS}, g, "cpu-get")
	if err != nil {
		t.Fatal(err)
	}
	get := ph.Get
	if ph.GRPCFloor <= 0 || len(ph.Ratios) != 3 {
		t.Fatalf("floor %v/s, ratios %v: want a floor and one ratio per round", ph.GRPCFloor, ph.Ratios)
	}
	if c := ph.GRPCFloorCPU; c.Client <= 0 {
		t.Fatalf("the gRPC floor's CPU per request: %+v", c)
	}
	// Without a process of its own, ordersd's CPU is not told apart.
	if c := perRequest(get); c.Server != 0 || c.Client <= 0 || c.String() == "" || c.String()[0] != '?' {
		t.Fatalf("GetOrder's CPU with an in-process ordersd: %+v (%q)", c, c)
	}
	if get.Target != "get" || get.Completed == 0 || len(get.Overall.Errors) != 0 || get.Duration < 0.3 {
		t.Fatalf("GetOrder: %q, %d completed in %.3f s, errors %v", get.Target, get.Completed, get.Duration, get.Overall.Errors)
	}
}

// A latency floor is Health/Check offered open loop at the phase's rate:
// every check answered, its latencies recorded, timed from the schedule
// or from each check's send.
func TestLatencyFloorOffersHealthChecksAtTheRate(t *testing.T) {
	_, g := inProcessOrdersd(t, map[string]string{"ROLES": "command"})
	cfg := FloorConfig{Clients: 2, Phase: 500 * time.Millisecond, Progress: io.Discard}
	for _, fromSend := range []bool{false, true} {
		f, err := latencyFloor(t.Context(), cfg, g, 200, fromSend)
		if err != nil {
			t.Fatal(err)
		}
		// 200/s for half a second offers 100 checks; none is dropped,
		// since an open-loop run queues what exceeds its concurrency.
		if f.Count < 90 || f.Count > 110 || len(f.Errors) != 0 {
			t.Fatalf("latency floor (from the send: %v): %d checks, errors %v; want about 100 at 200/s for 0.5 s", fromSend, f.Count, f.Errors)
		}
		if f.P99 <= 0 || f.P50 > f.P99 || f.P99 > f.Max {
			t.Fatalf("latency floor (from the send: %v) quantiles p50 %v, p99 %v, max %v ms", fromSend, f.P50, f.P99, f.Max)
		}
	}
}
