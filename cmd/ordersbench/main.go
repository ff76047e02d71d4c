// Command ordersbench drives a running ordersd with an open-loop load (a
// constant arrival rate, latency measured from each request's scheduled
// time) and prints throughput and latency percentiles. With
// --compare-raw it then performs the same operations on bare JetStream
// (--nats) and prints the ratio system ÷ raw from the one run.
//
//	ordersbench --addr 127.0.0.1:50051 --rate 2000 --concurrency 64 --duration 20s
//	ordersbench --protocol rest --http http://127.0.0.1:8080 --mix create=50,get=50
//	ordersbench --compare-raw --nats nats://127.0.0.1:4222 --json report.json
//	ordersbench --visibility --rate 1000 --concurrency 256 --duration 5s
//	ordersbench --tls --ca ca.pem --token "$ORDERS_TOKEN"
//
// ordersbench floor starts ordersd itself (see runFloor) and measures the
// system against raw gRPC and raw JetStream in one run:
//
//	ordersbench floor --ordersd ./ordersd --events 100000 --json floor.json
//
// ordersbench waits reads an execution trace taken from ordersd's
// DEBUG_ADDR and prints, for the waits of runnable goroutines longer than
// --over, which goroutines held the processors meanwhile:
//
//	curl -so trace.out 'http://127.0.0.1:6060/debug/pprof/trace?seconds=4'
//	ordersbench waits --over 5ms trace.out
//
// Only run it against servers you run yourself.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/orderstream/orderstream/internal/loadgen"
	"github.com/orderstream/orderstream/internal/tlsconfig"
)

