package loadgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/rawbench"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"
	_ "modernc.org/sqlite" // the read model's file, counted after the run
)

// FloorConfig is one run of Floor.
type FloorConfig struct {
	// Ordersd is the ordersd executable to start.
	Ordersd string
	// Clients is the concurrency of every closed-loop phase.
	Clients int
	// Phase bounds each measured phase.
	Phase time.Duration
	// Rounds splits the floors and the CreateOrder phase compared with
	// them into this many slices of Phase/Rounds each, run in turn (gRPC
	// floor, JetStream floor, CreateOrder, then again), so that the
	// machine's drift during the run falls on the floors and the
	// operation alike; GetOrder runs in rounds with a gRPC floor of its
	// own. 0 means 1: each measured once, one after the other.
	Rounds int
	// Events is the size of the whole log the rebuild and the memory
	// figures are measured at: what the phases before the fill appended
	// (CreateOrder, the mixed load, the lag phase) counts towards it, and
	// the fill adds only what is missing, none when they reached it, for
	// at most FillTimeout. It is the log's total, not the fill's, so that
	// runs compare by the size of what is rebuilt; the report says how
	// much of it the fill added (FloorReport.FillEvents).
	Events      int
	FillTimeout time.Duration
	// FillMix is the load that tops the log up (nil: CreateOrder only,
	// where every event is a new order: the rebuild's worst case, one row
	// and its index entries per event). It must create orders for its
	// adds and places to work on. It makes only the fill's share of the
	// log; the rest is the earlier phases' mix.
	FillMix Mix
	// LagRate is the append rate at which visibility lag is measured.
	LagRate float64
	// ProfileDir, when set, receives CPU profiles of ordersd taken in a
	// run of each CreateOrder and GetOrder phase (GetOrder before and after
	// the fill) beside the measured rounds, and of the rebuild, and a heap
	// profile after the fill (ordersd's DEBUG_ADDR).
	ProfileDir string
	// Env holds KEY=VALUE settings added to every ordersd's environment
	// after the floor's own, so a setting can be compared with its
	// default.
	Env []string
	// Progress receives a line per phase.
	Progress io.Writer
}

// FloorReport is everything one Floor run measured. Rates are per second,
// latencies in milliseconds.
type FloorReport struct {
	// Machine says when and where the run was, and the builds it ran;
	// Command is the ordersbench command line that repeats it.
	Machine Machine `json:"machine"`
	Command string  `json:"command"`
	Clients int     `json:"clients"`
	Rounds  int     `json:"rounds"`
	// All roles in one process: CreateOrder against the floors measured
	// beside it.
	Create CreatePhase `json:"create"`
	// Get is GetOrder on the orders the CreateOrder phases made, before
	// the fill; GetOnLog on the filled log, the newest orders the fill
	// made, read once the rebuild has swapped in a read model of its own,
	// with nothing in its caches (nil in a report from before it).
	Get       GetPhase  `json:"get"`
	GetOnLog  *GetPhase `json:"get_on_log,omitempty"`
	MixedPeak float64   `json:"mixed_peak"`
	MixedHalf *Report   `json:"mixed_half_peak"`
	Lag       OpStats   `json:"append_to_visible"`
	LagRate   float64   `json:"lag_rate"`
	// MixedHalfFloor and LagFloor are the latency floors of those two
	// open-loop phases: Health/Check offered at the phase's rate with its
	// concurrency, once the phase's work has settled (latencyFloor), each
	// timed as its phase's latencies are: the mixed load's from their
	// scheduled instants, the lag's reads from their own sends.
	MixedHalfFloor OpStats `json:"mixed_half_peak_latency_floor"`
	LagFloor       OpStats `json:"append_to_visible_latency_floor"`
	// The log, its raw read and the rebuild. Events is the whole log's
	// size: FillEvents of it the fill appended with FillMix (with the
	// payments its places brought about), EarlierEvents the phases before
	// it, which the fill only tops up (both 0 in a report from before
	// they were told apart). Orders is how many orders the whole log made.
	FillMix       string `json:"fill_mix"`
	Events        uint64 `json:"events"`
	FillEvents    uint64 `json:"fill_events"`
	EarlierEvents uint64 `json:"events_before_fill"`
	Orders        int64  `json:"orders"`
	// RawRead is the floor the rebuild is divided by: the faster of the
	// raw reads taken just before the rebuild and just after it
	// (RawReadBefore, RawReadAfter; both 0 in a report from before they
	// were), so that a read on cold server caches does not set it.
	RawRead       float64 `json:"raw_read_events_per_s"`
	RawReadBefore float64 `json:"raw_read_before_rebuild_events_per_s,omitempty"`
	RawReadAfter  float64 `json:"raw_read_after_rebuild_events_per_s,omitempty"`
	Rebuild       float64 `json:"rebuild_events_per_s"`
	// RawReadCPU (the faster read's) and RebuildCPU are per event; the
	// rebuild's client only waits for its end.
	RawReadCPU     CPUPer `json:"raw_read_cpu"`
	RebuildCPU     CPUPer `json:"rebuild_cpu"`
	ReadModelBytes int64  `json:"read_model_bytes"`
	StreamBytes    uint64 `json:"stream_bytes"`
	RSSBytes       int64  `json:"rss_bytes"`
	// PeakRSSBytes is the largest RSS ordersd had by the time RSSBytes
	// was read, after the fill: the rebuild and the reads after it come
	// later.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// RestartRSSBytes is ordersd's resident set when it is ready again on
	// the filled log after a restart: what holding the log takes, apart
	// from the heap the load grew and the runtime has not yet handed back
	// (0 in a report from before it).
	RestartRSSBytes int64   `json:"restart_rss_bytes,omitempty"`
	StartEmpty      float64 `json:"startup_empty_s"`
	StartWithLog    float64 `json:"startup_with_log_s"`
	// ROLES=command, against its own floors from the same run.
	CmdCreate CreatePhase `json:"command_role_create"`
	// ROLES=command,query (the projection beside the command side, without
	// the payments role's process managers), against its own floors: it
	// says which of the two the all-roles row's gap is (nil in a report
	// from before it).
	QueryCreate *CreatePhase `json:"command_query_roles_create,omitempty"`
}

