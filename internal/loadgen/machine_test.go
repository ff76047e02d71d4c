package loadgen

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestProcFilesAreRead(t *testing.T) {
	cpuinfo := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n"
	if got := cpuModel([]byte(cpuinfo)); got != "AMD EPYC 7B13" {
		t.Fatalf("cpu model %q", got)
	}
	if got := cpuModel([]byte("processor\t: 0\n")); got != "" {
		t.Fatalf("no model name, got %q", got)
	}
	meminfo := "MemTotal:       24683700 kB\nMemFree:        21000000 kB\n"
	if got := procKB([]byte(meminfo), "MemTotal"); got != 24683700<<10 {
		t.Fatalf("memory %d", got)
	}
	if got := procKB([]byte("MemFree: 1 kB\nMemTotal: lots kB\n"), "MemTotal"); got != 0 {
		t.Fatalf("unreadable MemTotal gave %d", got)
	}
	status := "Name:\tordersd\nVmHWM:\t  380400 kB\nVmRSS:\t  371000 kB\nThreads:\t12\n"
	if rss, peak := procKB([]byte(status), "VmRSS"), procKB([]byte(status), "VmHWM"); rss != 371000<<10 || peak != 380400<<10 {
		t.Fatalf("status: RSS %d, peak %d", rss, peak)
	}
}

// The build information is read from the executable itself (this test's
// binary was built by this Go); the commit and the nats-server module come
// from what the build recorded.
func TestBuildIsReadFromTheExecutable(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := readBuild(self); err != nil || b.Go != runtime.Version() {
		t.Fatalf("build %+v, %v; want %s", b, err, runtime.Version())
	}
	notGo := filepath.Join(t.TempDir(), "ordersd")
	if err := os.WriteFile(notGo, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := readBuild(notGo); err == nil {
		t.Fatal("a shell script read as a Go build")
	}
	info := &debug.BuildInfo{GoVersion: "go1.26.8",
		Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "53be4a5c0ffee"}, {Key: "vcs.modified", Value: "true"}},
		Deps:     []*debug.Module{{Path: "github.com/nats-io/nats.go", Version: "v1.56.0"}, {Path: natsServerModule, Version: "v2.15.3"}},
	}
	if b := buildOf(info); b != (Build{Go: "go1.26.8", Revision: "53be4a5c0ffee", Modified: true, NATSServer: "v2.15.3"}) {
		t.Fatalf("build %+v", b)
	}
	info.Deps[1].Replace = &debug.Module{Path: "../nats-server", Version: "v2.15.4-local"}
	if b := buildOf(info); b.NATSServer != "v2.15.4-local" {
		t.Fatalf("replaced nats-server read as %q", b.NATSServer)
	}
}

func TestMachineSaysWhenWhereAndWhat(t *testing.T) {
	m := Machine{
		Started: time.Date(2026, 12, 5, 15, 20, 0, 0, time.UTC), Finished: time.Date(2026, 12, 5, 15, 22, 30, 0, time.UTC),
		OS: "linux", Arch: "amd64", CPUs: 2, CPUModel: "AMD EPYC 7B13", MemoryBytes: 24 << 30, LoadGenGo: "go1.26.8",
		Ordersd: Build{Go: "go1.26.8", Revision: "53be4a5c0ffee", Modified: true, NATSServer: "v2.15.3"},
	}
	want := "2026-12-05, 15:20–15:22 UTC; 2 CPUs (AMD EPYC 7B13), 24.0 GiB, linux/amd64; " +
		"ordersd 53be4a5 with local changes, built with go1.26.8, nats-server v2.15.3 embedded; ordersbench built with go1.26.8"
	if got := m.String(); got != want {
		t.Fatalf("machine:\n%s\nwant\n%s", got, want)
	}
	m.Ordersd, m.CPUModel, m.MemoryBytes = Build{}, "", 0
	if got := m.String(); !strings.Contains(got, "2 CPUs, linux/amd64; ordersd (commit not recorded);") {
		t.Fatalf("machine without details: %s", got)
	}
}

