package loadgen

import (
	"testing"
	"time"
)

// Samples above a minute stay in the quantiles: 97 requests of 1 ms and
// 3 of 90 s put the 99th percentile at 90 s (the 99th sample is one of the
// three), and every sample counted is one the quantiles are of.
func TestQuantilesKeepSlowSamples(t *testing.T) {
	rec := newRecorder("slow")
	for range 97 {
		rec.record(Get, time.Millisecond, "")
	}
	for range 3 {
		rec.record(Get, 90*time.Second, "")
	}
	rep := rec.finish(time.Second)
	for name, s := range map[string]OpStats{"get": *rep.Ops[Get], "overall": rep.Overall} {
		// Three significant digits: 90 s is held to within 0.1%.
		if s.P99 < 90000 || s.P99 > 90090 || s.Max < 90000 || s.Max > 90090 {
			t.Fatalf("%s: p99 %v ms, max %v ms; want 90000 ms (97 samples at 1 ms, 3 at 90 s)", name, s.P99, s.Max)
		}
		if s.P90 != 1 || s.Count != 100 || s.OverRange != 0 {
			t.Fatalf("%s: p90 %v ms, count %d, over range %d; want 1 ms, 100, 0", name, s.P90, s.Count, s.OverRange)
		}
	}
	if rep.Completed != 100 {
		t.Fatalf("completed %d, want 100", rep.Completed)
	}
}

// A latency above the histograms' top (an hour) is held at the top and
// counted as such, so the quantiles cannot lose it while its request
// counts; a merge keeps it.
func TestLatencyAboveTheTopIsHeldAndCounted(t *testing.T) {
	rec := newRecorder("stuck")
	for range 98 {
		rec.record(Create, 2*time.Millisecond, "")
	}
	rec.record(Create, 2*time.Hour, "DeadlineExceeded")
	rec.record(Create, 3*time.Hour, "")
	part := rec.finish(time.Second)
	m := mergeReports("merged", []*Report{part, newRecorder("empty").finish(time.Second)})
	for name, r := range map[string]*Report{"run": part, "merged": m} {
		for what, s := range map[string]OpStats{"create": *r.Ops[Create], "overall": r.Overall} {
			// An hour is 3,600,000 ms, held to within 0.1%.
			if s.OverRange != 2 || s.Count != 100 || s.P99 < 3600000 || s.P99 > 3603600 || s.Max < 3600000 || s.Max > 3603600 || s.P90 != 2 {
				t.Fatalf("%s %s: over range %d, count %d, p90 %v ms, p99 %v ms, max %v ms; want 2, 100, 2 ms, 3600000 ms, 3600000 ms",
					name, what, s.OverRange, s.Count, s.P90, s.P99, s.Max)
			}
		}
		if r.Completed != 100 || r.Overall.Errors["DeadlineExceeded"] != 1 {
			t.Fatalf("%s: completed %d, errors %v; want 100, one DeadlineExceeded", name, r.Completed, r.Overall.Errors)
		}
	}
}
