package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/bucket"
	"github.com/orderstream/orderstream/eventstore/schedule"
	"github.com/orderstream/orderstream/internal/client"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/httpapi"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/audit"
	"github.com/orderstream/orderstream/services/command"
	"github.com/orderstream/orderstream/services/console"
	"github.com/orderstream/orderstream/services/deadlines"
	"github.com/orderstream/orderstream/services/payments"
	"github.com/orderstream/orderstream/services/query"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
)

// role is what registering one role adds to the process.
type role struct {
	// checks are the readiness checks the role adds to /readyz.
	checks []Check
	// services names, per gRPC service the role registered, the
	// readiness checks its health status follows; the overall status
	// ("") follows every required check, as /readyz does.
	services map[string][]string
	// routes are the HTTP handlers the role serves, by pattern.
	routes map[string]http.Handler
	// ready, if not nil, is closed once the role is ready, so the health
	// statuses change at once rather than at the next evaluation.
	ready <-chan struct{}
	// drain, if not nil, is called first at shutdown, while the servers
	// and NATS still work.
	drain func()
	// streamsEnding, if not nil, is called at shutdown once health says
	// NOT_SERVING, just before the server streams are ended.
	streamsEnding func()
	// httpShutdown, if not nil, is called when the HTTP server begins
	// shutting down.
	httpShutdown func()
	// stop, if not nil, releases what the role holds once the servers
	// have stopped and NATS has drained.
	stop func()
}

// registerRoles registers every configured role: the gRPC services, then
// the process managers, then the HTTP front ends that call them. What a
// role must stop is pushed onto the teardown as it registers, so a role
// that fails to register stops the ones before it.
func (n *node) registerRoles(ctx context.Context) ([]role, error) {
	registers := []struct {
		name     string
		register func(context.Context) (role, error)
	}{
		{"command", n.registerCommand}, {"audit", n.registerAudit}, {"query", n.registerQuery},
		{"payments", n.registerPayments}, {"gateway", n.registerGateway}, {"console", n.registerConsole},
	}
	var roles []role
	for _, r := range registers {
		if !n.cfg.Has(r.name) {
			continue
		}
		rl, err := r.register(ctx)
		if err != nil {
			return nil, err
		}
		if rl.stop != nil {
			n.down.push(rl.stop)
		}
		if rl.drain != nil {
			n.down.push(rl.drain)
		}
		roles = append(roles, rl)
	}
	return roles, nil
}

func (n *node) registerCommand(context.Context) (role, error) {
	svc, err := command.New(n.traced, n.commandOptions()...)
	if err != nil {
		return role{}, err
	}
	ordersv1.RegisterOrderCommandServiceServer(n.srv, svc)
	return role{services: map[string][]string{ordersv1.OrderCommandService_ServiceDesc.ServiceName: {"nats", "stream"}}}, nil
}

func (n *node) registerAudit(context.Context) (role, error) {
	svc, err := audit.New(n.traced, n.log, audit.WithKeyring(n.ring))
	if err != nil {
		return role{}, err
	}
	ordersv1.RegisterOrderAuditServiceServer(n.srv, svc)
	return role{services: map[string][]string{ordersv1.OrderAuditService_ServiceDesc.ServiceName: {"nats", "stream"}}}, nil
}

