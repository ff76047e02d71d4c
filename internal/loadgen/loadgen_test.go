package loadgen_test

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/loadgen"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestParseMix(t *testing.T) {
	m, err := loadgen.ParseMix("create=3,get=1")
	if err != nil || m[loadgen.Create] != 3 || m[loadgen.Get] != 1 {
		t.Fatalf("%v %v", m, err)
	}
	// String writes what ParseMix reads, in a fixed order.
	if s := (loadgen.Mix{loadgen.List: 5, loadgen.Create: 40, loadgen.Get: 0, loadgen.Place: 10}).String(); s != "create=40,place=10,list=5" {
		t.Fatalf("String() = %q", s)
	}
	if back, err := loadgen.ParseMix(m.String()); err != nil || len(back) != len(m) || back[loadgen.Create] != 3 || back[loadgen.Get] != 1 {
		t.Fatalf("ParseMix(%q) = %v, %v", m.String(), back, err)
	}
	for _, bad := range []string{"", "create", "fly=1", "create=-1", "create=0"} {
		if _, err := loadgen.ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
}

// A short load against a real ordersd over gRPC, REST and raw JetStream:
// every scheduled request completes without error.
func TestRunAgainstOrdersd(t *testing.T) {
	a, _ := apptest.Start(t, nil)
	mix, _ := loadgen.ParseMix("create=40,add=30,place=10,get=15,list=5")
	lc := loadgen.Config{Rate: 200, Concurrency: 32, Duration: 500 * time.Millisecond, Mix: mix}
	g, err := loadgen.NewGRPC(a.GRPC, loadgen.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := loadgen.NewRaw(t.Context(), "nats://"+a.NATS)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]loadgen.Target{"grpc": g, "rest": loadgen.NewREST("http://"+a.HTTP, loadgen.Auth{}), "raw": raw} {
		rep, err := loadgen.Run(t.Context(), name, target, lc)
		if err != nil {
			t.Fatal(err)
		}
		_ = target.Close()
		if rep.Completed+rep.Dropped < 90 || rep.Completed == 0 {
			t.Fatalf("%s: completed %d, dropped %d of ~100 scheduled", name, rep.Completed, rep.Dropped)
		}
		// Reads may miss an order the read model has not applied yet
		// (NotFound), and an add may race the place of the same draft
		// (FailedPrecondition, HTTP 400); nothing else may fail.
		for class, n := range rep.Overall.Errors {
			if class != "NotFound" && class != "HTTP 404" && class != "FailedPrecondition" && class != "HTTP 400" {
				t.Fatalf("%s: %d errors of class %s\n%s", name, n, class, rep)
			}
		}
		if rep.Overall.P50 <= 0 || rep.Overall.P99 < rep.Overall.P50 {
			t.Fatalf("%s: percentiles %+v", name, rep.Overall)
		}
	}
}

// gate is a target whose first request holds its slot until the gate
// opens, hold after that request arrived (when hold is set) or when open
// is closed; later requests return at once.
type gate struct {
	open  chan struct{}
	hold  time.Duration
	first atomic.Bool
}

func (g *gate) Do(ctx context.Context, _ loadgen.Op, _ *rand.Rand) string {
	if g.first.CompareAndSwap(false, true) {
		if g.hold > 0 {
			// Timed from the schedule's first request, not from before
			// the run: a test slow to reach Run opened it mid-schedule.
			time.AfterFunc(g.hold, func() { close(g.open) })
		}
		select {
		case <-g.open:
		case <-ctx.Done():
			return "timeout"
		}
	}
	return ""
}

func (g *gate) Close() error { return nil }

// With every slot taken, scheduled requests queue and their wait counts in
// their latency (no coordinated omission); with Drop they are skipped and
// counted instead.
func TestSaturation(t *testing.T) {
	mix, _ := loadgen.ParseMix("get=1")
	const window = 200 * time.Millisecond
	for _, drop := range []bool{false, true} {
		// The gate opens well after the whole schedule has passed, so the
		// first request alone holds the only slot throughout.
		g := &gate{open: make(chan struct{}), hold: 2 * window}
		rep, err := loadgen.Run(t.Context(), "gate", g, loadgen.Config{Rate: 100, Concurrency: 1, Duration: window, Mix: mix, Drop: drop})
		if err != nil {
			t.Fatal(err)
		}
		scheduled := rep.Completed + rep.Dropped
		if scheduled != 20 {
			t.Fatalf("drop=%v: %d scheduled, want 20", drop, scheduled)
		}
		if drop {
			// 1 and 19 unless the schedule itself ran late past the
			// gate's opening: what holds whatever the machine's pace is
			// that requests scheduled while the slot was held were
			// dropped, not queued.
			if rep.Completed < 1 || rep.Dropped < 1 {
				t.Fatalf("drop: completed %d, dropped %d", rep.Completed, rep.Dropped)
			}
			continue
		}
		if rep.Dropped != 0 {
			t.Fatalf("queue: dropped %d", rep.Dropped)
		}
		// Requests were scheduled up to 190 ms and none could start before
		// the gate opened at 400 ms: every request behind the first waited,
		// so the median latency reflects the queue, not the target's
		// instant answers.
		if rep.Overall.P50 < 1 {
			t.Fatalf("queue: p50 %.3f ms hides the wait for a slot", rep.Overall.P50)
		}
	}
}

