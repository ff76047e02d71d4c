// Package app is ordersd's composition root: it wires NATS (embedded or
// external), the event store, the gRPC services and the REST gateway, and
// shuts them down in order. It holds no business rules; it only decides
// what runs where.
//
// Run reads as its phases. nats.go connects NATS and opens the store and
// telemetry; server.go builds the gRPC server; roles.go has one register per
// role, returning its readiness checks, its health mapping, its HTTP routes
// and how to stop it; serve.go serves, keeps the health statuses current and
// shuts down.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/otelstore"
	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/natsconn"
	"github.com/orderstream/orderstream/internal/pii"
	"github.com/orderstream/orderstream/internal/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
)

// Addrs are the addresses ordersd ended up listening on, resolved when a
// configured port was 0.
type Addrs struct {
	GRPC string
	HTTP string
	NATS string // empty when joined to an external cluster
	// Debug serves net/http/pprof; empty unless DEBUG_ADDR is set.
	Debug string
}

// Option adjusts how Run sets ordersd up. As every option in this module,
// it returns an error for a value it does not accept, which Run returns.
type Option func(*runOptions) error

type runOptions struct {
	telemetry []telemetry.Option
	listening func(Addrs)
}

// WithListening calls fn once the gRPC and HTTP listeners are bound and
// HTTP serves start-up's answers (GET /healthz 200, the rest 503), before
// the phases that wait for NATS and open the read model; Addrs.NATS is
// empty then. Tests use it to reach a node that is still starting.
func WithListening(fn func(Addrs)) Option {
	return func(o *runOptions) error {
		o.listening = fn
		return nil
	}
}

// WithTelemetry passes options to telemetry.Setup; tests use it to record
// spans in memory.
func WithTelemetry(opts ...telemetry.Option) Option {
	return func(o *runOptions) error {
		o.telemetry = append(o.telemetry, opts...)
		return nil
	}
}

// Run runs ordersd until ctx is done, then drains in-flight RPCs (bounded by
// cfg.ShutdownTimeout) and closes NATS. ready, if not nil, is called once
// every listener is up. Run returns the first error that stopped it: one
// of start-up, or of a server or the projection runner that stopped on its
// own, after which Run shuts down as for ctx. It returns nil when ctx ends,
// during start-up too: a stop asked for is no failure.
//
// Start-up goes in phases, each failing with an error that names the
// variable to fix: the machine (listeners, DATA_DIR, the files of TLS,
// authentication and the master key), NATS, the event
// store, telemetry, the gRPC server, one registration per role, the HTTP
// handler; then both servers serve and the health loop runs until ctx is
// done, and shutdown undoes it all in order (see shutdown).
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(Addrs), opts ...Option) error {
	var o runOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return err
		}
	}
	n := &node{cfg: cfg, log: log, failed: newFailures(log)}
	// Whatever start-up acquired is released in reverse order, whether
	// it got as far as serving or not.
	defer n.down.run()
	// Deferred after the teardown, so it runs first: what fails while the
	// teardown stops it is logged, since Run no longer returns it.
	defer n.failed.close()
	roles, err := n.start(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			// Stopped while starting (a rollout, or a unit stopped while it
			// waited for NATS): what start-up waited for failed with the
			// stop, which is no failure of this process.
			log.Info("ordersd stopped during start-up", "err", err)
			return nil
		}
		return err
	}
	n.rpcMetrics.Recognize(n.srv.GetServiceInfo())
	probe := &readiness{checks: n.baseChecks()}
	for _, r := range roles {
		probe.checks = append(probe.checks, r.checks...)
	}
	n.routeHTTP(probe, roles)
	n.starting.handOver()
	n.serve()
	stopHealth := n.startHealth(ctx, probe, roles)
	n.down.push(stopHealth)

	log.Info("ordersd listening", "roles", strings.Join(cfg.Roles, ","), "grpc", n.addrs.GRPC, "http", n.addrs.HTTP, "nats", natsDescription(n.addrs, cfg), "data_dir", cfg.DataDir)
	if ready != nil {
		ready(n.addrs)
	}
	runErr := n.failed.wait(ctx)
	n.failed.close()
	n.shutdown(roles, stopHealth)
	if errors.Is(runErr, grpc.ErrServerStopped) {
		runErr = nil
	}
	return runErr
}

// start runs start-up's phases up to the roles' registration; what each
// acquired is on n.down.
func (n *node) start(ctx context.Context, o runOptions) ([]role, error) {
	if err := n.listen(); err != nil {
		return nil, err
	}
	// The files start-up reads, before NATS: a wrong path or a bad key is
	// told at once, not after the wait for NATS nor after streams and
	// buckets were created.
	if err := n.readSecrets(); err != nil {
		return nil, err
	}
	// Served from here on: /healthz says the process is alive through the
	// phases that may take long (the wait for NATS, a read model's
	// migration), and the rest that it is starting.
	n.startHTTP()
	// And the gRPC listener, for health checks (NOT_SERVING) and calls
	// (UNAVAILABLE), until the roles' server takes it over.
	n.starting = n.startGRPCWhileStarting()
	n.down.push(n.starting.handOver)
	if o.listening != nil {
		o.listening(n.addrs)
	}
	if err := n.connectNATS(ctx); err != nil {
		return nil, err
	}
	if err := n.openStore(ctx); err != nil {
		return nil, err
	}
	if err := n.openKeyring(ctx); err != nil {
		return nil, err
	}
	if err := n.startTelemetry(ctx, o.telemetry); err != nil {
		return nil, err
	}
	if err := n.newServer(); err != nil {
		return nil, err
	}
	return n.registerRoles(ctx)
}