// registerQuery opens this node's own read model (each query node keeps
// one, fed by the same log) and starts the projection runner that feeds it.
func (n *node) registerQuery(ctx context.Context) (role, error) {
	// A read model an older build wrote is migrated as it opens, which
	// at hundreds of thousands of orders takes tens of seconds: said, so
	// that the wait is not silence.
	n.log.Info("opening the read model (one written by an older build is migrated first)")
	opened := time.Now()
	rmDir, err := projections.Open(ctx, filepath.Join(n.cfg.DataDir, "readmodel"))
	if err != nil {
		return role{}, err
	}
	n.log.Info("read model open", "took", time.Since(opened).Round(time.Millisecond))
	runner, err := projections.NewRunner(n.store, rmDir, projections.WithLogger(n.log), projections.WithTelemetry(n.tel.Tracer, n.tel.Meter), projections.WithKeyring(n.ring),
		projections.WithBulkCatchUp(n.cfg.ReadModelBulkCatchUp))
	if err != nil {
		_ = rmDir.Close()
		return role{}, err
	}
	svc, err := query.New(runner, n.log, query.WithFeed(runner.Feed()), query.WithHistory(n.traced), query.WithHead(n.traced), query.WithKeyring(n.ring))
	if err != nil {
		_ = rmDir.Close()
		return role{}, err
	}
	// ForgetCustomer is the command side's work, served here with the
	// admin service.
	forgetter, err := command.New(n.traced, n.commandOptions()...)
	if err != nil {
		_ = rmDir.Close()
		return role{}, err
	}
	admin, err := query.NewAdmin(runner, n.store, n.log, query.WithForgetter(forgetter), query.WithNode(n.nodeName()))
	if err != nil {
		_ = rmDir.Close()
		return role{}, err
	}
	proj := n.startProjection(runner)
	ordersv1.RegisterOrderQueryServiceServer(n.srv, svc)
	ordersv1.RegisterOrderAdminServiceServer(n.srv, admin)
	go func() {
		select {
		case <-runner.Ready():
			n.log.Info("read model caught up", "position", runner.Position())
		case <-ctx.Done():
		case <-proj.done: // stopped before it caught up: Run returns, maybe with ctx alive
		}
	}()
	return role{
		// Queries are served once the read model caught up with the log
		// as of start-up; until then a load balancer should prefer
		// other replicas. Rebuilds need only the log.
		services: map[string][]string{
			ordersv1.OrderQueryService_ServiceDesc.ServiceName: {"nats", "stream", "projection"},
			ordersv1.OrderAdminService_ServiceDesc.ServiceName: {"nats", "stream"},
		},
		checks: []Check{{Name: "projection", Fn: proj.check}},
		ready:  runner.Ready(),
		// The runner stops, its last commit published, before the
		// watches end, so each watch of some orders is told the
		// position the read model stopped at (Subscription.StoppedAt):
		// the position this node's feed resumes from once restarted,
		// where the watch's last change may lie far below it. Queries
		// still in flight read the model as it stopped; one waiting for
		// a position it had not reached is answered UNAVAILABLE at once
		// (projections.ErrRunnerStopped).
		streamsEnding: proj.stop,
		stop: func() {
			proj.stop()
			_ = rmDir.Close()
		},
	}, nil
}

// projection is the query role's projection runner, running. A runner
// that returns before its stop has stopped for good, on a read model it
// cannot write (a failed apply or commit: applying on would skip what was
// lost), and the node can no longer answer a read at a position past it:
// ordersd stops and exits non-zero for its supervisor to restart it, and
// until then its readiness says the projection stopped.
type projection struct {
	runner *projections.Runner
	cancel context.CancelFunc
	done   chan struct{} // closed once the runner has returned
}

// startProjection runs runner until its stop. The error it stops with goes
// to Run, which shuts down with it, or is logged if Run already is.
func (n *node) startProjection(runner *projections.Runner) *projection {
	ctx, cancel := context.WithCancel(context.Background())
	p := &projection{runner: runner, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		err := runner.Run(ctx)
		if err == nil && ctx.Err() == nil {
			// Not by Run's contract, but it no longer follows the log.
			err = errors.New("the runner returned")
		}
		if err != nil {
			n.failed.report(fmt.Errorf("projection stopped: %w", err))
		}
	}()
	return p
}

// check is the projection's readiness: caught up with the log as of
// start-up, and still following it (Runner.Following).
func (p *projection) check(context.Context) error {
	select {
	case <-p.done:
		// The cause is in the log; probes get no internal text.
		return errors.New("stopped for good (see the log); ordersd is exiting")
	default:
	}
	select {
	case <-p.runner.Ready():
	default:
		return fmt.Errorf("catching up: at %d", p.runner.Position())
	}
	if !p.runner.Following() {
		// Reads would answer from a model that no longer moves: new
		// orders not found, min_position waits UNAVAILABLE.
		return errors.New("not following the log; retrying (see the log for why)")
	}
	return nil
}