func main() {
	if len(os.Args) > 1 && subcommand(os.Args[1], os.Args[2:]) {
		return
	}
	addr := flag.String("addr", "127.0.0.1:50051", "ordersd gRPC address")
	httpBase := flag.String("http", "http://127.0.0.1:8080", "ordersd REST base URL (with --protocol rest)")
	protocol := flag.String("protocol", "grpc", "grpc, rest or raw")
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL for raw mode (ordersd's embedded server listens on NATS_LISTEN)")
	mixFlag := flag.String("mix", "create=40,add=30,place=10,get=15,list=5", "operation weights")
	rate := flag.Float64("rate", 1000, "requests per second (open loop)")
	conc := flag.Int("concurrency", 64, "maximum requests in flight; beyond it scheduled requests wait, and the wait counts in their latency")
	drop := flag.Bool("drop", false, "drop scheduled requests when --concurrency are in flight instead of queueing them")
	// Not the flag's default: the usage prints defaults, and the token is
	// a secret.
	token := flag.String("token", "", "bearer token for an ordersd with authentication (default $ORDERS_TOKEN)")
	useTLS := flag.Bool("tls", false, "connect with TLS (implied by --ca, --cert, --key)")
	caFile := flag.String("ca", "", "CA certificate file to trust for the server")
	certFile := flag.String("cert", "", "client certificate file (mTLS)")
	keyFile := flag.String("key", "", "client key file (mTLS)")
	serverName := flag.String("server-name", "", "server name to verify, when it differs from the address")
	dur := flag.Duration("duration", 10*time.Second, "how long to offer load")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout")
	compare := flag.Bool("compare-raw", false, "also run the raw JetStream floor and print the ratio")
	visibility := flag.Bool("visibility", false, "each request creates an order and reads it back at its log position; also prints the append → visible latency (gRPC only, --mix ignored)")
	jsonOut := flag.String("json", "", "write the report(s) as JSON to this file")
	flag.Parse()

	mix, err := loadgen.ParseMix(*mixFlag)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := loadgen.Config{Rate: *rate, Concurrency: *conc, Duration: *dur, Mix: mix, Timeout: *timeout, Drop: *drop}
	auth := loadgen.Auth{Token: cmp.Or(*token, os.Getenv("ORDERS_TOKEN"))}
	if *useTLS || *caFile != "" || *certFile != "" || *keyFile != "" {
		if auth.TLS, err = tlsconfig.Client(*caFile, *certFile, *keyFile, *serverName); err != nil {
			fail(err)
		}
	}
	var reports []*loadgen.Report
	run := func(name string, t loadgen.Target) *loadgen.Report {
		defer t.Close()
		rep, err := loadgen.Run(ctx, name, t, cfg)
		if err != nil {
			fail(err)
		}
		fmt.Print(rep.String())
		reports = append(reports, rep)
		return rep
	}
	if *visibility && (*protocol != "grpc" || *compare) {
		fail(errors.New("--visibility: gRPC only, without --compare-raw"))
	}
	switch *protocol {
	case "grpc":
		t, err := loadgen.NewGRPC(*addr, auth)
		if err != nil {
			fail(err)
		}
		if !*visibility {
			run("grpc", t)
			break
		}
		defer t.Close()
		cfg.Mix = loadgen.Mix{loadgen.Create: 1}
		reports = append(reports, visible(t.Visibility(), cfg, run))
	case "rest":
		run("rest", restTarget(*httpBase, auth))
	case "raw":
	default:
		fail(fmt.Errorf("--protocol %q: want grpc, rest or raw", *protocol))
	}
	if *compare || *protocol == "raw" {
		t, err := loadgen.NewRaw(ctx, *natsURL)
		if err != nil {
			fail(fmt.Errorf("raw: %w", err))
		}
		run("raw", t)
	}
	report(reports, *compare, *jsonOut)
}

// restTarget is the REST target at base, or fails when TLS settings were
// given for an http:// base: they apply to https:// only, and the token
// would go out in clear.
func restTarget(base string, auth loadgen.Auth) loadgen.Target {
	if auth.TLS != nil && !strings.HasPrefix(base, "https://") {
		fail(fmt.Errorf("--protocol rest with --tls, --ca, --cert or --key: --http %q must be an https:// URL", base))
	}
	return loadgen.NewREST(base, auth)
}

// visible runs v with cfg through run and prints and returns the append →
// visible times it recorded, their rate taken over the time the run took
// (an open loop runs on past its duration until every request it sent is
// answered).
func visible(v *loadgen.Visibility, cfg loadgen.Config, run func(string, loadgen.Target) *loadgen.Report) *loadgen.Report {
	rep := run("create then read at its position", v)
	vis := v.Report(time.Duration(rep.Duration * float64(time.Second)))
	vis.Target, vis.Rate = "append → visible", cfg.Rate
	fmt.Print(vis.String())
	return vis
}

// report prints the ratios of the first run to the raw floor when
// compared (the raw run is then the second), and writes every run to
// jsonOut unless it is empty.
func report(reports []*loadgen.Report, compared bool, jsonOut string) {
	out := output{Runs: reports}
	if compared && len(reports) == 2 {
		sys, raw := reports[0], reports[1]
		// Requests that succeeded, as every rate of the floor: a system
		// whose requests fail fast did none of the work. A raw run with
		// no success has no ratio (JSON holds no infinity).
		if raw.OKRate() > 0 && raw.Overall.P50 > 0 && raw.Overall.P99 > 0 {
			out.SystemOverRaw = &ratio{Throughput: sys.OKRate() / raw.OKRate(), P50: sys.Overall.P50 / raw.Overall.P50, P99: sys.Overall.P99 / raw.Overall.P99}
			fmt.Printf("system ÷ raw: throughput %.2f, p50 latency %.2f×, p99 latency %.2f×\n",
				out.SystemOverRaw.Throughput, out.SystemOverRaw.P50, out.SystemOverRaw.P99)
		} else {
			fmt.Println("system ÷ raw: none, no raw request succeeded")
		}
	}
	if jsonOut != "" {
		writeJSON(jsonOut, out)
	}
}

// output is the --json document: each run, and the ratios of the first
// to the raw floor when both ran.
type output struct {
	Runs          []*loadgen.Report `json:"runs"`
	SystemOverRaw *ratio            `json:"system_over_raw,omitempty"`
}

// ratio compares the system with the raw JetStream floor from one run:
// throughput as system ÷ raw (1 = as fast as bare JetStream), latencies as
// how many times longer the system takes.
type ratio struct {
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50_latency"`
	P99        float64 `json:"p99_latency"`
}

// subcommand runs "ordersbench floor" or "ordersbench waits" and reports
// whether name was one of them.
func subcommand(name string, args []string) bool {
	switch name {
	case "floor":
		runFloor(args)
	case "waits":
		if err := runWaits(args, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fail(err)
		}
	default:
		return false
	}
	return true
}

// writeJSON writes v to path as indented JSON, or fails: an empty file
// would read as a run that measured nothing.
func writeJSON(path string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		fail(fmt.Errorf("--json %s: %w", path, err))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ordersbench:", err)
	os.Exit(1)
}

// runFloor is "ordersbench floor": it starts its own ordersd (all roles,
// then ROLES=command, then ROLES=command,query) on free loopback ports in
// a temporary directory and
// prints the floors, the system against them, and the ratios, each from
// this one run.
func runFloor(args []string) {
	fs := flag.NewFlagSet("ordersbench floor", flag.ExitOnError)
	bin := fs.String("ordersd", "", "ordersd executable to start (default: ordersd beside this executable, else on PATH)")
	clients := fs.Int("clients", 32, "concurrent clients of every closed-loop phase")
	phase := fs.Duration("phase", 5*time.Second, "duration of each measured phase")
	rounds := fs.Int("rounds", 5, "run the floors and the CreateOrder phases compared with them in this many interleaved rounds of --phase/--rounds each, so that the machine's drift falls on both alike (1: each once, one after the other)")
	events := fs.Int("events", 100000, "size of the whole log for the rebuild and the memory figures: the events the earlier phases appended count towards it, and the fill with --fill-mix adds only what is missing (none when they reached it); the table says how many the fill added")
	fillMix := fs.String("fill-mix", "create=1", "operation weights of the load that tops the log up to --events (its share only; the earlier phases' events are of their own mixes); it must create orders (e.g. create=2,add=2,place=1 for orders of several events)")
	fillTimeout := fs.Duration("fill-timeout", 5*time.Minute, "bound on filling the log to --events; the fill stops there, short of it")
	lagRate := fs.Float64("lag-rate", 1000, "appends per second at which the append → visible lag is measured")
	profiles := fs.String("profile-dir", "", "save here ordersd's CPU profiles of one more, unmeasured, run of each CreateOrder and GetOrder phase (GetOrder before and after the fill) after its measured rounds, and of the rebuild, and a heap profile after the fill (uses DEBUG_ADDR)")
	jsonOut := fs.String("json", "", "also write the report as JSON to this file")
	benchmarks := fs.String("benchmarks", "", "rewrite the newest run's section of this file (BENCHMARKS.md, between its ordersbench floor markers) with this run: the date, the machine, the builds, the command and the table")
	var env envFlag
	fs.Var(&env, "env", "KEY=VALUE to set in ordersd's environment, e.g. DUPLICATE_WINDOW=10s (repeatable)")
	_ = fs.Parse(args)
	path, err := ordersdPath(*bin)
	if err != nil {
		fail(err)
	}
	fm, err := loadgen.ParseMix(*fillMix)
	if err != nil {
		fail(fmt.Errorf("--fill-mix: %w", err))
	}
	if *profiles != "" {
		if err := os.MkdirAll(*profiles, 0o750); err != nil {
			fail(err)
		}
	}
	if *benchmarks != "" {
		// Checked before the run, which can take many minutes.
		if err := rewriteNewest(*benchmarks, ""); err != nil {
			fail(err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Floor(ctx, loadgen.FloorConfig{Ordersd: path, Clients: *clients, Phase: *phase, Rounds: *rounds, Events: *events,
		FillTimeout: *fillTimeout, FillMix: fm, LagRate: *lagRate, ProfileDir: *profiles, Env: env, Progress: os.Stderr})
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s.\n\n%s", rep.Machine, rep)
	if *jsonOut != "" {
		writeJSON(*jsonOut, rep)
	}
	if *benchmarks != "" {
		if err := rewriteNewest(*benchmarks, rep.Markdown()); err != nil {
			fail(err)
		}
	}
}

// rewriteNewest replaces the newest floor run's section of the file at
// path with section (loadgen.ReplaceNewest); with an empty section it only
// checks that the file has one, and writes nothing.
func rewriteNewest(path, section string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := loadgen.ReplaceNewest(doc, section)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if section == "" {
		return nil
	}
	return os.WriteFile(path, out, 0o644)
}

// envFlag collects repeated --env KEY=VALUE settings.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

// ordersdPath finds the ordersd to start: the flag, else one beside this
// executable, else one on PATH.
func ordersdPath(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(self), "ordersd")
		if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
			return beside, nil
		}
	}
	p, err := exec.LookPath("ordersd")
	if err != nil {
		return "", errors.New("no ordersd beside ordersbench or on PATH: build one (go build ./cmd/ordersd) and pass --ordersd")
	}
	return p, nil
}
