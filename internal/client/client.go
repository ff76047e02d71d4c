// Package client connects to ordersd's gRPC API. It is what ordersctl,
// ordersd's own subcommands and ordersd's internal callers (the gateway,
// the console, the payments and deadlines managers) share: the address a
// listen address is reached at, one way of dialing (TLS, a bearer token,
// tracing), the read-model rebuild with its progress bar, and how a failed
// call reads and exits.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // registers client-side health checking (WithHealthOf)
)

// ErrInvalidOption is returned (wrapped) by Dial for an option given an
// unusable value.
var ErrInvalidOption = errors.New("client: invalid option")

// Dialable turns a listen address into one to connect to: a wildcard host
// (empty, 0.0.0.0 or ::) means this machine's loopback. An address that is
// not host:port is returned unchanged.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Option configures Dial. An option given an unusable value makes Dial
// fail with ErrInvalidOption.
type Option func(*config) error

type config struct {
	creds  credentials.TransportCredentials
	token  string
	pinned bool
	health string // WithHealthOf
	tracer trace.TracerProvider
	meter  metric.MeterProvider
	props  propagation.TextMapPropagator
}

// WithCredentials sets the transport security; without it the connection
// is plaintext.
func WithCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) error {
		if creds == nil {
			return fmt.Errorf("%w: nil credentials", ErrInvalidOption)
		}
		c.creds = creds
		return nil
	}
}

// Pinned sends every call of the connection to one of the addresses its
// name resolves to (the first reached, gRPC's pick_first), instead of
// round them: for calls whose answer is one node's (a query node's read
// model and its rebuild, a payments node's hold on a parked job while it
// retries or settles it), which calls in turn would spread over nodes.
func Pinned() Option {
	return func(c *config) error {
		c.pinned = true
		return nil
	}
}

// WithHealthOf sends calls only to the addresses whose gRPC health
// service reports service as SERVING (gRPC's client-side health
// checking): a replica that is up but not ready (a query node catching up
// with the log answers as of an older position, and "not found" for
// orders it has not applied yet) is left out of the round until it
// serves, and with none serving calls fail at once as UNAVAILABLE, which
// the connection's state (TRANSIENT_FAILURE) shows to a readiness check.
// A server without the health service counts as serving. No effect on a
// Pinned connection.
func WithHealthOf(service string) Option {
	return func(c *config) error {
		if service == "" {
			return fmt.Errorf("%w: WithHealthOf needs a service name", ErrInvalidOption)
		}
		c.health = service
		return nil
	}
}

// WithToken presents token as a bearer token on every call; an empty token
// presents none.
func WithToken(token string) Option {
	return func(c *config) error {
		c.token = token
		return nil
	}
}

// WithTracing makes every call a client span of tp and measures it with mp;
// without it, or with nil, the global providers do.
func WithTracing(tp trace.TracerProvider, mp metric.MeterProvider) Option {
	return func(c *config) error {
		c.tracer, c.meter = tp, mp
		return nil
	}
}

// WithPropagator sets how the trace context travels with a traced call;
// the default is the global propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) error {
		if p == nil {
			return fmt.Errorf("%w: nil propagator", ErrInvalidOption)
		}
		c.props = p
		return nil
	}
}

// Dial makes a connection to addr. It connects lazily: an unreachable
// server shows in the first call (UNAVAILABLE), not here. Errors are
// ErrInvalidOption or an address grpc cannot parse.
func Dial(addr string, opts ...Option) (*grpc.ClientConn, error) {
	c := config{creds: insecure.NewCredentials()}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	// Calls go round the addresses the name resolves to: several replicas
	// of a role behind one name (compose's deploy.replicas, a headless
	// service) each take a share. gRPC's default, pick_first, sent every
	// call to the first it reached; Pinned keeps it.
	// A replica that went away is dialled again at most reconnectMax
	// apart: with gRPC's default (up to 120 s, growing with the outage)
	// a caller took tens of seconds to notice that a node was back.
	dial := []grpc.DialOption{grpc.WithTransportCredentials(c.creds), grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
		MinConnectTimeout: 20 * time.Second,
	}), dialKeepalive()}
	if !c.pinned {
		sc := roundRobin
		if c.health != "" {
			b, err := json.Marshal(map[string]any{
				"loadBalancingConfig": []any{map[string]any{"round_robin": map[string]any{}}},
				"healthCheckConfig":   map[string]string{"serviceName": c.health},
			})
			if err != nil {
				return nil, err
			}
			sc = string(b)
		}
		dial = append(dial, grpc.WithDefaultServiceConfig(sc))
	}
	if c.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer(c.token)))
	}
	// Every call is a client span whose trace context is sent along, so
	// the server's spans join the caller's trace.
	var h []otelgrpc.Option
	if c.tracer != nil {
		h = append(h, otelgrpc.WithTracerProvider(c.tracer))
	}
	if c.meter != nil {
		h = append(h, otelgrpc.WithMeterProvider(c.meter))
	}
	if c.props != nil {
		h = append(h, otelgrpc.WithPropagators(c.props))
	}
	dial = append(dial, grpc.WithStatsHandler(otelgrpc.NewClientHandler(h...)))
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

// Sendable reports whether s can travel as a gRPC metadata value (a bearer
// token, an actor's name): printable ASCII, spaces included. grpc-go refuses
// any other on the caller's side, as an internal error of every call.
func Sendable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// reconnectMax is the longest wait between two attempts to reach an
// address that could not be reached.
const reconnectMax = 5 * time.Second

// roundRobin is the service config of every connection Dial makes.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// bearer is per-RPC credentials carrying a static token. It is sent over
// plaintext too: ordersd without TLS listens on loopback only (or was told
// ALLOW_INSECURE), and its own callers must authenticate there as well.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