// stop stops the runner and waits for it.
func (p *projection) stop() {
	p.cancel()
	<-p.done
}

// simulatorKeyTTL is how long the payment simulator remembers a charge or
// refund key after its last use: four times the outage limit, and at least
// an hour. A job retrying a payment while the command side is down uses its
// key at every attempt, so keeps it however long that lasts. A job whose
// attempt may have moved money, retried after this (a parked job an
// operator retries later), is parked for settling by hand rather than sent
// again, as with any provider whose keys expire (payments.KeyLifetime).
// Without a TTL the simulator's records
// grew by about 700 bytes with every order placed, for as long as ordersd
// ran; with it they hold about 360 bytes a key for the keys used within the
// TTL.
func simulatorKeyTTL(outageLimit time.Duration) time.Duration {
	return max(time.Hour, 4*outageLimit)
}

// registerPayments starts the payment manager and the deadlines, which
// call the command service (by default this process's own listener) as
// any client does.
func (n *node) registerPayments(ctx context.Context) (role, error) {
	cfg := n.cfg
	sim := payments.NewSimulator(payments.SimulatorConfig{
		Latency: cfg.PaymentSimLatency, FailureRate: cfg.PaymentSimFailureRate, DeclineOver: cfg.PaymentSimDeclineOver,
		KeyTTL: simulatorKeyTTL(cfg.PaymentOutageLimit),
	})
	pmConn, err := n.dial(cfg.CommandAddr, n.paymentsToken, false, ordersv1.OrderCommandService_ServiceDesc.ServiceName)
	if err != nil {
		return role{}, err
	}
	// Replicated like the log: a parked job must outlive the loss of a
	// server as the events it stands beside do. Retried as the keys'
	// bucket is: a replicated bucket just created has no leader for a
	// moment. Only an invalid option is permanent.
	var parked *bucket.Bucket
	err = n.retryStartup(ctx, "parked payments", func(err error) bool { return errors.Is(err, bucket.ErrInvalidOption) },
		func(ctx context.Context) (err error) {
			parked, err = bucket.Open(ctx, n.js, payments.ParkedBucket,
				bucket.WithDescription(payments.ParkedDescription), bucket.WithReplicas(cfg.StreamReplicas))
			return err
		})
	if err != nil {
		return role{}, fmt.Errorf("payments: %w", err)
	}
	pm, err := payments.New(ctx, n.traced, parked, ordersv1.NewOrderCommandServiceClient(pmConn), sim,
		payments.WithWorkers(cfg.WorkerPoolSize),
		payments.WithRetry(cfg.PaymentMaxAttempts, cfg.PaymentAttemptTimeout, cfg.PaymentBackoffBase, cfg.PaymentBackoffMax),
		payments.WithAckWait(cfg.PaymentAckWait), payments.WithOutageLimit(cfg.PaymentOutageLimit),
		payments.WithLogger(n.log), payments.WithTelemetry(n.tel.Tracer, n.tel.Meter))
	if err != nil {
		return role{}, err
	}
	ordersv1.RegisterPaymentAdminServiceServer(n.srv, payments.NewAdmin(pm, n.log))
	dl, err := n.newDeadlines(ctx)
	if err != nil {
		return role{}, err
	}
	pmCtx, cancelPayments := context.WithCancel(context.Background())
	pmDone := make(chan struct{})
	go func() {
		defer close(pmDone)
		var wg sync.WaitGroup
		wg.Go(func() { _ = dl.Run(pmCtx) }) // nil by contract: it retries until stopped
		_ = pm.Run(pmCtx)                   // likewise
		wg.Wait()
	}()
	return role{
		services: map[string][]string{
			ordersv1.PaymentAdminService_ServiceDesc.ServiceName:  {"nats", "stream", "payments", "payment_gateway"},
			ordersv1.DeadlineAdminService_ServiceDesc.ServiceName: {"nats", "stream", "deadlines"},
		},
		checks: paymentChecks(pm, dl, len(cfg.Roles) == 1),
		// Stopped before the gRPC server and NATS so that outcomes being
		// recorded finish and unfinished jobs are handed back while the
		// connection still works.
		drain: func() {
			cancelPayments()
			<-pmDone
		},
	}, nil
}