// commandFloor is one gRPC round trip plus one JetStream publish done one
// after the other on the same cores: their times per request add up.
func commandFloor(grpcRate, jsRate float64) float64 {
	if grpcRate <= 0 || jsRate <= 0 {
		return 0
	}
	return 1 / (1/grpcRate + 1/jsRate)
}

// Floor starts ordersd itself (all roles, then ROLES=command, then
// ROLES=command,query) on free
// loopback ports in a temporary directory, and measures in one run the
// floors the system is compared with and the system against them. It
// stops every process it started before it returns.
func Floor(ctx context.Context, cfg FloorConfig) (*FloorReport, error) {
	if cfg.Clients <= 0 || cfg.Phase <= 0 || cfg.Events <= 0 || cfg.LagRate <= 0 {
		return nil, errors.New("floor: clients, phase, events and lag rate must be positive")
	}
	if cfg.FillMix == nil {
		cfg.FillMix = Mix{Create: 1}
	}
	if cfg.FillMix[Create] <= 0 {
		return nil, errors.New("floor: the fill mix must create orders")
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	cfg.Rounds = max(cfg.Rounds, 1)
	tmp, err := os.MkdirTemp("", "ordersbench-floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	rep := &FloorReport{Machine: describeMachine(cfg.Ordersd), Command: cfg.command(),
		Clients: cfg.Clients, Rounds: cfg.Rounds, LagRate: cfg.LagRate, FillMix: cfg.FillMix.String()}
	rep.Machine.Started = time.Now()
	if err := floorAllRoles(ctx, cfg, filepath.Join(tmp, "all"), rep); err != nil {
		return nil, err
	}
	if rep.CmdCreate, err = floorCreateWithRoles(ctx, cfg, filepath.Join(tmp, "command"), "command"); err != nil {
		return nil, err
	}
	query, err := floorCreateWithRoles(ctx, cfg, filepath.Join(tmp, "command-query"), "command,query")
	if err != nil {
		return nil, err
	}
	rep.QueryCreate = &query
	rep.Machine.Finished = time.Now()
	return rep, nil
}

// runtimeSettings are the Go runtime's environment variables that change
// what a floor measures, in the order a command line names them.
var runtimeSettings = []string{"GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT"}

// command is the ordersbench command line that runs a floor with cfg's
// settings (the ordersd to start and where to write aside). It holds
// every flag that changes what is measured: --fill-timeout can stop the
// fill short of --events, and --profile-dir adds phases and profiles
// ordersd during the timed rebuild.
func (cfg FloorConfig) command() string {
	// The Go runtime's settings, which ordersd is started with too
	// (startOrdersd), change what is measured; they are written as the
	// command's environment.
	var args []string
	for _, k := range runtimeSettings {
		if v := os.Getenv(k); v != "" {
			args = append(args, shellQuote(k+"="+v))
		}
	}
	args = append(args, "ordersbench floor", "--clients "+strconv.Itoa(cfg.Clients), "--phase "+cfg.Phase.String(),
		"--rounds "+strconv.Itoa(cfg.Rounds), "--events "+strconv.Itoa(cfg.Events), "--fill-mix "+cfg.FillMix.String(),
		"--fill-timeout "+cfg.FillTimeout.String(), "--lag-rate "+strconv.FormatFloat(cfg.LagRate, 'f', -1, 64))
	if cfg.ProfileDir != "" {
		args = append(args, "--profile-dir "+shellQuote(cfg.ProfileDir))
	}
	for _, kv := range cfg.Env {
		args = append(args, "--env "+shellQuote(kv))
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything beyond
// letters, digits and a few punctuation marks no shell treats specially.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (cfg FloorConfig) say(format string, args ...any) {
	fmt.Fprintf(cfg.Progress, "floor: "+format+"\n", args...)
}

// CreatePhase is CreateOrder measured against the gRPC and JetStream
// floors, in rounds (againstFloors).
type CreatePhase struct {
	Create         *Report `json:"create"`
	GRPCFloor      float64 `json:"grpc_floor"`
	JetStreamFloor float64 `json:"jetstream_floor"`
	// CommandFloor is commandFloor of the two.
	CommandFloor float64 `json:"command_floor"`
	// GRPCFloorCPU and JetStreamFloorCPU are what a request of each floor
	// cost; CreateOrder's is in its report.
	GRPCFloorCPU      CPUPer `json:"grpc_floor_cpu"`
	JetStreamFloorCPU CPUPer `json:"jetstream_floor_cpu"`
	// Ratios are CreateOrder ÷ command floor of each round.
	Ratios []float64 `json:"ratios,omitempty"`
}

// commandFloorCPU is what one request of each floor costs together: the
// command floor's CPU per request.
func (ph CreatePhase) commandFloorCPU() CPUPer { return ph.GRPCFloorCPU.add(ph.JetStreamFloorCPU) }

// againstFloors measures the gRPC floor, the JetStream floor and
// CreateOrder (name) against p with g's client in rounds (inRounds).
//
// settle, when not nil, runs
// after each CreateOrder slice, outside it, so that no floor is measured
// while ordersd still works off that slice (the projection, the payments
// manager). profile names CreateOrder's CPU profile.
func againstFloors(ctx context.Context, cfg FloorConfig, p *ordersd, g *GRPC, name, profile string, settle func(context.Context) error) (CreatePhase, error) {
	cfg.say("gRPC floor (Health/Check), JetStream floor (publish expecting subject sequence 0 to new subjects) and %s, %d clients, %d rounds of %s each", name, cfg.Clients, cfg.Rounds, cfg.Phase/time.Duration(cfg.Rounds))
	createOrders := func(ctx context.Context, d time.Duration) (*Report, error) {
		r, err := RunClosed(ctx, name, g, cfg.Clients, d, Mix{Create: 1}, 0)
		if err == nil && settle != nil {
			err = settle(ctx)
		}
		return r, err
	}
	return createAgainstFloors(ctx, cfg, p, profile, grpcFloorPhase(cfg, g), jetStreamFloorPhase(cfg, p), createOrders)
}

// createAgainstFloors is againstFloors with its phases (the gRPC floor,
// the JetStream floor, CreateOrder) given, so that what it makes of their
// rates can be checked with phases of known rates.
func createAgainstFloors(ctx context.Context, cfg FloorConfig, p *ordersd, profile string, grpcFloor, jsFloor, createOrders phase) (CreatePhase, error) {
	floors, create, ratios, err := inRounds(ctx, cfg, p, profile, []phase{grpcFloor, jsFloor},
		func(r []float64) float64 { return commandFloor(r[0], r[1]) }, createOrders)
	if err != nil {
		return CreatePhase{}, err
	}
	gf, jf := floors[0].OKRate(), floors[1].OKRate()
	return CreatePhase{Create: create, GRPCFloor: gf, JetStreamFloor: jf, CommandFloor: commandFloor(gf, jf),
		GRPCFloorCPU: perRequest(floors[0]), JetStreamFloorCPU: perRequest(floors[1]), Ratios: ratios}, nil
}

// grpcFloorPhase is the gRPC floor as a phase: Health/Check with cfg's
// clients on g's connection.
func grpcFloorPhase(cfg FloorConfig, g *GRPC) phase {
	return func(ctx context.Context, d time.Duration) (*Report, error) {
		return RunClosed(ctx, "grpc-floor", g.Health(), cfg.Clients, d, Mix{Get: 1}, 0)
	}
}

// jetStreamFloorPhase is the JetStream floor as a phase: publishes with
// cfg's clients to a raw stream on p's server, made for the slice and
// deleted when it ends. The stream lives in ordersd's embedded server, and
// one kept across the rounds would grow the server's subject index and
// duplicate window under every later slice.
func jetStreamFloorPhase(cfg FloorConfig, p *ordersd) phase {
	return func(ctx context.Context, d time.Duration) (*Report, error) {
		raw, err := NewRaw(ctx, "nats://"+p.nats)
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		r, err := RunClosed(ctx, "jetstream-floor", raw, cfg.Clients, d, Mix{Create: 1}, 0)
		if cerr := raw.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("raw: %w", cerr)
		}
		return r, err
	}
}

// openLoop is the configuration of the floor's open-loop phases, the
// latency floors among them: mix offered at rate for d, with up to
// 8 × cfg.Clients in flight (a phase below its peak queues rather than
// drops).
func (cfg FloorConfig) openLoop(rate float64, mix Mix, d time.Duration) Config {
	return Config{Rate: rate, Concurrency: 8 * cfg.Clients, Duration: d, Mix: mix}
}

// latencyFloor is the latency floor of an open-loop phase at rate: a
// trivial RPC (Health/Check, as the gRPC floor) offered at the same rate,
// with the same concurrency (openLoop) and client, for cfg.Phase.
// A phase's p99 is read against it as its throughput is against the
// throughput floors: what this machine, this client and this server's
// gRPC stack give a request that does no work at that rate. It runs on
// the same ordersd once the phase's work has settled (the projection and
// the payments manager done with it), as the throughput floors run apart
// from the operations. Each check is timed from its scheduled instant, as
// Run times a phase's requests, or, fromSend, from its own send, as the
// append → visible lag times its read (Visibility): from the schedule it
// would count the load generator's lateness and queueing, which the lag
// does not.
func latencyFloor(ctx context.Context, cfg FloorConfig, g *GRPC, rate float64, fromSend bool) (OpStats, error) {
	cfg.say("latency floor: Health/Check at %.0f/s, %s", rate, cfg.Phase)
	t, own := g.Health(), newRecorder("latency-floor")
	if fromSend {
		t = selfTimed{Target: t, rec: own}
	}
	r, err := Run(ctx, "latency-floor", t, cfg.openLoop(rate, Mix{Get: 1}, cfg.Phase))
	if err != nil {
		return OpStats{}, err
	}
	if fromSend {
		return own.finish(cfg.Phase).Overall, failures(r)
	}
	return r.Overall, failures(r)
}

// selfTimed records each of its target's requests timed from its own send
// in rec.
type selfTimed struct {
	Target
	rec *recorder
}

func (s selfTimed) Do(ctx context.Context, op Op, r *rand.Rand) string {
	t0 := time.Now()
	class := s.Target.Do(ctx, op, r)
	s.rec.record(op, time.Since(t0), class)
	return class
}

// GetPhase is GetOrder measured against a gRPC floor of its own, in
// rounds (getAgainstFloor).
type GetPhase struct {
	Get *Report `json:"get"`
	// GRPCFloor is the gRPC floor measured in GetOrder's rounds, and
	// Ratios GetOrder ÷ that floor in each round.
	GRPCFloor    float64   `json:"grpc_floor"`
	GRPCFloorCPU CPUPer    `json:"grpc_floor_cpu"`
	Ratios       []float64 `json:"ratios,omitempty"`
}

// getAgainstFloor measures GetOrder of the orders g created against the
// gRPC floor in rounds (inRounds); with cfg.ProfileDir, ordersd's CPU
// profile of it is named profile.
func getAgainstFloor(ctx context.Context, cfg FloorConfig, p *ordersd, g *GRPC, profile string) (GetPhase, error) {
	cfg.say("gRPC floor (Health/Check) and GetOrder, %d clients, %d rounds of %s each", cfg.Clients, cfg.Rounds, cfg.Phase/time.Duration(cfg.Rounds))
	getOrders := func(ctx context.Context, d time.Duration) (*Report, error) {
		return RunClosed(ctx, "get", g, cfg.Clients, d, Mix{Get: 1}, 0)
	}
	floors, get, ratios, err := inRounds(ctx, cfg, p, profile, []phase{grpcFloorPhase(cfg, g)},
		func(r []float64) float64 { return r[0] }, getOrders)
	if err != nil {
		return GetPhase{}, err
	}
	return GetPhase{Get: get, GRPCFloor: floors[0].OKRate(), GRPCFloorCPU: perRequest(floors[0]), Ratios: ratios}, nil
}

// inRounds measures op against floors in cfg.Rounds interleaved rounds
// (interleave), each phase for cfg.Phase/cfg.Rounds per round, and returns
// each floor's merged report, op's merged report, and op's rate over
// floorOf(the round's floor rates) in each round where that is positive.
// Every report carries the CPU time its phases took (ordersd's, where p
// is a process of its own, and the load generator's).
// With cfg.ProfileDir set, op runs once more for cfg.Phase outside the
// rounds, under a CPU profile of ordersd named profile.
func inRounds(ctx context.Context, cfg FloorConfig, p *ordersd, profile string, floors []phase, floorOf func([]float64) float64, op phase) (floorReps []*Report, merged *Report, ratios []float64, err error) {
	clock := cpuClock{p.pid}
	phases := make([]phase, 0, len(floors)+1)
	for _, ph := range append(slices.Clip(floors), op) {
		phases = append(phases, clock.metered(ph))
	}
	reps, err := interleave(ctx, cfg.Rounds, cfg.Phase/time.Duration(cfg.Rounds), phases...)
	if err != nil {
		return nil, nil, nil, err
	}
	ops := reps[len(floors)]
	for i := range cfg.Rounds {
		round := make([]float64, len(floors))
		for f := range floors {
			round[f] = reps[f][i].OKRate()
		}
		if floor := floorOf(round); floor > 0 {
			ratios = append(ratios, ops[i].OKRate()/floor)
		}
	}
	for f := range floors {
		floorReps = append(floorReps, mergeReports(reps[f][0].Target, reps[f]))
	}
	merged = mergeReports(ops[0].Target, ops)
	for _, r := range append(slices.Clip(floorReps), merged) {
		if err := failures(r); err != nil {
			return nil, nil, nil, err
		}
	}
	if cfg.ProfileDir != "" {
		cfg.say("%s for its CPU profile, %s", ops[0].Target, cfg.Phase)
		stopProfile := p.profile(cfg, profile, cfg.Phase)
		_, err := op(ctx, cfg.Phase)
		stopProfile()
		if err != nil {
			return nil, nil, nil, err
		}
	}
	return floorReps, merged, ratios, nil
}

// phase is one measured part of a round: it runs for d and reports.
type phase func(ctx context.Context, d time.Duration) (*Report, error)

// interleave runs phases in turn, rounds times over, each for slice, and
// returns each phase's reports in round order: a slow spell of the machine
// then falls on every phase alike, not on whichever ran during it. It
// stops at the first error.
func interleave(ctx context.Context, rounds int, slice time.Duration, phases ...phase) ([][]*Report, error) {
	out := make([][]*Report, len(phases))
	for range rounds {
		for i, ph := range phases {
			r, err := ph(ctx, slice)
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], r)
		}
	}
	return out, nil
}

