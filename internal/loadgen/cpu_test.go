package loadgen

import (
	"math"
	"os"
	"runtime"
	"testing"
	"time"
)

// The CPU times are fields 14 and 15 of /proc/PID/stat, counted after the
// command name, which may hold spaces and parentheses.
func TestParseStatCPU(t *testing.T) {
	line := []byte("4870 (ord ers) (d)) S 1 4870 4870 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 12345 0 0\n")
	if d, ok := parseStatCPU(line); !ok || d != 3250*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25s (325 ticks of 10 ms)", d, ok)
	}
	for _, bad := range []string{"", "4870 (ordersd S 1", "4870 (ordersd) S 1 2 3", "4870 (ordersd) S 1 4870 4870 0 -1 4194560 1234 0 0 0 x 75 0"} {
		if d, ok := parseStatCPU([]byte(bad)); ok {
			t.Fatalf("parseStatCPU(%q) = %v, true", bad, d)
		}
	}
}

// The clock reads a real process's CPU time from /proc, and its reading
// of this process agrees with getrusage's over the same work: the same
// threads, the same time, in USER_HZ ticks of 10 ms (a wrong unit would be
// off by a factor of ten).
func TestProcCPUOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/PID/stat is Linux's")
	}
	clock := cpuClock{pid: os.Getpid()}
	r0 := clock.read()
	if !r0.serverOK {
		t.Fatal("no CPU time read from /proc for this process")
	}
	// Work until getrusage counts 300 ms: thirty of /proc's ticks.
	var c CPU
	for x := uint64(1); c.Client < 0.3; x++ {
		for i := range 1 << 20 {
			x ^= x<<13 ^ uint64(i)
		}
		if x == 0 {
			t.Log("unreachable; keeps the loop's work")
		}
		c = clock.since(r0)
	}
	// Two ticks either way for the reads' rounding, and a tenth for work
	// other goroutines did between the two clocks' reads. A reading taken
	// while this goroutine was descheduled between the two reads can be
	// further apart (the race detector's scheduling makes that likelier),
	// so a few more readings are taken: a clock read wrongly disagrees in
	// every one.
	for range 5 {
		if diff := math.Abs(c.Server - c.Client); diff <= 0.02+c.Client/10 {
			return
		}
		t.Logf("/proc says %.3f s of CPU, getrusage %.3f s", c.Server, c.Client)
		c = clock.since(r0)
	}
	t.Fatal("the two clocks disagreed in every reading")
}

// Merged parts add their CPU up; one part without it leaves the merge
// without it. Per request is over the requests that succeeded, those
// answered after a closed loop's end included.
func TestMergeReportsAddsCPU(t *testing.T) {
	mix, _ := ParseMix("get=1,create=1")
	part := func(cpu *CPU) *Report {
		r, err := RunClosed(t.Context(), "part", instant{}, 2, 20*time.Millisecond, mix, 0)
		if err != nil {
			t.Fatal(err)
		}
		r.CPU = cpu
		return r
	}
	a, b := part(&CPU{Server: 1, Client: 0.5}), part(&CPU{Server: 2, Client: 0.25})
	m := mergeReports("m", []*Report{a, b})
	if m.CPU == nil || *m.CPU != (CPU{Server: 3, Client: 0.75}) {
		t.Fatalf("merged CPU %+v, want 3 s + 0.75 s", m.CPU)
	}
	if ok := okCount(m); ok <= 0 || ok == m.Completed {
		t.Fatalf("%d of %d succeeded: the instant target fails its creates", ok, m.Completed)
	}
	per := perRequest(m)
	if want := 3 / float64(okCount(m)+m.Overall.LateOK) * 1e6; per.Server != want {
		t.Fatalf("per request %+v, want %v µs of ordersd's", per, want)
	}
	if m := mergeReports("m", []*Report{a, part(nil)}); m.CPU != nil {
		t.Fatalf("merged CPU %+v with a part that had none", m.CPU)
	}
	if s := (CPUPer{Server: 140.4, Client: 69.6}).String(); s != "140 + 70 µs" {
		t.Fatalf("String() = %q", s)
	}
}
