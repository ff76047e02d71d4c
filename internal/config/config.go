// Package config reads ordersd's configuration from environment variables
// into one struct. Every variable has a default that runs locally; a bad
// value is an error naming the variable, so start-up fails loudly rather than
// running with a surprise.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config is the whole configuration of ordersd.
type Config struct {
	// NATSURL joins an external NATS cluster (comma-separated URLs). Empty
	// starts an embedded nats-server with JetStream in DataDir.
	NATSURL string `env:"NATS_URL"`
	// DataDir holds the embedded server's store and the read models.
	DataDir string `env:"DATA_DIR" envDefault:"./data"`
	// GRPCAddr is the gRPC listen address.
	GRPCAddr string `env:"GRPC_ADDR" envDefault:"127.0.0.1:50051"`
	// HTTPAddr serves REST, /openapi.json, /metrics, /healthz and /readyz.
	HTTPAddr string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	// NATSListen is the embedded server's client address, so the nats CLI
	// can look in. Port 0 picks a free port.
	NATSListen string `env:"NATS_LISTEN" envDefault:"127.0.0.1:4222"`
	// NATSSync is the embedded server's fsync policy: "interval" (the
	// server's periodic sync; survives a process crash) or "always" (fsync
	// every write; survives power loss too, at a cost per write).
	NATSSync string `env:"NATS_SYNC" envDefault:"interval"`
	// StreamReplicas is the ORDERS stream's replica count (1 embedded, 3 in
	// a cluster).
	StreamReplicas int `env:"STREAM_REPLICAS" envDefault:"1"`
	// DuplicateWindow is how long the server remembers request ids; a
	// retried CreateOrder without an order id is recognised within it.
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW" envDefault:"2m"`
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	// ShutdownTimeout bounds draining in-flight RPCs on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s"`
}

// Load parses the process environment.
func Load() (Config, error) { return parse(env.Options{}) }

// FromMap parses the given variables only; tests use it to stay independent
// of the process environment.
func FromMap(vars map[string]string) (Config, error) {
	return parse(env.Options{Environment: vars})
}

func parse(opts env.Options) (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, opts); err != nil {
		return Config{}, nameVariables(err)
	}
	return c, c.Validate()
}

// Validate checks values the parser cannot; each error names its variable.
func (c Config) Validate() error {
	var errs []error
	if c.NATSSync != "interval" && c.NATSSync != "always" {
		errs = append(errs, fmt.Errorf("NATS_SYNC: %q is not interval or always", c.NATSSync))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("STREAM_REPLICAS: %d is not between 1 and 5", c.StreamReplicas))
	}
	if c.DuplicateWindow < time.Second {
		errs = append(errs, fmt.Errorf("DUPLICATE_WINDOW: %s is shorter than 1s", c.DuplicateWindow))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("SHUTDOWN_TIMEOUT: must be positive"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DATA_DIR: must not be empty"))
	}
	for name, addr := range map[string]string{"GRPC_ADDR": c.GRPCAddr, "HTTP_ADDR": c.HTTPAddr, "NATS_LISTEN": c.NATSListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", name, addr))
		}
	}
	return errors.Join(errs...)
}

// nameVariables rewrites the parser's field names into variable names, the
// names an operator actually typed.
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeFor[Config]()
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
				out = append(out, fmt.Errorf("%s: invalid %s: %v", name, pe.Type, pe.Err))
				continue
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}
