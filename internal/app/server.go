package app

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/client"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/rpcguard"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/services/deadlines"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// maxRecvMsgSize bounds a request: an order has at most 100 lines, so
// anything near this size is garbage, and rejecting it early costs nothing.
const maxRecvMsgSize = 1 << 20

// maxHeaderListSize bounds a call's metadata, which grpc-go reads before any
// interceptor (authentication included) and by default up to 16 MiB a
// call: a token, a trace context and the few headers the gateway forwards
// take a few kilobytes.
const maxHeaderListSize = 64 << 10

// maxHTTPHeaderBytes bounds an HTTP request's headers: half the gRPC
// metadata a call may carry, which the gateway fills from them.
const maxHTTPHeaderBytes = maxHeaderListSize / 2

// readSecrets reads the files of TLS, authentication and the personal data
// master key.
func (n *node) readSecrets() error {
	var err error
	if n.serverTLS, n.ownCreds, n.clientCreds, err = transportSecurity(n.cfg, n.log); err != nil {
		return err
	}
	if err := n.authenticate(); err != nil {
		return err
	}
	return n.loadMasterKey()
}

// newServer builds the gRPC server with its stats handlers (tracing, the
// RPC metrics and log), its interceptors (the guard, authentication, the
// in-flight limits), health and reflection. The
// roles register their services on it before it serves.
func (n *node) newServer() error {
	guard, err := rpcguard.New(n.log, n.tel.Meter)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	// The guard comes first: recovered panics get their code there, and
	// undecodable requests theirs in guard.Decoded, after authentication;
	// the RPC log (a stats handler) then writes the code.
	unary := []grpc.UnaryServerInterceptor{guard.Unary}
	streams := []grpc.StreamServerInterceptor{guard.Stream}
	if n.authn != nil {
		unary = append(unary, n.authn.Unary)
		streams = append(streams, n.authn.Stream)
	}
	// After authentication: a caller without a token is told only that.
	unary = append(unary, guard.Decoded)
	limit := newLimiter(n.cfg.MaxInFlight, n.cfg.MaxStreams)
	unary = append(unary, limit.unary)
	n.rpcStreams = newRPCStreamEnder()
	streams = append(streams, limit.stream, n.rpcStreams.stream)
	srvOpts := n.baseServerOptions()
	if n.cfg.GRPCStreamWorkers > 0 {
		// Every RPC used to run on a new goroutine, whose small stack the
		// command path grows (and copies) several times per call: 9% of
		// ordersd's CPU samples at CreateOrder's peak with ROLES=command,
		// and about 4.5% of the CPU a CreateOrder costs. A worker
		// keeps the stack it grew; when all are busy (long streams, say)
		// an RPC gets its own goroutine as before, so nothing waits for
		// one (BENCHMARKS.md, "Stream workers").
		srvOpts = append(srvOpts, grpc.NumStreamWorkers(uint32(n.cfg.GRPCStreamWorkers)))
	}
	// The RPC metrics are this process's own handler; otelgrpc, whose
	// per-call work was about 6% of a CreateOrder's CPU whether or not anyone
	// traced, runs only when spans are recorded, and then without metrics
	// of its own (BENCHMARKS.md, "RPC metrics without otelgrpc").
	var prop propagation.TextMapPropagator
	if !n.tel.Tracing {
		// Nothing else extracts the caller's trace context then, and it
		// still goes into the events and the logs.
		prop = otel.GetTextMapPropagator()
	}
	if n.rpcMetrics, err = telemetry.NewRPCMetrics(n.tel.Meter, prop); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	if n.tel.Tracing {
		// Spans of methods this server does not have are named as the
		// metrics name them, not after what the client sent.
		srvOpts = append(srvOpts, grpc.StatsHandler(n.rpcMetrics.BoundedNames(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(n.tel.Tracer),
			otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()), otelgrpc.WithFilter(telemetry.Recorded)))))
	}
	n.srv = grpc.NewServer(append(srvOpts,
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		guard.ServerOption(),
		grpc.StatsHandler(n.rpcMetrics),
		// After the tracing handler, so that the line carries the call's
		// trace.
		grpc.StatsHandler(telemetry.NewRPCLog(n.log)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(streams...),
		grpc.UnknownServiceHandler(unknownMethod),
	)...)
	n.hs = health.NewServer()
	// grpc-go's health server starts SERVING; this process serves from
	// its first readiness evaluation on (startHealth), and before it a
	// probe must not take it for ready.
	n.hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(n.srv, n.hs)
	reflection.Register(n.srv)
	return nil
}

