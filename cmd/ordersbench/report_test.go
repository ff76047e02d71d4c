package main

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/loadgen"
)

// --compare-raw's "system ÷ raw: throughput" compares the requests that
// succeeded, as every rate of the floor does: a system whose requests half
// fail did half the work of a raw floor that answered them all, though
// both were answered as often. It compared every answer.
func TestCompareRawThroughputCountsSuccessesOnly(t *testing.T) {
	sys := &loadgen.Report{Target: "grpc", Rate: 100, Duration: 1, Completed: 100, Throughput: 100,
		Overall: loadgen.OpStats{Count: 100, Errors: map[string]int64{"Unavailable": 50}, P50: 1, P99: 2}}
	raw := &loadgen.Report{Target: "raw", Rate: 100, Duration: 1, Completed: 100, Throughput: 100,
		Overall: loadgen.OpStats{Count: 100, P50: 1, P99: 2}}
	doc, _, err := compared(t, sys, raw)
	if err != nil {
		t.Fatal(err)
	}
	if doc.SystemOverRaw == nil || math.Abs(doc.SystemOverRaw.Throughput-0.5) > 1e-9 {
		t.Fatalf("system ÷ raw throughput %+v: 50 of the system's 100 requests failed, raw's 100 succeeded; want 0.5", doc.SystemOverRaw)
	}
}

// --visibility's append → visible report takes its rate over the time the
// run took, as the run's own report does: the same reads over the same
// run. A run the server cannot keep up with (concurrency 1, more offered
// than one client can do) takes much longer than --duration, over which
// the rate was taken.
func TestVisibleRateOverTheRunsTime(t *testing.T) {
	a, _ := apptest.Start(t, nil)
	g, err := loadgen.NewGRPC(a.GRPC, loadgen.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	cfg := loadgen.Config{Rate: 10000, Concurrency: 1, Duration: 100 * time.Millisecond, Mix: loadgen.Mix{loadgen.Create: 1}}
	var ran *loadgen.Report
	run := func(name string, tg loadgen.Target) *loadgen.Report {
		// The first request waits for twice --duration, so that the run
		// takes clearly longer than its --duration on any machine: the
		// two rates then differ.
		open := make(chan struct{})
		time.AfterFunc(2*cfg.Duration, func() { close(open) })
		rep, err := loadgen.Run(t.Context(), name, gated{Target: tg, open: open}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ran = rep
		return rep
	}
	vis := visible(g.Visibility(), cfg, run)
	if ran.Completed == 0 || vis.Completed != ran.Completed {
		t.Fatalf("%d creates, %d reads timed", ran.Completed, vis.Completed)
	}
	if math.Abs(vis.Duration-ran.Duration) > 0.01*ran.Duration {
		t.Fatalf("append → visible: %d reads over %.3f s (%.0f/s); the run that made them took %.3f s (%.0f/s)",
			vis.Completed, vis.Duration, vis.Throughput, ran.Duration, ran.Throughput)
	}
}

// gated holds its target's requests until open is closed.
type gated struct {
	loadgen.Target
	open <-chan struct{}
}

func (g gated) Do(ctx context.Context, op loadgen.Op, r *rand.Rand) string {
	<-g.open
	return g.Target.Do(ctx, op, r)
}

// --json after a raw run in which nothing succeeded writes every run, and
// no ratio: the throughput ratio was +Inf, which JSON cannot hold, and the
// file was written empty with exit 0.
func TestJSONReportWrittenWhenRawHadNoSuccess(t *testing.T) {
	sys := &loadgen.Report{Target: "grpc", Duration: 1, Completed: 100, Overall: loadgen.OpStats{Count: 100, P50: 1, P99: 2}}
	raw := &loadgen.Report{Target: "raw", Duration: 1, Completed: 100,
		Overall: loadgen.OpStats{Count: 100, Errors: map[string]int64{"publish": 100}, P50: 1, P99: 2}}
	doc, b, err := compared(t, sys, raw)
	if err != nil || len(doc.Runs) != 2 || doc.SystemOverRaw != nil {
		t.Fatalf("--json after a raw run without a success: %v; file holds %q; want both runs and no ratio", err, b)
	}
}

// compared is --compare-raw --json's report of sys against raw: the
// document, the file's bytes, and the error decoding them.
func compared(t *testing.T, sys, raw *loadgen.Report) (output, []byte, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report.json")
	report([]*loadgen.Report{sys, raw}, true, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc output
	err = json.Unmarshal(b, &doc)
	return doc, b, err
}