// newDeadlines makes the deadlines manager, which runs with the payments
// role and calls the command service as the system actor, and registers
// its admin service.
func (n *node) newDeadlines(ctx context.Context) (*deadlines.Manager, error) {
	cfg := n.cfg
	dlConn, err := n.dial(cfg.CommandAddr, n.systemToken, false, ordersv1.OrderCommandService_ServiceDesc.ServiceName)
	if err != nil {
		return nil, err
	}
	// The manager deletes each firing once handled, so a firing it cannot
	// enforce for a while (the command side down) is kept, not expired.
	timers, err := schedule.New(n.js, deadlines.StreamName, deadlines.SubjectRoot,
		schedule.WithDescription(deadlines.StreamDescription), schedule.WithReplicas(cfg.StreamReplicas), schedule.WithFiredKept())
	if err != nil {
		return nil, fmt.Errorf("deadlines: %w", err)
	}
	dl, err := deadlines.New(ctx, n.traced, timers, ordersv1.NewOrderCommandServiceClient(dlConn),
		deadlines.WithTimeouts(cfg.PaymentTimeout, cfg.ShippingSLA),
		deadlines.WithLogger(n.log), deadlines.WithMeter(n.tel.Meter))
	if err != nil {
		return nil, err
	}
	ordersv1.RegisterDeadlineAdminServiceServer(n.srv, deadlines.NewAdmin(dl, n.log))
	return dl, nil
}

// paymentChecks are the payments role's readiness checks. The payment
// provider's health decides readiness only for a payments-only process: a
// node that also takes commands and queries stays useful while the
// provider is down, so there the circuit state is reported as advisory
// information.
func paymentChecks(pm *payments.Manager, dl *deadlines.Manager, paymentsOnly bool) []Check {
	return []Check{
		// A node that follows neither the log nor the firings schedules
		// and enforces no payment timeout or shipping SLA.
		following("deadlines", "the log and the firings", dl),
		following("payments", "the log", pm),
		{Name: "payment_gateway", Advisory: !paymentsOnly, Fn: func(context.Context) error {
			if pm.CircuitOpen() {
				return errors.New("circuit open: the provider keeps failing")
			}
			return nil
		}},
	}
}

// consumer is a process manager that follows the log through consumers
// that may fail.
type consumer interface {
	Consuming() bool
	Err() error
}

// following is the readiness check named name of c, which follows what.
// The cause of a failure is in the log; probes get no internal text.
func following(name, what string, c consumer) Check {
	return Check{Name: name, Fn: func(context.Context) error {
		switch {
		case c.Consuming():
			return nil
		case c.Err() != nil:
			return fmt.Errorf("not following %s; retrying (see the log for why)", what)
		}
		return fmt.Errorf("not following %s yet", what)
	}}
}

// upstreams are the gateway's and the console's connections to the
// services of the roles they call (this process's own listener for a role
// it runs itself, or for payments beside the command role, see
// config.Validate). They call the gRPC services over real connections, so
// REST and internal calls pass through exactly the interceptors gRPC
// clients do.
type upstreams struct {
	command, query, audit, payments *grpc.ClientConn
	// queryAdmin and paymentsAdmin reach the same roles, pinned to one
	// node each (client.Pinned): the admin services' answers are one
	// node's.
	queryAdmin, paymentsAdmin *grpc.ClientConn
}

// checks are the readiness checks of the connections to other processes
// (connections to this process's own listener are not: the other checks
// cover it). The gateway and the console cannot serve without them, so a
// load balancer should prefer another replica while one is down.
func (u upstreams) checks(cfg config.Config) []Check {
	var checks []Check
	for _, c := range []struct {
		role, addr string
		conn       *grpc.ClientConn
	}{
		{"command", cfg.CommandAddr, u.command}, {"query", cfg.QueryAddr, u.query},
		{"audit", cfg.AuditAddr, u.audit}, {"payments", cfg.PaymentsAddr, u.payments},
	} {
		if c.addr != "" {
			checks = append(checks, Check{Name: "upstream_" + c.role, Fn: httpapi.ConnReady(c.conn)})
		}
	}
	return checks
}