// OKRate is the rate of the requests that succeeded, per second of the
// run: what a floor's ratio compares, where Throughput counts failed
// requests too, and a closed loop's answers after its end (LateOK).
func (r *Report) OKRate() float64 { return float64(okCount(r)) / r.Duration }

// okCount is the number of successful requests, less those a closed loop
// had answered only after its end.
func okCount(r *Report) int64 {
	var failed int64
	for _, n := range r.Overall.Errors {
		failed += n
	}
	return r.Completed - failed - r.Overall.LateOK
}

// maxFailedShare is the share of a phase's requests that may fail for
// other reasons than expected before the floor gives up: rates count
// successes only, but latencies are taken over every answer, and quick
// refusals would pull a p99 down.
const maxFailedShare = 0.01

// mixedAnswers are the refusals the mixed load meets in its normal course:
// an item added to an order a concurrent place or cancel moved on, an
// order read before it exists, a stale expected revision.
var mixedAnswers = []string{"NotFound", "FailedPrecondition", "Aborted"}

// failures refuses a phase whose requests failed, for other reasons than
// expected, beyond maxFailedShare, or that completed none: an ordersd that
// is not serving must not produce a table of figures taken over its
// failures.
func failures(r *Report, expected ...string) error {
	var failed int64
	for class, n := range r.Overall.Errors {
		if !slices.Contains(expected, class) {
			failed += n
		}
	}
	if r.Completed == 0 || float64(failed) > maxFailedShare*float64(r.Completed) {
		return fmt.Errorf("loadgen: %s: %d of %d requests failed (%v): ordersd is not serving them, and the phase's figures would be taken over its failures",
			r.Target, failed, r.Completed, r.Overall.Errors)
	}
	return nil
}