// node is ordersd being put together: what each start-up phase makes and
// the later phases use.
type node struct {
	cfg   config.Config
	log   *slog.Logger
	addrs Addrs
	// down holds the releases of everything acquired so far, run in
	// reverse order when Run returns.
	down teardown

	grpcLis, httpLis net.Listener
	http             *httpFront    // serving from start-up on
	starting         *startingGRPC // serving grpcLis until the roles' server does
	nc               *nats.Conn
	js               jetstream.JetStream
	store            *eventstore.Store
	traced           *otelstore.Store
	tel              *telemetry.Telemetry
	// ring holds customers' data keys; nil in a process without the
	// command, query and audit roles, which never see personal data.
	ring *pii.Keyring
	// master is PII_MASTER_KEY_FILE's key, read before NATS; nil without
	// it (the development key is then read from the bucket).
	master *pii.MasterKey

	srv         *grpc.Server
	rpcStreams  *rpcStreamEnder       // ends srv's server streams at shutdown
	rpcMetrics  *telemetry.RPCMetrics // names the methods srv serves once the roles registered them
	hs          *health.Server
	serverTLS   *tls.Config                      // nil: plaintext
	clientCreds credentials.TransportCredentials // calls to other processes
	ownCreds    credentials.TransportCredentials // calls to this process's own listener
	authn       *auth.Authenticator              // nil: authentication is off
	// paymentsToken and systemToken are what the payments manager and
	// the deadlines present to the command service; empty means the
	// connection's own (none).
	paymentsToken, systemToken string
	conns                      map[string]*grpc.ClientConn
	// failed carries to Run what stops on its own while ordersd serves.
	failed *failures
}

// failures carries to Run the first error of whatever stops on its own
// while ordersd serves (the gRPC and HTTP servers, the projection runner),
// which ends Run with it. Once Run no longer waits for one (it is shutting
// down), an error reported is logged instead, so none is lost.
type failures struct {
	log   *slog.Logger
	first chan error // holds at most the first error
	mu    sync.Mutex
	done  bool
}

func newFailures(log *slog.Logger) *failures {
	return &failures{log: log, first: make(chan error, 1)}
}

// wait returns the first failure reported, once one is or ctx ends; nil
// if ctx ended with none. Crash-only: a server or the projection runner
// that stopped on its own is not restarted here. ordersd stops in order
// and exits non-zero, and its supervisor starts it afresh; so a failure
// already reported when the stop comes is returned too, not dropped for
// the stop, which would exit 0.
func (f *failures) wait(ctx context.Context) error {
	select {
	case err := <-f.first:
		return err
	case <-ctx.Done():
		select {
		case err := <-f.first:
			return err
		default:
			return nil
		}
	}
}

// report hands err to Run, or logs it when Run already has one or no
// longer waits.
func (f *failures) report(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		select {
		case f.first <- err:
			return
		default:
		}
	}
	f.log.Error("failed; ordersd is already stopping", "err", err)
}

// close stops handing errors to Run; one reported but not taken is logged.
func (f *failures) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return
	}
	f.done = true
	select {
	case err := <-f.first:
		f.log.Error("failed; ordersd is already stopping", "err", err)
	default:
	}
}

// teardown is a stack of releases: run pops them in reverse order of
// pushing, as deferred calls would run.
type teardown []func()

func (t *teardown) push(release func()) { *t = append(*t, release) }

func (t *teardown) run() {
	for i := len(*t) - 1; i >= 0; i-- {
		(*t)[i]()
	}
	*t = nil
}

// listen claims what depends on the machine rather than on NATS first, so a
// busy port, an unwritable directory or one another ordersd holds fails
// start-up at once, naming its variable.
func (n *node) listen() error {
	cfg := n.cfg
	if cfg.DebugAddr != "" {
		// First, so that start-up itself can be profiled.
		a, stop, err := startDebug(cfg.DebugAddr, n.log)
		if err != nil {
			return err
		}
		n.down.push(stop)
		n.addrs.Debug = a
	}
	if cfg.NATSURL == "" || cfg.Has("query") {
		if err := checkWritable(cfg.DataDir); err != nil {
			return fmt.Errorf("DATA_DIR: %w", err)
		}
		// Released late in the teardown, after the embedded server and
		// the read model have closed: a second ordersd on this directory
		// would run a nats-server of its own on the same store.
		release, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("DATA_DIR: %w", err)
		}
		n.down.push(release)
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("GRPC_ADDR: %w", err)
	}
	n.down.push(func() { _ = lis.Close() })
	n.grpcLis, n.addrs.GRPC = lis, lis.Addr().String()
	hlis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	n.down.push(func() { _ = hlis.Close() })
	n.httpLis, n.addrs.HTTP = hlis, hlis.Addr().String()
	return nil
}

// checkWritable creates dir if needed and proves a file can be written in
// it, so an unwritable DATA_DIR is reported as such rather than as whatever
// first fails to write there.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("%s cannot be written: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

func natsDescription(a Addrs, cfg config.Config) string {
	if a.NATS != "" {
		return "embedded nats://" + a.NATS
	}
	// natsconn.Redact, the one masking of credentials in NATS URLs, so
	// that this line masks every form natsconn dials (a URL without a
	// scheme, a token) as its own logs and errors do.
	return "external " + natsconn.Redact(cfg.NATSURL)
}