func (n *node) upstreams() (upstreams, error) {
	var u upstreams
	for _, c := range []struct {
		addr    string
		conn    **grpc.ClientConn
		pinned  bool
		service string // the one whose health picks the replicas
	}{
		{n.cfg.CommandAddr, &u.command, false, ordersv1.OrderCommandService_ServiceDesc.ServiceName},
		{n.cfg.QueryAddr, &u.query, false, ordersv1.OrderQueryService_ServiceDesc.ServiceName},
		{n.cfg.AuditAddr, &u.audit, false, ordersv1.OrderAuditService_ServiceDesc.ServiceName},
		{n.cfg.PaymentsAddr, &u.payments, false, ordersv1.DeadlineAdminService_ServiceDesc.ServiceName},
		{n.cfg.QueryAddr, &u.queryAdmin, true, ""}, {n.cfg.PaymentsAddr, &u.paymentsAdmin, true, ""},
	} {
		conn, err := n.dial(c.addr, "", c.pinned, c.service)
		if err != nil {
			return upstreams{}, err
		}
		*c.conn = conn
	}
	return u, nil
}

// registerGateway serves the REST API on "/".
func (n *node) registerGateway(ctx context.Context) (role, error) {
	up, err := n.upstreams()
	if err != nil {
		return role{}, err
	}
	opts := []httpapi.Option{httpapi.WithLogger(n.log),
		httpapi.WithServiceConn(ordersv1.OrderQueryService_ServiceDesc.ServiceName, up.query),
		httpapi.WithServiceConn(ordersv1.OrderAdminService_ServiceDesc.ServiceName, up.queryAdmin),
		httpapi.WithServiceConn(ordersv1.OrderAuditService_ServiceDesc.ServiceName, up.audit),
		httpapi.WithServiceConn(ordersv1.PaymentAdminService_ServiceDesc.ServiceName, up.paymentsAdmin),
		httpapi.WithServiceConn(ordersv1.DeadlineAdminService_ServiceDesc.ServiceName, up.payments)}
	if n.authn != nil {
		// Every process checks tokens with the same AUTH_* settings, so
		// the gateway's check is the services'.
		opts = append(opts, httpapi.WithAdmission(n.authn.AdmitMetadata))
	}
	gw, err := httpapi.New(ctx, up.command, opts...)
	if err != nil {
		return role{}, err
	}
	streams, err := newStreamEnder()
	if err != nil {
		return role{}, err
	}
	if n.cfg.QueryAddr == "" {
		// This node's own watches: their RPCs end as shutdown ends the
		// gRPC streams, before the HTTP server's, after the last message
		// WatchOrders sends (the position to resume from), and a REST
		// watch ends with its RPC. Ended here too, it could end before
		// that message came through.
		streaming := streams.stream
		streams.stream = func(r *http.Request) bool { return streaming(r) && !httpapi.WatchRoute(r) }
	}
	api := n.requireClientCert(gw)
	// Spans and metrics carry only bounded names: the route template once
	// the gateway has routed the request (until then, and for paths no
	// route matches, the method alone), and this listener's own address
	// rather than the client's Host header.
	rest := otelhttp.NewHandler(withoutPattern(api), "rest", otelhttp.WithTracerProvider(n.tel.Tracer), otelhttp.WithMeterProvider(n.tel.Meter),
		otelhttp.WithServerName(n.addrs.HTTP),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return spanMethod(r.Method) }))
	// Watches and the other streams last as long as their client wants,
	// each holding an RPC open: shutting down ends them rather than
	// waiting out SHUTDOWN_TIMEOUT for them.
	return role{checks: up.checks(n.cfg), routes: map[string]http.Handler{"/": streams.handler(rest)}, httpShutdown: streams.end}, nil
}