func floorAllRoles(ctx context.Context, cfg FloorConfig, dir string, rep *FloorReport) error {
	p, err := startOrdersd(ctx, cfg, dir, "command,query,audit,payments,gateway")
	if err != nil {
		return err
	}
	defer p.stop()
	rep.StartEmpty = p.startup.Seconds()
	g, err := NewGRPC(p.grpc, Auth{})
	if err != nil {
		return err
	}
	defer g.Close()
	admin := ordersv1.NewOrderAdminServiceClient(g.conn)
	if rep.Create, err = againstFloors(ctx, cfg, p, g, "create", "cpu-create", settled(admin)); err != nil {
		return err
	}
	if rep.Get, err = getAgainstFloor(ctx, cfg, p, g, "cpu-get"); err != nil {
		return err
	}
	if err := floorOpenLoop(ctx, cfg, p, g, admin, rep); err != nil {
		return err
	}

	if err := floorLog(ctx, cfg, p, g, rep); err != nil {
		return err
	}
	onLog, err := getAgainstFloor(ctx, cfg, p, g, "cpu-get-on-log")
	if err != nil {
		return err
	}
	rep.GetOnLog = &onLog
	head := rep.Events
	g.Close()
	p.stop()
	if rep.Orders, rep.ReadModelBytes, err = readModelSize(filepath.Join(dir, "data", "readmodel")); err != nil {
		return err
	}
	cfg.say("restart on %d events with a current checkpoint", head)
	again, err := startOrdersd(ctx, cfg, dir, "command,query,audit,payments,gateway")
	if err != nil {
		return err
	}
	rep.StartWithLog = again.startup.Seconds()
	rep.RestartRSSBytes, _ = again.rss()
	again.stop()
	return nil
}