// unknownMethod answers a call of a method no service here has, as grpc-go
// does (UNIMPLEMENTED), but as a handler: grpc-go tells the stats handlers
// nothing of a call it answers itself, so the call would be neither
// logged nor counted (RPCLog, RPCMetrics' "_OTHER"). A call to a role this
// node does not run is one, and worth seeing in its logs. It passes the
// stream interceptors, authentication among them.
func unknownMethod(_ any, ss grpc.ServerStream) error {
	m, _ := grpc.Method(ss.Context())
	return status.Errorf(codes.Unimplemented, "unknown method %s", m)
}

// authenticate loads the tokens and keys clients are checked against, and
// the tokens this process's own callers present.
func (n *node) authenticate() error {
	cfg := n.cfg
	authn, err := auth.Load(auth.Config{TokensFile: cfg.AuthTokensFile, HMACSecretFile: cfg.AuthHMACSecretFile, JWKSFile: cfg.AuthJWKSFile,
		Issuer: cfg.AuthJWTIssuer, Audience: cfg.AuthJWTAudience})
	if err != nil {
		return err
	}
	n.authn = authn
	n.paymentsToken = cfg.PaymentsToken
	// Remotely, the deadlines present the payments role's token.
	n.systemToken = cfg.PaymentsToken
	switch {
	case authn != nil:
		if n.paymentsToken == "" && cfg.Has("payments") {
			if cfg.CommandAddr != "" {
				// A token made here is known only to this process's
				// own listener; the command service at COMMAND_ADDR
				// would refuse it, after the charge was made
				// (config.Validate says so too).
				return config.ErrPaymentsTokenRequired
			}
			// The payments manager calls this process's own command
			// service with a token made for it now.
			n.paymentsToken = rand.Text()
			authn.AddToken(n.paymentsToken, auth.Principal{Subject: "payments", Roles: []string{auth.Clerk}})
		}
		if cfg.Has("payments") && cfg.CommandAddr == "" {
			// The deadlines call this process's own command service:
			// they act as the system actor, with a token made for it
			// now, whatever token the payments manager presents.
			n.systemToken = rand.Text()
			authn.AddToken(n.systemToken, auth.Principal{Subject: deadlines.Actor, Roles: []string{auth.Clerk}})
		}
		if cfg.PaymentsToken != "" && cfg.Has("payments") && cfg.Has("command") && cfg.CommandAddr == "" {
			// The payments manager calls this process's own command
			// service, which checks the token as it checks every call:
			// one it refuses would fail every recording after its charge.
			if _, err := authn.Admit(n.paymentsToken, ordersv1.OrderCommandService_RecordPayment_FullMethodName); err != nil {
				return errors.New("PAYMENTS_TOKEN: the payments role calls this process's command service, which does not accept the token with the clerk role it needs to record payments")
			}
		}
	case cfg.AllowInsecure:
		n.log.Warn("authentication is off and ALLOW_INSECURE=true: every client may call every RPC")
	default:
		n.log.Info("authentication is off: serving on loopback only")
	}
	return nil
}

// transportSecurity builds the server TLS config (nil for plaintext), the
// credentials of this process's calls to its own listener and those of its
// calls to other processes. A rotated certificate that fails to load is
// logged to log.
func transportSecurity(cfg config.Config, log *slog.Logger) (srv *tls.Config, own, upstream credentials.TransportCredentials, err error) {
	logTo := tlsconfig.WithLogger(log)
	if upstream, err = UpstreamCredentials(cfg, logTo); err != nil {
		return nil, nil, nil, err
	}
	if cfg.TLSCert == "" {
		return nil, insecure.NewCredentials(), upstream, nil
	}
	if srv, err = tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA, logTo); err != nil {
		return nil, nil, nil, fmt.Errorf("TLS_CERT/TLS_KEY/TLS_CLIENT_CA: %w", err)
	}
	// Calls to this process's own listener dial 127.0.0.1, a name its
	// certificate rarely carries, and the certificate need not chain to
	// the system's roots: they trust the certificate it serves (or
	// TLS_CA), without the name.
	ot, err := tlsconfig.Own(srv, cfg.TLSCA, cfg.TLSClientCert, cfg.TLSClientKey, logTo)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("TLS_CA/TLS_CLIENT_CERT/TLS_CLIENT_KEY: %w", err)
	}
	// A certificate its own listener refuses (the server's reused, which
	// lacks the client usage; one of another CA) would fail every call of
	// the gateway, the console or the payments manager to this process,
	// on a node that reports ready.
	if cfg.TLSClientCA != "" && callsOwnListener(cfg) {
		if err := tlsconfig.ClientAccepted(srv, ot); err != nil {
			return nil, nil, nil, fmt.Errorf("TLS_CLIENT_CERT: this process presents it to its own listener, which TLS_CLIENT_CA makes refuse it: %w", err)
		}
	}
	return srv, credentials.NewTLS(ot), upstream, nil
}

