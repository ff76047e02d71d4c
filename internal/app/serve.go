package app

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/httpapi"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthInterval is how often the readiness checks are evaluated in the
// background, for /readyz and the gRPC health statuses: how stale a probe's
// answer can be, plus one evaluation (at most readyTimeout).
const healthInterval = 250 * time.Millisecond

// startingHealthInterval is how often the checks are evaluated until they
// first pass, for at most startingHealthPeriod: what start-up to ready
// takes should not be rounded up to the next healthInterval (a quarter of a
// second of a start-up of one), but a node that stays unready (NATS
// unreachable, a long catch-up) should not run its checks, each a round
// trip to NATS, a hundred times a second.
const (
	startingHealthInterval = 10 * time.Millisecond
	startingHealthPeriod   = 5 * time.Second
)

// httpFront is the HTTP server, serving from the first phase of start-up
// on: until the roles have registered, GET /healthz answers 200, GET
// /readyz 503 {"status":"starting"} and every other route 503 UNAVAILABLE
// with Retry-After. A node waiting for NATS or migrating its read model is
// alive, and an orchestrator's liveness probe that found nothing answering
// would restart it, and with it the migration, for good.
type httpFront struct {
	srv    *http.Server
	routes atomic.Pointer[http.ServeMux]
}

// ServeHTTP hands r to the routes of the moment.
func (f *httpFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.routes.Load().ServeHTTP(w, r)
}

// startingUp answers a route the roles will serve once start-up is over:
// the status JSON of every other REST error, UNAVAILABLE, which clients
// retry.
func startingUp(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"code": 14, "message": "ordersd is starting", "details": []any{}})
}

// startHTTP serves the HTTP listener with start-up's routes (see
// httpFront); routeHTTP gives it the roles' once they have registered.
// Its failure ends Run (at once if start-up is over, else when start-up
// ends).
func (n *node) startHTTP() {
	f := &httpFront{}
	starting := http.NewServeMux()
	starting.HandleFunc("GET /healthz", healthz)
	starting.Handle("GET /readyz", (&readiness{}).handler())
	starting.HandleFunc("/", startingUp)
	f.routes.Store(starting)
	srv := &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: httpErrorLog(n.log),
		// Well under the gRPC server's metadata limit (maxHeaderListSize):
		// the gateway passes common headers on as metadata, and a request
		// whose headers the gateway's own call could not carry was
		// answered 500, a fault of the server; net/http answers 431.
		// (HTTP/1.1 reads 4 KiB past it before it refuses; HTTP/2, under
		// TLS_CERT, 320 bytes: lowered for the one, it would refuse what
		// the other should take.)
		MaxHeaderBytes: maxHTTPHeaderBytes}
	if n.serverTLS != nil {
		// The HTTP listener serves TLS and, with TLS_CLIENT_CA, verifies
		// a client certificate when one is given without demanding one:
		// probes and Prometheus scrape /healthz, /readyz and /metrics
		// without; the API routes answer 401 without one
		// (requireClientCert).
		srv.TLSConfig = n.serverTLS.Clone()
		srv.TLSConfig.ClientAuth = tls.NoClientCert
		if n.cfg.TLSClientCA != "" {
			srv.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	f.srv = srv
	n.http = f
	// A start-up that fails closes it; after start-up, shutdown has
	// drained it first.
	n.down.push(func() { _ = srv.Close() })
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(n.httpLis, "", "")
		} else {
			err = srv.Serve(n.httpLis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.failed.report(err)
		}
	}()
}

// routeHTTP makes the HTTP server serve the roles' routes, the probes
// and the metrics.
func (n *node) routeHTTP(probe *readiness, roles []role) {
	mux := http.NewServeMux()
	for _, r := range roles {
		for pattern, h := range r.routes {
			mux.Handle(pattern, h)
		}
	}
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /readyz", probe.handler())
	metrics := n.tel.MetricsHandler
	if n.authn != nil {
		metrics = requireRole(n.authn, auth.Admin, metrics)
	}
	mux.Handle("GET /metrics", metrics)
	mux.Handle("/metrics", httpapi.OnlyGet()) // another method: 405, not the gateway's 404
	for _, r := range roles {
		if r.httpShutdown != nil {
			n.http.srv.RegisterOnShutdown(r.httpShutdown)
		}
	}
	n.http.routes.Store(mux)
}