// floorOpenLoop measures the latencies into rep: the mixed load's peak,
// its p99 at half of it, and append → visible at cfg.LagRate, each open-loop
// p99 beside its latency floor; every phase starts once the last one's work
// has settled.
func floorOpenLoop(ctx context.Context, cfg FloorConfig, p *ordersd, g *GRPC, admin ordersv1.OrderAdminServiceClient, rep *FloorReport) error {
	mix, _ := ParseMix("create=40,add=30,place=10,get=15,list=5")
	if _, err := settle(ctx, admin); err != nil {
		return err
	}
	cfg.say("mixed load at its peak, %d clients, %s", cfg.Clients, cfg.Phase)
	peak, err := RunClosed(ctx, "mixed-peak", g, cfg.Clients, cfg.Phase, mix, 0)
	if err != nil {
		return err
	}
	if err := failures(peak, mixedAnswers...); err != nil {
		return err
	}
	rep.MixedPeak = peak.OKRate()
	if _, err := settle(ctx, admin); err != nil {
		return err
	}
	cfg.say("mixed load at half its peak (%.0f/s), %s", rep.MixedPeak/2, cfg.Phase)
	clock := cpuClock{p.pid}
	if rep.MixedHalf, err = clock.metered(func(ctx context.Context, d time.Duration) (*Report, error) {
		return Run(ctx, "mixed-half-peak", g, cfg.openLoop(rep.MixedPeak/2, mix, d))
	})(ctx, cfg.Phase); err != nil {
		return err
	}
	if err := failures(rep.MixedHalf, mixedAnswers...); err != nil {
		return err
	}
	if _, err := settle(ctx, admin); err != nil {
		return err
	}
	if rep.MixedHalfFloor, err = latencyFloor(ctx, cfg, g, rep.MixedPeak/2, false); err != nil {
		return err
	}
	cfg.say("append → visible at %.0f appends/s, %s", cfg.LagRate, cfg.Phase)
	lag := g.Visibility()
	appends, err := Run(ctx, "lag", lag, cfg.openLoop(cfg.LagRate, Mix{Create: 1}, cfg.Phase))
	if err != nil {
		return err
	}
	// The lag is timed only for the appends that worked and were read
	// back: the run's failures say whether those are the phase.
	if err := failures(appends); err != nil {
		return err
	}
	rep.Lag = lag.Report(cfg.Phase).Overall
	if _, err := settle(ctx, admin); err != nil {
		return err
	}
	rep.LagFloor, err = latencyFloor(ctx, cfg, g, cfg.LagRate, true)
	return err
}

// floorLog fills the log to cfg.Events, waits for the projection, and
// measures the log: its size, ordersd's memory, a raw ordered-consumer read
// and a rebuild, into rep.
func floorLog(ctx context.Context, cfg FloorConfig, p *ordersd, g *GRPC, rep *FloorReport) error {
	orders, err := rawbench.OpenLog("nats://"+p.nats, "ORDERS")
	if err != nil {
		return err
	}
	defer orders.Close()
	before, err := fillLog(ctx, cfg, orders, g)
	if err != nil {
		return err
	}
	admin := ordersv1.NewOrderAdminServiceClient(g.conn)
	// Once the payments manager has settled the orders a mix placed, and
	// the projection has applied the whole log.
	head, err := settle(ctx, admin)
	if err != nil {
		return err
	}
	rep.Events = head
	rep.EarlierEvents = min(before, head)
	rep.FillEvents = head - rep.EarlierEvents
	if _, bytes, err := orders.Size(ctx); err == nil {
		rep.StreamBytes = bytes
	}
	rep.RSSBytes, rep.PeakRSSBytes = p.rss()
	p.heapProfile(cfg, "heap")

	clock := cpuClock{p.pid}
	// The raw read runs on both sides of the rebuild, and the faster is
	// the floor: the first may find the server's caches cold, which a
	// floor must not depend on, while the rebuild, reading the same log
	// between them, finds them warm.
	rawRead := func(when string) (float64, CPUPer, error) {
		cfg.say("raw ordered-consumer read of %d events, %s the rebuild", head, when)
		r0 := clock.read()
		rate, err := orders.ReadRate(ctx, head)
		return rate, clock.since(r0).perEvent(head), err
	}
	readBefore, beforeCPU, err := rawRead("before")
	if err != nil {
		return err
	}
	cfg.say("rebuild of %d events", head)
	stopProfile := p.profile(cfg, "cpu-rebuild", cfg.Phase)
	r0 := clock.read()
	rep.Rebuild, err = rebuild(ctx, admin, head)
	rep.RebuildCPU = clock.since(r0).perEvent(head)
	stopProfile()
	if err != nil {
		return err
	}
	readAfter, afterCPU, err := rawRead("after")
	if err != nil {
		return err
	}
	rep.RawReadBefore, rep.RawReadAfter = readBefore, readAfter
	rep.RawRead, rep.RawReadCPU = readBefore, beforeCPU
	if readAfter > readBefore {
		rep.RawRead, rep.RawReadCPU = readAfter, afterCPU
	}
	return nil
}

// floorCreateWithRoles measures CreateOrder against its floors on an
// ordersd of its own that runs roles; its profile (--profile-dir) is
// cpu-create-<roles>-role(s).
func floorCreateWithRoles(ctx context.Context, cfg FloorConfig, dir, roles string) (CreatePhase, error) {
	p, err := startOrdersd(ctx, cfg, dir, roles)
	if err != nil {
		return CreatePhase{}, err
	}
	defer p.stop()
	g, err := NewGRPC(p.grpc, Auth{})
	if err != nil {
		return CreatePhase{}, err
	}
	defer g.Close()
	name := strings.ReplaceAll(roles, ",", "-")
	suffix := "-role"
	if strings.Contains(roles, ",") {
		suffix = "-roles"
	}
	var after func(context.Context) error
	if strings.Contains(roles, "query") {
		after = settled(ordersv1.NewOrderAdminServiceClient(g.conn))
	}
	return againstFloors(ctx, cfg, p, g, "create-"+name+suffix, "cpu-create-"+name+suffix, after)
}