// callsOwnListener reports whether a role of cfg calls a role this process
// serves itself (its address unset: this process's listener).
func callsOwnListener(cfg config.Config) bool {
	for _, r := range cfg.Roles {
		for _, up := range config.Needs(r) {
			if cfg.Addr(up) == "" {
				return true
			}
		}
	}
	return false
}

// ClientCredentials are the transport credentials of another process's
// calls to the gRPC listener of an ordersd configured as cfg (GRPC_ADDR,
// for ordersd rebuild), which serves TLS only with TLS_CERT: plaintext
// without it; else trusting the certificate in TLS_CERT or TLS_CA without
// checking the name (the listener is dialled at its address, as the
// healthcheck's probe is), presenting TLS_CLIENT_CERT and TLS_CLIENT_KEY
// when set. The error names the variables to fix.
func ClientCredentials(cfg config.Config) (credentials.TransportCredentials, error) {
	if cfg.TLSCert == "" {
		return insecure.NewCredentials(), nil
	}
	p, err := tlsconfig.Probe(cfg.TLSCA, cfg.TLSCert)
	if err != nil {
		return nil, fmt.Errorf("TLS_CA/TLS_CERT: %w", err)
	}
	if cfg.TLSClientCert != "" || cfg.TLSClientKey != "" {
		c, err := tlsconfig.Client("", cfg.TLSClientCert, cfg.TLSClientKey, "")
		if err != nil {
			return nil, fmt.Errorf("TLS_CLIENT_CERT/TLS_CLIENT_KEY: %w", err)
		}
		p.GetClientCertificate = c.GetClientCertificate
	}
	return credentials.NewTLS(p), nil
}

// UpstreamCredentials are the transport credentials of ordersd's calls to
// the gRPC services of other processes (COMMAND_ADDR, QUERY_ADDR,
// AUDIT_ADDR, PAYMENTS_ADDR): TLS when this process serves TLS (TLS_CERT)
// or any of its clients' settings is set (cfg.ClientTLS), trusting TLS_CA
// (or the system's roots), presenting TLS_CLIENT_CERT and TLS_CLIENT_KEY
// when set and expecting TLS_SERVER_NAME when set; plaintext otherwise. A
// process may so call TLS upstreams without serving TLS itself. The error
// names the variables to fix; opts are tlsconfig.Client's.
func UpstreamCredentials(cfg config.Config, opts ...tlsconfig.Option) (credentials.TransportCredentials, error) {
	if !cfg.ClientTLS() {
		return insecure.NewCredentials(), nil
	}
	ct, err := tlsconfig.Client(cfg.TLSCA, cfg.TLSClientCert, cfg.TLSClientKey, cfg.TLSServerName, opts...)
	if err != nil {
		return nil, fmt.Errorf("TLS_CA/TLS_CLIENT_CERT/TLS_CLIENT_KEY: %w", err)
	}
	return credentials.NewTLS(ct), nil
}

// baseServerOptions are what both of ordersd's gRPC servers take, the one
// that answers while it starts and the one that serves: its callers
// (gateway, console, payments) and ordersctl dial with client.Dial, whose
// pings a server must take; the process's transport security; the bound
// on a call's headers.
func (n *node) baseServerOptions() []grpc.ServerOption {
	opts := append(client.ServerKeepalive(), grpc.MaxHeaderListSize(maxHeaderListSize))
	if n.serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(n.serverTLS)))
	}
	return opts
}