// The newest run's section is replaced between its markers, which stay,
// and nothing else in the document changes; a document without exactly
// one pair of markers in order is refused.
func TestReplaceNewestRewritesOnlyItsSection(t *testing.T) {
	doc := "# Benchmarks\n\nbefore\n\n" + newestBegin + "\n\nold run\n\n" + newestEnd + "\n\nafter\n"
	out, err := ReplaceNewest([]byte(doc), "new run\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nbefore\n\n" + newestBegin + "\n\nnew run\n\n" + newestEnd + "\n\nafter\n"
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	for _, bad := range []string{
		"no markers",
		newestEnd + "\n" + newestBegin,
		newestBegin + "\n" + newestEnd + "\n" + newestBegin + "\n" + newestEnd,
		newestBegin,
	} {
		if _, err := ReplaceNewest([]byte(bad), "x"); !errors.Is(err, ErrNoNewestSection) {
			t.Fatalf("%q: err %v, want ErrNoNewestSection", bad, err)
		}
	}
}

// The recorded command line holds every flag that changes what is
// measured: --fill-timeout, which can stop the fill short of --events,
// always, and --profile-dir, which adds phases and profiles ordersd during
// the rebuild, when set; and the Go runtime's settings ordersd is started
// with, as the command's environment.
func TestFloorCommandRepeatsTheRun(t *testing.T) {
	for _, k := range runtimeSettings {
		t.Setenv(k, "")
	}
	cfg := FloorConfig{Clients: 8, Phase: 2 * time.Second, Rounds: 1, Events: 2000, FillMix: Mix{Create: 2, Add: 2, Place: 1},
		FillTimeout: 90 * time.Second, LagRate: 500}
	if got, want := cfg.command(), "ordersbench floor --clients 8 --phase 2s --rounds 1 --events 2000 --fill-mix create=2,add=2,place=1 --fill-timeout 1m30s --lag-rate 500"; got != want {
		t.Fatalf("command\n%s\nwant\n%s", got, want)
	}
	cfg.ProfileDir, cfg.Env = "prof files", []string{"GOGC=50"}
	if got, want := cfg.command(), "ordersbench floor --clients 8 --phase 2s --rounds 1 --events 2000 --fill-mix create=2,add=2,place=1 --fill-timeout 1m30s --lag-rate 500 --profile-dir 'prof files' --env GOGC=50"; got != want {
		t.Fatalf("command\n%s\nwant\n%s", got, want)
	}
	t.Setenv("GOMAXPROCS", "1")
	t.Setenv("GOGC", "200")
	if got, want := cfg.command(), "GOGC=200 GOMAXPROCS=1 ordersbench floor --clients 8 --phase 2s --rounds 1 --events 2000 --fill-mix create=2,add=2,place=1 --fill-timeout 1m30s --lag-rate 500 --profile-dir 'prof files' --env GOGC=50"; got != want {
		t.Fatalf("command\n%s\nwant\n%s", got, want)
	}
}

// A report's Markdown is a section of BENCHMARKS.md: a heading with the
// date and the build, the machine, the command that repeats the run, and
// the table.
func TestFloorMarkdownHasTheRunsContext(t *testing.T) {
	op := func() *Report { return &Report{Completed: 100, Duration: 1} }
	r := &FloorReport{
		Machine: Machine{Started: time.Date(2026, 12, 5, 15, 20, 0, 0, time.UTC), Finished: time.Date(2026, 12, 5, 15, 22, 0, 0, time.UTC),
			OS: "linux", Arch: "amd64", CPUs: 2, LoadGenGo: "go1.26.8", Ordersd: Build{Go: "go1.26.8", Revision: "53be4a5c0ffee"}},
		Command: FloorConfig{Clients: 32, Phase: 5 * time.Second, Rounds: 5, Events: 100000, FillMix: Mix{Create: 1}, FillTimeout: 5 * time.Minute,
			LagRate: 1000, Env: []string{"GOGC=50", "OTEL_RESOURCE_ATTRIBUTES=team=a b,it's"}}.command(),
		Clients: 32, Rounds: 5,
		Create: CreatePhase{Create: op(), GRPCFloor: 200, JetStreamFloor: 200, CommandFloor: 100,
			GRPCFloorCPU: CPUPer{Server: 30, Client: 31}, JetStreamFloorCPU: CPUPer{Server: 27, Client: 35}},
		CmdCreate: CreatePhase{Create: op(), GRPCFloor: 300, JetStreamFloor: 600, CommandFloor: 200,
			GRPCFloorCPU: CPUPer{Server: 30, Client: 31}, JetStreamFloorCPU: CPUPer{Server: 27, Client: 35}, Ratios: []float64{0.45, 0.55}},
		Get: GetPhase{Get: op()}, MixedHalf: op(),
	}
	r.Create.Create.CPU = &CPU{Server: 0.03, Client: 0.007}
	r.CmdCreate.Create.CPU, r.CmdCreate.Create.Overall.P99 = &CPU{Server: 0.01, Client: 0.005}, 12.9
	r.QueryCreate = &CreatePhase{Create: op(), GRPCFloor: 300, JetStreamFloor: 600, CommandFloor: 200,
		GRPCFloorCPU: CPUPer{Server: 30, Client: 31}, JetStreamFloorCPU: CPUPer{Server: 27, Client: 35}, Ratios: []float64{0.4, 0.6}}
	r.QueryCreate.Create.CPU, r.QueryCreate.Create.Overall.P99 = &CPU{Server: 0.02, Client: 0.005}, 15.1
	r.Events, r.FillEvents, r.EarlierEvents, r.FillMix, r.Orders = 100410, 50000, 50410, "create=1", 87801
	r.Rebuild, r.RawReadBefore, r.RawReadAfter, r.RawRead = 40000, 160000, 200000, 200000
	r.RawReadCPU, r.RebuildCPU = CPUPer{Server: 4, Client: 6}, CPUPer{Server: 45}
	r.ReadModelBytes = 268 * 87801 // 22.44 MiB
	r.StartEmpty, r.StartWithLog = 0.14, 0.43
	r.GetOnLog = &GetPhase{Get: op(), GRPCFloor: 200, GRPCFloorCPU: CPUPer{Server: 30, Client: 31}, Ratios: []float64{0.4, 0.6}}
	r.GetOnLog.Get.CPU = &CPU{Server: 0.02, Client: 0.01}
	r.MixedPeak, r.MixedHalf.Rate, r.MixedHalf.Overall.P99, r.MixedHalfFloor = 3200, 1600, 41.5, OpStats{Count: 8000, P99: 3.8}
	r.LagRate, r.Lag, r.LagFloor = 1000, OpStats{Count: 5000, P50: 0.7, P99: 6.2}, OpStats{Count: 5000, P99: 3.5}
	r.RSSBytes, r.PeakRSSBytes, r.StreamBytes, r.RestartRSSBytes = 340<<20, 350<<20, 60<<20, 120<<20
	md := r.Markdown()
	for _, want := range []string{
		"#### 2026-12-05 15:20 UTC, ordersd 53be4a5\n\n2026-12-05, 15:20–15:22 UTC; 2 CPUs, linux/amd64;",
		"```sh\nordersbench floor --clients 32 --phase 5s --rounds 5 --events 100000 --fill-mix create=1 --fill-timeout 5m0s --lag-rate 1000 --env GOGC=50 --env 'OTEL_RESOURCE_ATTRIBUTES=team=a b,it'\\''s'\n```\n\n| measure",
		"| CreateOrder, all roles ÷ command floor | 100/s (p99 0.0 ms) | 1.00 (CPU 0.33) | 300 + 70 µs |",
		"| command floor: 1 / (1/gRPC + 1/JetStream) | 100/s | (reference) | 57 + 66 µs |",
		"| GetOrder ÷ gRPC floor | 100/s (p99 0.0 ms; gRPC floor beside it 0/s) | 0.00 |  |",
		"| GetOrder on the filled log (100410 events) ÷ gRPC floor | 100/s (p99 0.0 ms; gRPC floor beside it 200/s, 30 + 31 µs) | 0.50 (rounds 0.40–0.60; CPU 0.20) | 200 + 100 µs |",
		"| mixed load (create 40, add 30, place 10, get 15, list 5) at half its peak: p99 | 41.5 ms (peak 3200/s, open loop at 1600/s; latency floor, Health/Check at that rate: p99 3.8 ms) |",
		"| append → visible in the read model at 1000 appends/s, from the create's answer until the read at its position returns: p99 | 6.2 ms (p50 0.7 ms; latency floor, Health/Check at that rate, each timed from its send: p99 3.5 ms) |",
		"| ordersd RSS after 100410 events (embedded NATS) | 340 MiB (peak 350 MiB by then; stream 60 MiB; 120 MiB when ready again after a restart) |",
		// 100/s over a command floor of 200/s; the floors' CPU per request
		// (57 + 66 µs) over CreateOrder's (0.015 s over 100: 100 + 50 µs).
		"| CreateOrder, ROLES=command ÷ its command floor | 100/s (p99 12.9 ms; floors 300/s gRPC, 600/s JetStream; both 57 + 66 µs) | 0.50 (rounds 0.45–0.55; CPU 0.82) | 100 + 50 µs |\n" +
			// ROLES=command,query's row follows: 0.025 s over 100 requests.
			"| CreateOrder, ROLES=command,query ÷ its command floor | 100/s (p99 15.1 ms; floors 300/s gRPC, 600/s JetStream; both 57 + 66 µs) | 0.50 (rounds 0.40–0.60; CPU 0.49) | 200 + 50 µs |\n",
		// 40000/s over the faster raw read; 87801 orders in 100410 events.
		"| rebuild ÷ raw ordered-consumer read (the faster of one before and one after the rebuild), 100410 events (50000 added by the fill with create=1, 50410 by the earlier phases; 0.87 orders per event); CPU per event | 40000/s vs 200000/s (raw read 160000/s before, 200000/s after; the faster 4 + 6 µs) | 0.20 | 45 + 0 µs |\n",
		"| read model bytes per order | 268 B (22.4 MiB for 87801 orders) |  |  |\n",
		"| start-up to ready: empty, then on the log with a current checkpoint | 0.14 s, 0.43 s |  |  |\n",
	} {
		if !strings.Contains(md, want) {
			t.Fatalf("markdown lacks %q:\n%s", want, md)
		}
	}
	// A log the earlier phases filled to --events alone says so.
	r.FillEvents, r.EarlierEvents = 0, 100410
	if want := "100410 events (all from the earlier phases; the fill with create=1 added none; 0.87 orders per event); CPU per event |"; !strings.Contains(r.String(), want) {
		t.Fatalf("table lacks %q:\n%s", want, r)
	}
	// A report from before the log's shares and the raw read on both
	// sides of the rebuild claims neither.
	r.FillEvents, r.EarlierEvents, r.RawReadBefore, r.RawReadAfter = 0, 0, 0, 0
	if want := "| rebuild ÷ raw ordered-consumer read, 100410 events (topped up with create=1, its share not recorded; 0.87 orders per event); CPU per event | 40000/s vs 200000/s (the raw read 4 + 6 µs) | 0.20 | 45 + 0 µs |\n"; !strings.Contains(r.String(), want) {
		t.Fatalf("table lacks %q:\n%s", want, r)
	}
	// A report from before the latency floors, GetOrder on the filled log
	// and the RSS after a restart (its JSON without them) shows none.
	r.MixedHalfFloor, r.LagFloor, r.GetOnLog, r.RestartRSSBytes, r.QueryCreate = OpStats{}, OpStats{}, nil, 0, nil
	if md := r.Markdown(); strings.Contains(md, "latency floor") || strings.Contains(md, "filled log") || strings.Contains(md, "restart") || strings.Contains(md, "command,query") {
		t.Fatalf("a report without latency floors, GetOrder on the filled log, the RSS after a restart or ROLES=command,query shows one:\n%s", md)
	}
}