// Health returns a target whose every op is grpc.health.v1.Health/Check on
// g's connection: the cheapest unary RPC the server has, for the gRPC
// floor. It passes the server's authentication and request guard, as
// every RPC does, but ordersd exempts it from its in-flight limit, from
// RPC metrics and tracing, and (since bed3153) from the RPC log line at
// the info level, at debug when it succeeds (probes would swamp them):
// what those cost an operation counts against it.
func (g *GRPC) Health() Target { return healthTarget{healthpb.NewHealthClient(g.conn)} }

type healthTarget struct{ c healthpb.HealthClient }

// Do counts an answer other than SERVING as a failure (the status's name):
// the floor of a server not ready is no floor, and the phase's failure
// check refuses it.
func (h healthTarget) Do(ctx context.Context, _ Op, _ *rand.Rand) string {
	res, err := h.c.Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil && res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return res.GetStatus().String()
	}
	return class(err)
}

func (healthTarget) Close() error { return nil }

// Visibility returns a target whose every op creates an order and then
// reads it with min_position set to the append's position, waiting up to
// 10 s: the time from the acknowledgement to the answer is how long the
// append took to become visible in the read model (plus one round trip).
// Run's report times each create and read together; Visibility's own
// Report times the reads alone.
func (g *GRPC) Visibility() *Visibility {
	return &Visibility{g: g, rec: newRecorder("visibility")}
}

// Visibility is the target of GRPC.Visibility.
type Visibility struct {
	g   *GRPC
	rec *recorder
}

// Do creates an order and reads it back at its position; a failed create
// is not timed as a read.
func (v *Visibility) Do(ctx context.Context, _ Op, _ *rand.Rand) string {
	rid := v.g.p.id()
	c, err := v.g.cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: rid, CustomerId: "bench", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: 999}}, ShippingAddress: benchAddress})
	if err != nil {
		return class(err)
	}
	acked := time.Now()
	_, err = v.g.q.GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: c.GetOrder().GetOrderId(),
		Consistency: &ordersv1.Consistency{MinPosition: c.GetPosition(), MaxWait: durationpb.New(10 * time.Second)}})
	v.rec.record(Get, time.Since(acked), class(err))
	return class(err)
}

// Report returns the append → visible times recorded so far, their rate
// taken over elapsed.
func (v *Visibility) Report(elapsed time.Duration) *Report { return v.rec.finish(elapsed) }

// Close does nothing: the connection is the GRPC target's.
func (*Visibility) Close() error { return nil }

// fillLog runs cfg.FillMix until the log holds cfg.Events events or
// cfg.FillTimeout passed, and returns the events the log held before:
// the fill only tops up what the earlier phases left, so that share of
// the log is not of its mix.
func fillLog(ctx context.Context, cfg FloorConfig, orders *rawbench.Log, g *GRPC) (before uint64, err error) {
	deadline := time.Now().Add(cfg.FillTimeout)
	before, _, err = orders.Size(ctx)
	if err != nil {
		return 0, err
	}
	if before >= uint64(cfg.Events) {
		cfg.say("no fill: the earlier phases left %d events, --events is %d", before, cfg.Events)
		return before, nil
	}
	for n := before; n < uint64(cfg.Events); {
		if time.Now().After(deadline) {
			cfg.say("fill stopped at %d events after %s (--fill-timeout)", n, cfg.FillTimeout)
			return before, nil
		}
		cfg.say("filling the log: %d of %d events", n, cfg.Events)
		// A command appends about one event: a short chunk overshoots
		// little.
		chunk := time.Duration(float64(uint64(cfg.Events)-n)/5000*float64(time.Second)) + 100*time.Millisecond
		if _, err := RunClosed(ctx, "fill", g, cfg.Clients, min(chunk, 10*time.Second, time.Until(deadline)+time.Millisecond), cfg.FillMix, 0); err != nil {
			return 0, err
		}
		if n, _, err = orders.Size(ctx); err != nil {
			return 0, err
		}
	}
	return before, nil
}

// settled is settle as a phase's after-step: it waits for ordersd's work
// and keeps only the error.
func settled(admin ordersv1.OrderAdminServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := settle(ctx, admin)
		return err
	}
}

// settle waits until the work a phase left behind is done: the log has
// stopped growing (the payments manager has settled the orders placed)
// and the projection has applied all of it. A latency phase measured on
// top of the previous phase's backlog would measure that backlog. It
// returns the log's head it settled at.
func settle(ctx context.Context, admin ordersv1.OrderAdminServiceClient) (uint64, error) {
	const quiet = 250 * time.Millisecond
	deadline := time.Now().Add(5 * time.Minute)
	var last uint64
	for {
		st, err := admin.GetProjectionStatus(ctx, &ordersv1.GetProjectionStatusRequest{})
		if err != nil {
			return 0, err
		}
		if st.GetHead() == last && st.GetPosition() >= st.GetHead() {
			return last, nil
		}
		last = st.GetHead()
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("ordersd still busy after 5 minutes: projection at %d, log at %d", st.GetPosition(), st.GetHead())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(quiet):
		}
	}
}

// rebuild runs RebuildReadModel to its swap and returns events per second.
func rebuild(ctx context.Context, admin ordersv1.OrderAdminServiceClient, n uint64) (float64, error) {
	t0 := time.Now()
	s, err := admin.RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	if err != nil {
		return 0, err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return 0, fmt.Errorf("rebuild: %w", err)
		}
		if m.GetSwapped() {
			return float64(n) / time.Since(t0).Seconds(), nil
		}
	}
}

// readModelSize returns the orders in the live read model of a stopped
// ordersd and the bytes its files take.
func readModelSize(dir string) (orders, size int64, err error) {
	b, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	name := "orders.db"
	if err == nil {
		name = strings.TrimSpace(string(b))
	}
	path := filepath.Join(dir, name)
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(path + suffix); err == nil {
			size += fi.Size()
		}
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	err = db.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&orders)
	return orders, size, err
}

// ordersd is one ordersd child process.
type ordersd struct {
	cmd *exec.Cmd
	// pid is ordersd's process, whose CPU time the phases measure; 0 when
	// it is not a process of its own (then only the load generator's is).
	pid                     int
	grpc, http, nats, debug string
	startup                 time.Duration
	done                    chan struct{}
	once                    sync.Once
}