// registerConsole serves the operations console under console.Prefix. It
// calls the services over the gateway's connections, with the signed-in
// user's token: the same path into the data.
func (n *node) registerConsole(context.Context) (role, error) {
	up, err := n.upstreams()
	if err != nil {
		return role{}, err
	}
	var who console.Authenticator
	if n.authn != nil {
		who = n.authn
	}
	con, err := console.New(console.Config{Command: up.command, Query: up.query, Audit: up.audit, Payments: up.payments,
		QueryAdmin: up.queryAdmin, PaymentsAdmin: up.paymentsAdmin, Auth: who,
		TraceUIURL: n.cfg.TraceUIURL, SecureCookies: n.serverTLS != nil, Logger: n.log})
	if err != nil {
		return role{}, err
	}
	h := otelhttp.NewHandler(n.requireClientCert(con), "console", otelhttp.WithTracerProvider(n.tel.Tracer), otelhttp.WithMeterProvider(n.tel.Meter),
		otelhttp.WithServerName(n.addrs.HTTP))
	// The console's live pages keep their requests open; shutting down
	// ends them rather than waiting out SHUTDOWN_TIMEOUT. Its upstreams
	// are the gateway's: when both run, the gateway's role checks them.
	var checks []Check
	if !n.cfg.Has("gateway") {
		checks = up.checks(n.cfg)
	}
	return role{checks: checks, routes: map[string]http.Handler{console.Prefix: h}, httpShutdown: con.Shutdown}, nil
}

// requireClientCert wraps h in requireClientCert when the HTTP listener
// verifies client certificates (TLS_CLIENT_CA).
func (n *node) requireClientCert(h http.Handler) http.Handler {
	if n.serverTLS != nil && n.cfg.TLSClientCA != "" {
		return requireClientCert(h)
	}
	return h
}

// dial returns this process's connection to addr (its own gRPC listener
// when addr is empty), presenting token on every call when there is one,
// and calling only the replicas whose health reports service as serving
// (client.WithHealthOf), but on its own listener: behind one name, a node
// not ready (a query node catching up, a command node cut off from NATS)
// would otherwise take its share of the calls.
// Its own listener is dialled as it serves (TLS with TLS_CERT), another
// process as the clients' TLS settings say (UpstreamCredentials).
// Connections are shared by address and token, and closed at shutdown.
func (n *node) dial(addr, token string, pinned bool, service string) (*grpc.ClientConn, error) {
	creds := n.clientCreds
	if addr == "" {
		addr, creds = client.Dialable(n.addrs.GRPC), n.ownCreds
		pinned = false // one address: one connection serves both
		// No other replica to prefer; and a service this process does
		// not run has no health status, which would fail every call as
		// UNAVAILABLE instead of UNIMPLEMENTED (REST's 501).
		service = ""
	}
	if pinned {
		service = "" // a pinned connection keeps to its node
	}
	key := fmt.Sprint(addr, " ", token, " ", pinned, " ", service)
	if c, ok := n.conns[key]; ok {
		return c, nil
	}
	if n.conns == nil {
		n.conns = map[string]*grpc.ClientConn{}
		n.down.push(func() {
			for _, c := range n.conns {
				_ = c.Close()
			}
		})
	}
	opts := []client.Option{client.WithCredentials(creds), client.WithToken(token), client.WithTracing(n.tel.Tracer, n.tel.Meter)}
	if pinned {
		opts = append(opts, client.Pinned())
	}
	if service != "" {
		opts = append(opts, client.WithHealthOf(service))
	}
	c, err := client.Dial(addr, opts...)
	if err != nil {
		return nil, err
	}
	n.conns[key] = c
	return c, nil
}

// spanMethod is a request's method as a span name: net/http serves any
// method token a client sends, which would name a span of its own each, so
// one that is not a standard method is named "HTTP" (otelhttp's metrics
// call it "_OTHER").
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "HTTP"
}

// nodeName names this process to operators in answers that are one
// node's (a query node's read model): its host name, which tells apart
// containers, and its gRPC address, which tells apart processes of one
// host.
func (n *node) nodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return host + "/" + n.addrs.GRPC
}