// serve starts the gRPC server on its listener; its error, should it stop
// on its own, ends Run.
func (n *node) serve() {
	go func() {
		if err := n.srv.Serve(n.grpcLis); err != nil {
			n.failed.report(err)
		}
	}()
}

// startHealth makes the gRPC health statuses follow the readiness checks:
// evaluated once before the process reports ready, then periodically (and
// as soon as a role becomes ready), so a client watching them sees a NATS
// outage or a projection catching up. It returns the function that stops
// the loop.
func (n *node) startHealth(ctx context.Context, probe *readiness, roles []role) (stop func()) {
	services := map[string][]string{}
	var wake []<-chan struct{}
	for _, r := range roles {
		maps.Copy(services, r.services)
		if r.ready != nil {
			wake = append(wake, r.ready)
		}
	}
	update := func(ctx context.Context) bool {
		e := probe.refresh(ctx)
		set := func(service string, ok bool) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			n.hs.SetServingStatus(service, st)
		}
		set("", e.ready())
		for service, names := range services {
			set(service, e.ok(names...))
		}
		return e.ready()
	}
	ready := update(ctx)
	healthCtx, stopLoop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		healthLoop(healthCtx, ready, wake, func() bool { return update(healthCtx) })
	}()
	return func() {
		stopLoop()
		<-done
	}
}

// healthLoop calls update every healthInterval and as soon as each of wake
// is closed, until ctx is done; until update first reports ready (unless
// steady, when the first evaluation already did), every
// startingHealthInterval for up to startingHealthPeriod.
func healthLoop(ctx context.Context, steady bool, wake []<-chan struct{}, update func() bool) {
	interval := healthInterval
	if !steady {
		interval = startingHealthInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	starting := time.Now()
	var caughtUp <-chan struct{}
	if len(wake) > 0 {
		caughtUp = wake[0]
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-caughtUp:
			wake = wake[1:]
			caughtUp = nil
			if len(wake) > 0 {
				caughtUp = wake[0]
			}
		case <-tick.C:
		}
		if ok := update(); !steady && (ok || time.Since(starting) > startingHealthPeriod) {
			steady = true // from here on, the regular pace
			tick.Reset(healthInterval)
		}
	}
}

// shutdown stops ordersd in order: the process managers hand back their
// work while everything still serves; the health statuses turn NOT_SERVING;
// the gRPC server's streams end (UNAVAILABLE); the HTTP server stops (its
// streaming requests, REST watches and the console's live pages, end at
// once), then the gRPC server drains its
// in-flight RPCs; NATS drains. The HTTP and gRPC servers share one
// SHUTDOWN_TIMEOUT: what is still in flight when it has passed is cut. What
// remains (connections, projections, read models, telemetry, NATS itself
// and the listeners) is released by the teardown when Run returns, in
// reverse order of acquisition.
func (n *node) shutdown(roles []role, stopHealth func()) {
	httpSrv := n.http.srv
	for _, r := range roles {
		if r.drain != nil {
			r.drain()
		}
	}
	stopHealth()
	n.hs.Shutdown()
	for _, r := range roles {
		if r.streamsEnding != nil {
			r.streamsEnding()
		}
	}
	// The server streams end once health said NOT_SERVING, so a client
	// watching health saw it first; their clients go elsewhere while the
	// rest drains.
	n.rpcStreams.end()
	// One deadline for both servers: a REST request holds an RPC to the
	// gRPC server, so a timeout each would let it hold shutdown twice.
	deadline := time.Now().Add(n.cfg.ShutdownTimeout)
	hctx, hcancel := context.WithDeadline(context.Background(), deadline)
	if err := httpSrv.Shutdown(hctx); err != nil {
		// Close ends the requests still open, which ends their RPCs.
		n.log.Warn("shutdown timeout: closing open HTTP requests", "err", err)
		_ = httpSrv.Close()
	}
	hcancel()
	drained := make(chan struct{})
	go func() {
		n.srv.GracefulStop()
		close(drained)
	}()
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	select {
	case <-drained:
	case <-timeout.C:
		n.log.Warn("shutdown timeout: cancelling in-flight RPCs")
		n.srv.Stop()
		<-drained
	}
	if err := n.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		n.log.Warn("nats drain", "err", err)
	}
	n.log.Info("ordersd stopped")
}