// freePorts returns n distinct free loopback addresses. Another process
// could take one before ordersd binds it; ordersd then fails to start and
// says so.
func freePorts(n int) ([]string, error) {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// startOrdersd starts cfg.Ordersd with roles on dir and waits until
// /readyz answers 200; startup is the time from exec to that answer.
func startOrdersd(ctx context.Context, cfg FloorConfig, dir, roles string) (*ordersd, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	addrs, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	p := &ordersd{grpc: addrs[0], http: addrs[1], nats: addrs[2], debug: addrs[3], done: make(chan struct{})}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "DATA_DIR=" + filepath.Join(dir, "data"),
		"GRPC_ADDR=" + p.grpc, "HTTP_ADDR=" + p.http, "NATS_LISTEN=" + p.nats, "ROLES=" + roles, "LOG_LEVEL=warn"}
	if cfg.ProfileDir != "" {
		env = append(env, "DEBUG_ADDR="+p.debug)
	}
	// The Go runtime's own settings (GOMEMLIMIT, GOGC, GOMAXPROCS) pass
	// through, so they can be compared.
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GO") {
			env = append(env, kv)
		}
	}
	env = append(env, cfg.Env...)
	logf, err := os.Create(filepath.Join(dir, "ordersd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	p.cmd = exec.Command(cfg.Ordersd)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	t0 := time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Ordersd, err)
	}
	p.pid = p.cmd.Process.Pid
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	c := &http.Client{Timeout: time.Second}
	for {
		res, err := c.Get("http://" + p.http + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				p.startup = time.Since(t0)
				cfg.say("ordersd (ROLES=%s) ready in %s", roles, p.startup.Round(time.Millisecond))
				return p, nil
			}
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("ordersd exited before it was ready: %s", lastLines(string(b), 10))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if time.Since(t0) > 2*time.Minute {
			p.stop()
			return nil, errors.New("ordersd not ready after 2 minutes")
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// stop sends SIGTERM and waits for the exit, killing the process if it
// does not drain within 30 s.
func (p *ordersd) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// rss returns the process's resident set and its peak, from /proc (0 where
// there is none).
func (p *ordersd) rss() (rss, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, 0
	}
	return procKB(b, "VmRSS"), procKB(b, "VmHWM")
}

// profile starts a CPU profile of ordersd for a phase of d when
// cfg.ProfileDir is set; the returned function waits for it to be saved.
func (p *ordersd) profile(cfg FloorConfig, name string, d time.Duration) func() {
	if cfg.ProfileDir == "" {
		return func() {}
	}
	secs := max(1, int(d.Seconds())-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.save(cfg, name, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
	}()
	return func() { <-done }
}

// heapProfile saves a heap profile when cfg.ProfileDir is set.
func (p *ordersd) heapProfile(cfg FloorConfig, name string) {
	if cfg.ProfileDir != "" {
		p.save(cfg, name, "/debug/pprof/heap?gc=1")
	}
}

func (p *ordersd) save(cfg FloorConfig, name, path string) {
	res, err := http.Get("http://" + p.debug + path)
	if err != nil {
		cfg.say("profile %s: %v (an ordersd without DEBUG_ADDR?)", name, err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		cfg.say("profile %s: HTTP %d", name, res.StatusCode)
		return
	}
	out := filepath.Join(cfg.ProfileDir, name+".pprof")
	f, err := os.Create(out)
	if err != nil {
		cfg.say("profile %s: %v", name, err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, res.Body); err != nil {
		cfg.say("profile %s: %v", name, err)
	}
}

// logMakeup says what the rebuilt log holds: the fill tops up to
// --events what the earlier phases appended, so its mix is only that of
// its own share.
func (r *FloorReport) logMakeup() string {
	var s string
	switch {
	case r.FillEvents == 0 && r.EarlierEvents == 0:
		s = fmt.Sprintf("topped up with %s, its share not recorded", r.FillMix)
	case r.FillEvents == 0:
		s = fmt.Sprintf("all from the earlier phases; the fill with %s added none", r.FillMix)
	case r.EarlierEvents == 0:
		s = fmt.Sprintf("all added by the fill with %s", r.FillMix)
	default:
		s = fmt.Sprintf("%d added by the fill with %s, %d by the earlier phases", r.FillEvents, r.FillMix, r.EarlierEvents)
	}
	if r.Orders > 0 && r.Events > 0 {
		s += fmt.Sprintf("; %.2f orders per event", float64(r.Orders)/float64(r.Events))
	}
	return s
}

// Markdown renders the report as a section of BENCHMARKS.md: a heading
// with the date, the machine and the builds, the command that repeats the
// run, and the table (String).
func (r *FloorReport) Markdown() string {
	start := r.Machine.Started.UTC()
	return fmt.Sprintf("#### %s %s UTC, ordersd %s\n\n%s.\n\n```sh\n%s\n```\n\n%s",
		start.Format(time.DateOnly), start.Format("15:04"), r.Machine.Ordersd.shortRevision(), r.Machine, r.Command, r)
}

// mib is n bytes in MiB.
func mib(n int64) float64 { return float64(n) / (1 << 20) }

// String renders the report as the table of measures, each ratio taken
// from this one run.
func (r *FloorReport) String() string {
	var b strings.Builder
	row := func(measure, value, ratio string, cpu CPUPer) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", measure, value, ratio, cpu)
	}
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	rounds := ""
	if r.Rounds > 1 {
		rounds = fmt.Sprintf("; CreateOrder and GetOrder in %d rounds interleaved with their floors", r.Rounds)
	}
	fmt.Fprintf(&b, "| measure (%d clients, closed loop unless said%s) | value | ratio | CPU per request: ordersd + load generator |\n|---|---|---|---|\n", r.Clients, rounds)
	all, cmd := r.Create, r.CmdCreate
	row("gRPC floor: grpc.health.v1.Health/Check", fmt.Sprintf("%.0f/s", all.GRPCFloor), "(reference)", all.GRPCFloorCPU)
	row("JetStream floor: publish expecting subject sequence 0, new subjects", fmt.Sprintf("%.0f/s", all.JetStreamFloor), "(reference)", all.JetStreamFloorCPU)
	row("command floor: 1 / (1/gRPC + 1/JetStream)", fmt.Sprintf("%.0f/s", all.CommandFloor), "(reference)", all.commandFloorCPU())
	// With rounds, the ratio is that of the merged phases, followed by
	// the range of the rounds' own; then the floor's CPU per request over
	// the operation's (both sides): about what the ratio reaches when the
	// phases keep the cores busy.
	ratio := func(op *Report, floor float64, rounds []float64, floorCPU CPUPer) string {
		var notes []string
		if len(rounds) > 1 {
			notes = append(notes, fmt.Sprintf("rounds %.2f–%.2f", slices.Min(rounds), slices.Max(rounds)))
		}
		if c := cpuRatio(floorCPU, perRequest(op)); c > 0 {
			notes = append(notes, fmt.Sprintf("CPU %.2f", c))
		}
		out := fmt.Sprintf("%.2f", div(op.OKRate(), floor))
		if len(notes) > 0 {
			out += " (" + strings.Join(notes, "; ") + ")"
		}
		return out
	}
	// The CPU of a reference measured beside a row's operation (the raw
	// read, GetOrder's and ROLES=command's floors) goes in the row's value,
	// written into format where it was measured: the last column is the
	// operation's own.
	refCPU := func(format string, c CPUPer) string {
		if s := c.String(); s != "" {
			return fmt.Sprintf(format, s)
		}
		return ""
	}
	row("CreateOrder, all roles ÷ command floor", fmt.Sprintf("%.0f/s (p99 %.1f ms)", all.Create.OKRate(), all.Create.Overall.P99),
		ratio(all.Create, all.CommandFloor, all.Ratios, all.commandFloorCPU()), perRequest(all.Create))
	// CreateOrder on an ordersd of those roles, against its own floors.
	rolesRow := func(roles string, ph CreatePhase) {
		row("CreateOrder, ROLES="+roles+" ÷ its command floor", fmt.Sprintf("%.0f/s (p99 %.1f ms; floors %.0f/s gRPC, %.0f/s JetStream%s)", ph.Create.OKRate(), ph.Create.Overall.P99, ph.GRPCFloor, ph.JetStreamFloor, refCPU("; both %s", ph.commandFloorCPU())),
			ratio(ph.Create, ph.CommandFloor, ph.Ratios, ph.commandFloorCPU()), perRequest(ph.Create))
	}
	rolesRow("command", cmd)
	if q := r.QueryCreate; q != nil {
		rolesRow("command,query", *q)
	}
	getRow := func(measure string, ph GetPhase) {
		row(measure, fmt.Sprintf("%.0f/s (p99 %.1f ms; gRPC floor beside it %.0f/s%s)", ph.Get.OKRate(), ph.Get.Overall.P99, ph.GRPCFloor, refCPU(", %s", ph.GRPCFloorCPU)),
			ratio(ph.Get, ph.GRPCFloor, ph.Ratios, ph.GRPCFloorCPU), perRequest(ph.Get))
	}
	getRow("GetOrder ÷ gRPC floor", r.Get)
	if r.GetOnLog != nil {
		getRow(fmt.Sprintf("GetOrder on the filled log (%d events) ÷ gRPC floor", r.Events), *r.GetOnLog)
	}
	// A latency floor (latencyFloor) goes beside its phase's p99, where
	// it was measured.
	latFloor := func(f OpStats, timed string) string {
		if f.Count == 0 {
			return ""
		}
		return fmt.Sprintf("; latency floor, Health/Check at that rate%s: p99 %.1f ms", timed, f.P99)
	}
	row("mixed load (create 40, add 30, place 10, get 15, list 5) at half its peak: p99", fmt.Sprintf("%.1f ms (peak %.0f/s, open loop at %.0f/s%s)", r.MixedHalf.Overall.P99, r.MixedPeak, r.MixedHalf.Rate, latFloor(r.MixedHalfFloor, "")), "", perRequest(r.MixedHalf))
	row(fmt.Sprintf("append → visible in the read model at %.0f appends/s, from the create's answer until the read at its position returns: p99", r.LagRate), fmt.Sprintf("%.1f ms (p50 %.1f ms%s)", r.Lag.P99, r.Lag.P50, latFloor(r.LagFloor, ", each timed from its send")), "", CPUPer{})
	rawRead, rawReadCPU := "ordered-consumer read", refCPU(" (the raw read %s)", r.RawReadCPU)
	if r.RawReadBefore > 0 && r.RawReadAfter > 0 {
		rawRead = "ordered-consumer read (the faster of one before and one after the rebuild)"
		rawReadCPU = fmt.Sprintf(" (raw read %.0f/s before, %.0f/s after%s)", r.RawReadBefore, r.RawReadAfter, refCPU("; the faster %s", r.RawReadCPU))
	}
	row(fmt.Sprintf("rebuild ÷ raw %s, %d events (%s); CPU per event", rawRead, r.Events, r.logMakeup()),
		fmt.Sprintf("%.0f/s vs %.0f/s%s", r.Rebuild, r.RawRead, rawReadCPU), fmt.Sprintf("%.2f", div(r.Rebuild, r.RawRead)), r.RebuildCPU)
	row("read model bytes per order", fmt.Sprintf("%.0f B (%.1f MiB for %d orders)", div(float64(r.ReadModelBytes), float64(r.Orders)), mib(r.ReadModelBytes), r.Orders), "", CPUPer{})
	restarted := ""
	if r.RestartRSSBytes > 0 {
		restarted = fmt.Sprintf("; %.0f MiB when ready again after a restart", mib(r.RestartRSSBytes))
	}
	row(fmt.Sprintf("ordersd RSS after %d events (embedded NATS)", r.Events), fmt.Sprintf("%.0f MiB (peak %.0f MiB by then; stream %.0f MiB%s)", mib(r.RSSBytes), mib(r.PeakRSSBytes), mib(int64(r.StreamBytes)), restarted), "", CPUPer{})
	row("start-up to ready: empty, then on the log with a current checkpoint", fmt.Sprintf("%.2f s, %.2f s", r.StartEmpty, r.StartWithLog), "", CPUPer{})
	return b.String()
}
