// Package app wires ordersd together: NATS (embedded or external), the event
// store, the gRPC services, and an orderly shutdown. It holds no business
// rules; it only decides what runs where.
package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/eventstore/otelstore"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/httpapi"
	"github.com/orderstream/orderstream/internal/natsconn"
	"github.com/orderstream/orderstream/internal/natsembed"
	"github.com/orderstream/orderstream/internal/rpcguard"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/console"
	"github.com/orderstream/orderstream/services/deadlines"
	"github.com/orderstream/orderstream/services/payments"
	"github.com/orderstream/orderstream/services/query"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
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

// Option adjusts how Run sets ordersd up.
type Option func(*runOptions)

type runOptions struct {
	telemetry []telemetry.Option
}

// healthInterval is how often the readiness checks are evaluated in the
// background, for /readyz and the gRPC health statuses: how stale a probe's
// answer can be, plus one evaluation (at most readyTimeout).
const healthInterval = 250 * time.Millisecond

// WithTelemetry passes options to telemetry.Setup; tests use it to record
// spans in memory.
func WithTelemetry(opts ...telemetry.Option) Option {
	return func(o *runOptions) { o.telemetry = append(o.telemetry, opts...) }
}

// maxRecvMsgSize bounds a request: an order has at most 100 lines, so
// anything near this size is garbage, and rejecting it early costs nothing.
const maxRecvMsgSize = 1 << 20