// The gRPC and REST targets present a bearer token to an ordersd with
// authentication on; without it every request is refused.
func TestTargetsSendToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("bench-token-0123456789 bench clerk,viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := apptest.Start(t, map[string]string{"AUTH_TOKENS_FILE": tokens})
	mix, _ := loadgen.ParseMix("create=1")
	lc := loadgen.Config{Rate: 100, Concurrency: 4, Duration: 100 * time.Millisecond, Mix: mix}
	for _, token := range []string{"bench-token-0123456789", ""} {
		auth := loadgen.Auth{Token: token}
		g, err := loadgen.NewGRPC(a.GRPC, auth)
		if err != nil {
			t.Fatal(err)
		}
		for name, target := range map[string]loadgen.Target{"grpc": g, "rest": loadgen.NewREST("http://"+a.HTTP, auth)} {
			rep, err := loadgen.Run(t.Context(), name, target, lc)
			_ = target.Close()
			if err != nil {
				t.Fatal(err)
			}
			failed := int64(0)
			for _, n := range rep.Overall.Errors {
				failed += n
			}
			if token != "" && (failed != 0 || rep.Completed == 0) {
				t.Fatalf("%s with token: %d of %d failed: %v", name, failed, rep.Completed, rep.Overall.Errors)
			}
			if token == "" && (failed != rep.Completed || (rep.Overall.Errors["Unauthenticated"] == 0 && rep.Overall.Errors["HTTP 401"] == 0)) {
				t.Fatalf("%s without token: errors %v of %d", name, rep.Overall.Errors, rep.Completed)
			}
		}
	}
}

// inFlight is a target that records the most requests it ever had at once
// and fails every op but get.
type inFlight struct {
	now, most atomic.Int64
}

func (f *inFlight) Do(_ context.Context, op loadgen.Op, _ *rand.Rand) string {
	n := f.now.Add(1)
	defer f.now.Add(-1)
	for m := f.most.Load(); n > m && !f.most.CompareAndSwap(m, n); m = f.most.Load() {
	}
	time.Sleep(time.Millisecond) // a request that takes time, so clients overlap
	if op != loadgen.Get {
		return "Unavailable"
	}
	return ""
}

func (f *inFlight) Close() error { return nil }

// A closed loop keeps exactly its clients busy (never more), records every
// request it sent under its op, and classifies failures.
func TestRunClosed(t *testing.T) {
	f := &inFlight{}
	mix, _ := loadgen.ParseMix("get=1,create=1")
	rep, err := loadgen.RunClosed(t.Context(), "closed", f, 4, 100*time.Millisecond, mix, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.most.Load() > 4 || f.most.Load() < 2 {
		t.Fatalf("%d requests in flight at most, want up to 4 and overlapping", f.most.Load())
	}
	gets, creates := rep.Ops[loadgen.Get], rep.Ops[loadgen.Create]
	if gets == nil || creates == nil || gets.Count+creates.Count != rep.Completed || rep.Completed == 0 {
		t.Fatalf("ops %+v, completed %d", rep.Ops, rep.Completed)
	}
	if creates.Errors["Unavailable"] != creates.Count || len(gets.Errors) != 0 || rep.Rate != 0 {
		t.Fatalf("errors: get %v, create %v (of %d); rate %v", gets.Errors, creates.Errors, creates.Count, rep.Rate)
	}
	if _, err := loadgen.RunClosed(t.Context(), "none", f, 0, time.Second, mix, 0); err == nil {
		t.Fatal("0 clients accepted")
	}
}

// The health target is the gRPC floor: Health/Check through the server's
// interceptor chain on the target's own connection, answered OK.
func TestHealthTarget(t *testing.T) {
	a, _ := apptest.Start(t, map[string]string{"ROLES": "command"})
	rep := runHealth(t, a.GRPC)
	if rep.Completed == 0 || len(rep.Overall.Errors) != 0 {
		t.Fatalf("health: %d completed, errors %v", rep.Completed, rep.Overall.Errors)
	}
}

// runHealth runs the health target against addr for a moment, two
// clients closed loop, and returns the report.
func runHealth(t *testing.T, addr string) *loadgen.Report {
	t.Helper()
	g, err := loadgen.NewGRPC(addr, loadgen.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	rep, err := loadgen.RunClosed(t.Context(), "health", g.Health(), 2, 100*time.Millisecond, loadgen.Mix{loadgen.Get: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A Health/Check answered NOT_SERVING (a server not ready) is a failure of
// the health target, not a success: it was counted as one, and a floor
// measured on a server that was not ready passed the phase's check.
func TestHealthTargetCountsNotServingAsAFailure(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	rep := runHealth(t, lis.Addr().String())
	if rep.Overall.Errors["NOT_SERVING"] == 0 {
		t.Fatalf("health against a server not serving: %d completed, errors %v; want NOT_SERVING counted", rep.Completed, rep.Overall.Errors)
	}
}

// Every read of the visibility target waits for its create's position, so
// it finds the order the create made however far behind the projection
// is, and each create that succeeded is timed by exactly one read.
func TestVisibilityTarget(t *testing.T) {
	a, _ := apptest.Start(t, nil)
	g, err := loadgen.NewGRPC(a.GRPC, loadgen.Auth{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	v := g.Visibility()
	const d = 300 * time.Millisecond
	run, err := loadgen.Run(t.Context(), "visibility", v, loadgen.Config{Rate: 200, Concurrency: 32, Duration: d, Mix: loadgen.Mix{loadgen.Create: 1}})
	if err != nil {
		t.Fatal(err)
	}
	vis := v.Report(d)
	if run.Completed == 0 || len(run.Overall.Errors) != 0 {
		t.Fatalf("creates then reads: %d completed, errors %v", run.Completed, run.Overall.Errors)
	}
	if vis.Completed != run.Completed || len(vis.Overall.Errors) != 0 {
		t.Fatalf("%d reads timed with errors %v for %d creates", vis.Completed, vis.Overall.Errors, run.Completed)
	}
	if vis.Overall.P50 <= 0 || vis.Overall.P99 < vis.Overall.P50 {
		t.Fatalf("percentiles %+v", vis.Overall)
	}
}