// Run runs ordersd until ctx is done, then drains in-flight RPCs (bounded by
// cfg.ShutdownTimeout) and closes NATS. ready, if not nil, is called once
// every listener is up. Run returns the first error that stopped it.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, ready func(Addrs), opts ...Option) error {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	var addrs Addrs
	if cfg.DebugAddr != "" {
		// First, so that start-up itself can be profiled.
		a, stop, err := startDebug(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
		addrs.Debug = a
	}
	// Everything that depends on the machine rather than on NATS is
	// checked first, so a busy port or an unwritable directory fails
	// start-up at once, naming its variable.
	if cfg.NATSURL == "" || cfg.Has("query") {
		if err := checkWritable(cfg.DataDir); err != nil {
			return fmt.Errorf("DATA_DIR: %w", err)
		}
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("GRPC_ADDR: %w", err)
	}
	defer lis.Close()
	addrs.GRPC = lis.Addr().String()
	hlis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	defer hlis.Close()
	addrs.HTTP = hlis.Addr().String()
	var ns *server.Server
	natsURL := cfg.NATSURL
	var natsOpts []nats.Option
	if natsURL == "" {
		var err error
		ns, err = natsembed.Start(natsembed.Options{
			Listen:     cfg.NATSListen,
			StoreDir:   filepath.Join(cfg.DataDir, "nats"),
			SyncAlways: cfg.NATSSync == "always",
		})
		if err != nil {
			if errors.Is(err, natsembed.ErrListen) {
				return fmt.Errorf("NATS_LISTEN: %w", err)
			}
			return fmt.Errorf("NATS_LISTEN %s, DATA_DIR %s: %w", cfg.NATSListen, cfg.DataDir, err)
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		addrs.NATS = ns.Addr().String()
		// In-process connection: no TCP hop between the services and
		// their own embedded server.
		natsOpts = append(natsOpts, nats.InProcessServer(ns))
		natsURL = ns.ClientURL()
	}
	nc, err := natsconn.Connect(natsconn.Options{
		URLs: natsURL, CredsFile: cfg.NATSCreds, NKeySeedFile: cfg.NATSNKey, User: cfg.NATSUser, Password: cfg.NATSPassword,
		CAFile: cfg.NATSCA, CertFile: cfg.NATSCert, KeyFile: cfg.NATSKey, Name: "ordersd-" + strings.Join(cfg.Roles, "-"),
	}, log, natsOpts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	wctx, wcancel := context.WithTimeout(ctx, cfg.NATSConnectTimeout)
	err = natsconn.WaitConnected(wctx, nc)
	wcancel()
	if err != nil {
		return fmt.Errorf("NATS_URL: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// A cluster that is still electing its JetStream leader leaves API
	// requests unanswered: retry with short attempts until the connect
	// timeout rather than hang on one.
	var store *eventstore.Store
	setupDeadline := time.Now().Add(cfg.NATSConnectTimeout)
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		store, err = eventstore.New(actx, js,
			eventstore.WithReplicas(cfg.StreamReplicas),
			eventstore.WithDuplicateWindow(cfg.DuplicateWindow),
		)
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || time.Now().After(setupDeadline) || ctx.Err() != nil {
			return fmt.Errorf("event store: %w", err)
		}
		log.Warn("event store not reachable yet, retrying", "err", err)
	}
	if err := store.Immutable(); err != nil {
		// The system of record must not lose events; the server would
		// not let the stream be made immutable, so an operator must act.
		log.Error("the event log is not immutable: events can be removed from it", "err", err)
	}

	tel, err := telemetry.Setup(ctx, "ordersd", o.telemetry...)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()
	if err := natsMetrics(tel, nc); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	traced, err := otelstore.Wrap(store, tel.Tracer, tel.Meter)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}

	serverTLS, clientCreds, err := transportSecurity(cfg)
	if err != nil {
		return err
	}
	limit := newLimiter(cfg.MaxInFlight, cfg.MaxStreams)
	authn, err := auth.Load(auth.Config{TokensFile: cfg.AuthTokensFile, HMACSecretFile: cfg.AuthHMACSecretFile, JWKSFile: cfg.AuthJWKSFile})
	if err != nil {
		return err
	}
	guard, err := rpcguard.New(log, tel.Meter)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	// The guard comes right after the logger, so that undecodable
	// requests and recovered panics are logged with the code they get.
	unary := []grpc.UnaryServerInterceptor{telemetry.UnaryLogger(log), guard.Unary}
	streams := []grpc.StreamServerInterceptor{telemetry.StreamLogger(log), guard.Stream}
	paymentsToken := cfg.PaymentsToken
	// Remotely, the deadlines present the payments role's token.
	systemToken := cfg.PaymentsToken
	if authn != nil {
		unary = append(unary, authn.Unary)
		streams = append(streams, authn.Stream)
		if paymentsToken == "" {
			// In one process the payments manager calls the local
			// command service with a token made for it now, and the
			// deadlines act as the system actor with another.
			paymentsToken = rand.Text()
			authn.AddToken(paymentsToken, auth.Principal{Subject: "payments", Roles: []string{auth.Clerk}})
			systemToken = rand.Text()
			authn.AddToken(systemToken, auth.Principal{Subject: deadlines.Actor, Roles: []string{auth.Clerk}})
		}
	} else if cfg.AllowInsecure {
		log.Warn("authentication is off and ALLOW_INSECURE=true: every client may call every RPC")
	} else {
		log.Info("authentication is off: serving on loopback only")
	}
	unary = append(unary, limit.unary)
	streams = append(streams, limit.stream)
	srvOpts := []grpc.ServerOption{}
	if serverTLS != nil {
		srvOpts = append(srvOpts, grpc.Creds(credentials.NewTLS(serverTLS)))
	}
	srv := grpc.NewServer(append(srvOpts,
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		guard.ServerOption(),
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tel.Tracer), otelgrpc.WithMeterProvider(tel.Meter),
			// Probes and grpcurl's reflection would each make a root
			// trace of their own, every few seconds.
			otelgrpc.WithFilter(filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection."))))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(streams...),
	)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	// serviceChecks names, per registered service, the readiness checks
	// its gRPC health status follows; the overall status ("") follows
	// every required check, as /readyz does.
	serviceChecks := map[string][]string{}
	if cfg.Has("command") {
		ordersv1.RegisterOrderCommandServiceServer(srv, command.New(traced, command.WithLogger(log)))
		serviceChecks[ordersv1.OrderCommandService_ServiceDesc.ServiceName] = []string{"nats", "stream"}
	}
	if cfg.Has("audit") {
		ordersv1.RegisterOrderAuditServiceServer(srv, audit.New(tracedStore{store, traced}, js, log))
		serviceChecks[ordersv1.OrderAuditService_ServiceDesc.ServiceName] = []string{"nats", "stream"}
	}
	var runner *projections.Runner
	if cfg.Has("query") {
		// Each query node keeps its own read model, fed by the same log.
		rmDir, err := projections.Open(ctx, filepath.Join(cfg.DataDir, "readmodel"))
		if err != nil {
			return err
		}
		defer rmDir.Close()
		runner = projections.NewRunner(js, store, rmDir, projections.WithLogger(log), projections.WithTelemetry(tel.Tracer, tel.Meter))
		runCtx, stopRunner := context.WithCancel(context.Background())
		runnerDone := make(chan error, 1)
		go func() { runnerDone <- runner.Run(runCtx) }()
		defer func() {
			stopRunner()
			if err := <-runnerDone; err != nil {
				log.Error("projection stopped", "err", err)
			}
		}()
		ordersv1.RegisterOrderQueryServiceServer(srv, query.New(runner, log, query.WithFeed(runner.Feed()), query.WithHistory(tracedStore{store, traced})))
		ordersv1.RegisterOrderAdminServiceServer(srv, query.NewAdmin(runner, store, log))
		// Queries are served once the read model caught up with the log
		// as of start-up; until then a load balancer should prefer other
		// replicas. Rebuilds need only the log.
		serviceChecks[ordersv1.OrderQueryService_ServiceDesc.ServiceName] = []string{"nats", "stream", "projection"}
		serviceChecks[ordersv1.OrderAdminService_ServiceDesc.ServiceName] = []string{"nats", "stream"}
		go func() {
			select {
			case <-runner.Ready():
				log.Info("read model caught up", "position", runner.Position())
			case <-ctx.Done():
			}
		}()
	}

	// The gateway and the payments manager call the gRPC services over
	// real connections (by default this process's own listener), so REST
	// and internal calls pass through exactly the interceptors gRPC clients
	// do.
	conns := map[string]*grpc.ClientConn{}
	dialUp := func(addr string) (*grpc.ClientConn, error) {
		if addr == "" {
			addr = loopback(addrs.GRPC)
		}
		if c, ok := conns[addr]; ok {
			return c, nil
		}
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(clientCreds),
			grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tel.Tracer), otelgrpc.WithMeterProvider(tel.Meter))))
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		conns[addr] = c
		return c, nil
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	gwConn, err := dialUp(cfg.CommandAddr)
	if err != nil {
		return err
	}
	var pmgr *payments.Manager
	stopPayments := func() {}
	if cfg.Has("payments") {
		sim := payments.NewSimulator(payments.SimulatorConfig{
			Latency: cfg.PaymentSimLatency, FailureRate: cfg.PaymentSimFailureRate, DeclineOver: cfg.PaymentSimDeclineOver,
		})
		// commandsAs is a connection to the command service whose calls
		// present token (gwConn's when there is none).
		commandsAs := func(token string) (*grpc.ClientConn, error) {
			if token == "" {
				return gwConn, nil
			}
			addr := cfg.CommandAddr
			if addr == "" {
				addr = loopback(addrs.GRPC)
			}
			c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(clientCreds), grpc.WithPerRPCCredentials(auth.Bearer(token)),
				grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tel.Tracer), otelgrpc.WithMeterProvider(tel.Meter))))
			if err != nil {
				return nil, fmt.Errorf("COMMAND_ADDR: %w", err)
			}
			conns["token:"+token] = c // closed with the others
			return c, nil
		}
		pmConn, err := commandsAs(paymentsToken)
		if err != nil {
			return err
		}
		parked, err := bucket.Open(ctx, js, payments.ParkedBucket, bucket.WithDescription(payments.ParkedDescription))
		if err != nil {
			return fmt.Errorf("payments: %w", err)
		}
		pm, err := payments.New(ctx, tracedStore{store, traced}, parked, ordersv1.NewOrderCommandServiceClient(pmConn), sim,
			payments.WithWorkers(cfg.WorkerPoolSize),
			payments.WithRetry(cfg.PaymentMaxAttempts, cfg.PaymentAttemptTimeout, cfg.PaymentBackoffBase, cfg.PaymentBackoffMax),
			payments.WithAckWait(cfg.PaymentAckWait), payments.WithOutageLimit(cfg.PaymentOutageLimit),
			payments.WithLogger(log), payments.WithTelemetry(tel.Tracer, tel.Meter))
		if err != nil {
			return err
		}
		pmgr = pm
		ordersv1.RegisterPaymentAdminServiceServer(srv, payments.NewAdmin(pm, log))
		serviceChecks[ordersv1.PaymentAdminService_ServiceDesc.ServiceName] = []string{"nats", "stream", "payments", "payment_gateway"}
		dlConn := pmConn
		if systemToken != paymentsToken {
			if dlConn, err = commandsAs(systemToken); err != nil {
				return err
			}
		}
		timers, err := schedule.New(js, deadlines.StreamName, deadlines.SubjectRoot,
			schedule.WithDescription(deadlines.StreamDescription), schedule.WithReplicas(cfg.StreamReplicas))
		if err != nil {
			return fmt.Errorf("deadlines: %w", err)
		}
		dl, err := deadlines.New(ctx, tracedStore{store, traced}, timers, ordersv1.NewOrderCommandServiceClient(dlConn),
			deadlines.WithTimeouts(cfg.PaymentTimeout, cfg.ShippingSLA),
			deadlines.WithLogger(log), deadlines.WithMeter(tel.Meter))
		if err != nil {
			return err
		}
		ordersv1.RegisterDeadlineAdminServiceServer(srv, deadlines.NewAdmin(dl, log))
		serviceChecks[ordersv1.DeadlineAdminService_ServiceDesc.ServiceName] = []string{"nats", "stream"}
		pmCtx, cancelPayments := context.WithCancel(context.Background())
		pmDone := make(chan struct{})
		go func() {
			defer close(pmDone)
			var wg sync.WaitGroup
			wg.Go(func() { _ = dl.Run(pmCtx) }) // nil by contract: it retries until stopped
			_ = pm.Run(pmCtx)                   // likewise
			wg.Wait()
		}()
		// Stopped before the gRPC server and NATS so that outcomes being
		// recorded finish and unfinished jobs are handed back while the
		// connection still works.
		stopPayments = func() {
			cancelPayments()
			<-pmDone
		}
		defer stopPayments()
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(lis) }()

	checks := []Check{
		{Name: "nats", Fn: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected: " + nc.Status().String())
			}
			// The status still says connected for a moment after the
			// server goes away, until the read loop sees the socket
			// close; a round trip answers for the server itself.
			if err := nc.FlushWithContext(ctx); err != nil {
				return errors.New("no round trip to the server")
			}
			return nil
		}},
		{Name: "stream", Fn: func(ctx context.Context) error {
			_, err := store.Head(ctx)
			return err
		}},
		// Advisory: a log that allows deletes still serves, but an operator
		// must know that history can be lost.
		{Name: "stream_immutable", Advisory: true, Fn: func(context.Context) error { return store.Immutable() }},
	}
	if pmgr != nil {
		// The payment provider's health decides readiness only for a
		// payments-only process: a node that also takes commands and
		// queries stays useful while the provider is down, so there the
		// circuit state is reported as advisory information.
		paymentsOnly := len(cfg.Roles) == 1
		checks = append(checks, Check{Name: "payments", Fn: func(context.Context) error {
			if !pmgr.Consuming() {
				// The cause is in the log; probes get no internal text.
				if pmgr.Err() != nil {
					return errors.New("not following the log; retrying (see the log for why)")
				}
				return errors.New("not following the log yet")
			}
			return nil
		}})
		checks = append(checks, Check{Name: "payment_gateway", Advisory: !paymentsOnly, Fn: func(context.Context) error {
			if pmgr.CircuitOpen() {
				return errors.New("circuit open: the provider keeps failing")
			}
			return nil
		}})
	}
	if runner != nil {
		checks = append(checks, Check{Name: "projection", Fn: func(context.Context) error {
			select {
			case <-runner.Ready():
				return nil
			default:
				return fmt.Errorf("catching up: at %d", runner.Position())
			}
		}})
	}
	queryConn, err := dialUp(cfg.QueryAddr)
	if err != nil {
		return err
	}
	auditConn, err := dialUp(cfg.AuditAddr)
	if err != nil {
		return err
	}
	if cfg.Has("gateway") {
		// A gateway whose upstream is down cannot serve its routes, so a
		// load balancer should prefer another: its connections to remote
		// services are part of this process's readiness (connections to
		// this process's own listener are not: the other checks cover it).
		for _, up := range []struct {
			role, addr string
			conn       *grpc.ClientConn
		}{{"command", cfg.CommandAddr, gwConn}, {"query", cfg.QueryAddr, queryConn}, {"audit", cfg.AuditAddr, auditConn}} {
			if up.addr != "" {
				checks = append(checks, Check{Name: "upstream_" + up.role, Fn: httpapi.ConnReady(up.conn)})
			}
		}
	}
	gw, err := httpapi.New(ctx, gwConn, httpapi.WithLogger(log),
		httpapi.WithServiceConn(ordersv1.OrderQueryService_ServiceDesc.ServiceName, queryConn),
		httpapi.WithServiceConn(ordersv1.OrderAdminService_ServiceDesc.ServiceName, queryConn),
		httpapi.WithServiceConn(ordersv1.OrderAuditService_ServiceDesc.ServiceName, auditConn))
	if err != nil {
		srv.Stop()
		return err
	}
	mux := http.NewServeMux()
	if cfg.Has("gateway") {
		api := gw
		if serverTLS != nil && cfg.TLSClientCA != "" {
			api = requireClientCert(gw)
		}
		// Spans and metrics carry only bounded names: the route template
		// once the gateway has routed the request (until then, and for
		// paths no route matches, the method alone), and this listener's
		// own address rather than the client's Host header.
		rest := otelhttp.NewHandler(withoutPattern(api), "rest", otelhttp.WithTracerProvider(tel.Tracer), otelhttp.WithMeterProvider(tel.Meter),
			otelhttp.WithServerName(addrs.HTTP),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }))
		mux.Handle("/", rest)
	}
	shutdownConsole := func() {}
	if cfg.Has("console") {
		// The console calls the services over the gateway's connections,
		// with the signed-in user's token: the same path into the data.
		var who console.Authenticator
		if authn != nil {
			who = authn
		}
		con, err := console.New(console.Config{Command: gwConn, Query: queryConn, Audit: auditConn, Auth: who,
			TraceUIURL: cfg.TraceUIURL, SecureCookies: serverTLS != nil, Logger: log})
		if err != nil {
			srv.Stop()
			return err
		}
		var h http.Handler = con
		if serverTLS != nil && cfg.TLSClientCA != "" {
			h = requireClientCert(con)
		}
		shutdownConsole = con.Shutdown
		mux.Handle(console.Prefix, otelhttp.NewHandler(h, "console", otelhttp.WithTracerProvider(tel.Tracer), otelhttp.WithMeterProvider(tel.Meter),
			otelhttp.WithServerName(addrs.HTTP)))
	}
	mux.HandleFunc("GET /healthz", healthz)
	probe := &readiness{checks: checks}
	mux.Handle("GET /readyz", probe.handler())
	metrics := tel.MetricsHandler
	if authn != nil {
		metrics = requireRole(authn, auth.Admin, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	// The console's live pages keep their requests open; shutting down
	// ends them rather than waiting out SHUTDOWN_TIMEOUT.
	httpSrv.RegisterOnShutdown(shutdownConsole)
	go func() {
		serve := func() error { return httpSrv.Serve(hlis) }
		if serverTLS != nil {
			// The HTTP listener serves TLS and, with TLS_CLIENT_CA,
			// verifies a client certificate when one is given without
			// demanding one: probes and Prometheus scrape /healthz,
			// /readyz and /metrics without; the API routes answer 401
			// without one (requireClientCert).
			httpSrv.TLSConfig = serverTLS.Clone()
			httpSrv.TLSConfig.ClientAuth = tls.NoClientCert
			if cfg.TLSClientCA != "" {
				httpSrv.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
			}
			serve = func() error { return httpSrv.ServeTLS(hlis, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()

	// The gRPC health statuses follow the readiness checks: evaluated
	// once before the process reports ready, then periodically, so a
	// client watching them sees a NATS outage or a projection catching up.
	updateHealth := func(ctx context.Context) {
		e := probe.refresh(ctx)
		set := func(service string, ok bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus(service, st)
		}
		set("", e.ready())
		for service, names := range serviceChecks {
			set(service, e.ok(names...))
		}
	}
	updateHealth(ctx)
	healthCtx, stopHealthLoop := context.WithCancel(context.Background())
	healthDone := make(chan struct{})
	go func() {
		defer close(healthDone)
		tick := time.NewTicker(healthInterval)
		defer tick.Stop()
		var caughtUp <-chan struct{}
		if runner != nil {
			caughtUp = runner.Ready()
		}
		for {
			select {
			case <-healthCtx.Done():
				return
			case <-caughtUp:
				caughtUp = nil
			case <-tick.C:
			}
			updateHealth(healthCtx)
		}
	}()
	stopHealth := func() {
		stopHealthLoop()
		<-healthDone
	}
	defer stopHealth()

	log.Info("ordersd listening", "roles", strings.Join(cfg.Roles, ","), "grpc", addrs.GRPC, "http", addrs.HTTP, "nats", natsDescription(addrs, cfg), "data_dir", cfg.DataDir)
	if ready != nil {
		ready(addrs)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-serveErr:
	}
	stopPayments()
	stopHealth()
	hs.Shutdown()
	hctx, hcancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	if err := httpSrv.Shutdown(hctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	hcancel()
	drained := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(cfg.ShutdownTimeout):
		log.Warn("shutdown timeout: cancelling in-flight RPCs")
		srv.Stop()
		<-drained
	}
	if err := nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		log.Warn("nats drain", "err", err)
	}
	log.Info("ordersd stopped")
	if errors.Is(runErr, grpc.ErrServerStopped) {
		runErr = nil
	}
	return runErr
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
	return "external " + redact(cfg.NATSURL)
}

// redact drops credentials from URLs before they reach a log line.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// natsMetrics exports the NATS connection's state: whether it is
// connected, and how often it reconnected.
func natsMetrics(tel *telemetry.Telemetry, nc *nats.Conn) error {
	m := tel.Meter.Meter("github.com/orderstream/orderstream/internal/app")
	up, err := m.Int64ObservableGauge("orders.nats.connected", metric.WithDescription("1 while connected to NATS, else 0."))
	if err != nil {
		return err
	}
	reconnects, err := m.Int64ObservableCounter("orders.nats.reconnects", metric.WithDescription("Reconnections to NATS."))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		v := int64(0)
		if nc.IsConnected() {
			v = 1
		}
		o.ObserveInt64(up, v)
		o.ObserveInt64(reconnects, int64(nc.Stats().Reconnects))
		return nil
	}, up, reconnects)
	return err
}

// transportSecurity builds the server TLS config (nil for plaintext) and the
// credentials of this process's own gRPC clients.
func transportSecurity(cfg config.Config) (*tls.Config, credentials.TransportCredentials, error) {
	if cfg.TLSCert == "" {
		return nil, insecure.NewCredentials(), nil
	}
	st, err := tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS_CERT/TLS_KEY/TLS_CLIENT_CA: %w", err)
	}
	ct, err := tlsconfig.Client(cfg.TLSCA, cfg.TLSClientCert, cfg.TLSClientKey, cfg.TLSServerName)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS_CA/TLS_CLIENT_CERT/TLS_CLIENT_KEY: %w", err)
	}
	return st, credentials.NewTLS(ct), nil
}

// loopback turns a listen address into one this process can dial.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
