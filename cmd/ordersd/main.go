// Command ordersd runs the orderstream server: the gRPC order services on an
// event log in NATS JetStream. With no NATS_URL it starts an embedded
// nats-server in DATA_DIR, so `go run ./cmd/ordersd` is the whole system.
// Configuration is environment variables; `ordersd help` lists them with
// their defaults and meanings.
//
// Subcommands talk to a running ordersd configured by the same variables:
//
//	ordersd rebuild       rebuild the read model without downtime, with progress
//	ordersd healthcheck   exit 0 if GET /healthz on HTTP_ADDR answers 200 (for container health checks)
//
// With TLS_CERT set, healthcheck speaks HTTPS and accepts the server's
// certificate if it chains to TLS_CERT's own certificates or to TLS_CA; it
// does not check the name, since it dials an address of this machine.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/cli"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/memlimit"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"golang.org/x/term"
)

func main() {
	if len(os.Args) > 1 && isHelp(os.Args[1]) {
		if err := usage(os.Stdout); err != nil {
			os.Exit(1)
		}
		return
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ordersd: configuration:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 {
		os.Exit(subcommand(ctx, cfg, os.Args[1], os.Stderr))
	}
	log := newLogger(cfg)
	memlimit.Apply(log, os.Getenv, nil)
	if err := app.Run(ctx, cfg, log, nil); err != nil {
		log.Error("ordersd failed", "err", err)
		stop()
		os.Exit(1)
	}
}

// subcommand runs the named subcommand and returns its exit code; its
// errors go to errOut, each naming ordersd.
func subcommand(ctx context.Context, cfg config.Config, name string, errOut io.Writer) int {
	switch name {
	case "rebuild":
		errTTY := errOut == os.Stderr && term.IsTerminal(int(os.Stderr.Fd()))
		return cli.Run(ctx, []string{"admin", "rebuild", "--addr", dialable(cfg.GRPCAddr)},
			cli.IO{Name: "ordersd rebuild", Out: os.Stdout, Err: errOut, Getenv: os.Getenv,
				IsTerminal: term.IsTerminal(int(os.Stdout.Fd())), ErrIsTerminal: errTTY})
	case "healthcheck":
		c := &http.Client{Timeout: 3 * time.Second}
		scheme := "http"
		if cfg.TLSCert != "" {
			// The HTTP listener serves TLS with TLS_CERT and asks for no
			// client certificate; see tlsconfig.Probe for what is trusted.
			tc, err := tlsconfig.Probe(cfg.TLSCA, cfg.TLSCert)
			if err != nil {
				fmt.Fprintln(errOut, "ordersd healthcheck: TLS_CERT/TLS_CA:", err)
				return 1
			}
			c.Transport = &http.Transport{TLSClientConfig: tc}
			scheme = "https"
		}
		res, err := c.Get(scheme + "://" + dialable(cfg.HTTPAddr) + "/healthz")
		if err != nil {
			fmt.Fprintln(errOut, "ordersd healthcheck:", err)
			return 1
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			fmt.Fprintln(errOut, "ordersd healthcheck: status", res.StatusCode)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(errOut, "ordersd: unknown subcommand %q (want rebuild, healthcheck or help, or none to run the server)\n", name)
		return 2
	}
}

func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "--help" || arg == "-help"
}

// usage prints the subcommands and every environment variable with its
// default and meaning, taken from the configuration's struct tags.
func usage(w io.Writer) error {
	_, err := fmt.Fprint(w, `ordersd runs the orderstream server: gRPC order services and REST on an event
log in NATS JetStream. Without NATS_URL it starts an embedded NATS server.

Usage:
  ordersd                run the server until SIGINT or SIGTERM
  ordersd rebuild        rebuild the read model of a running ordersd, with progress
  ordersd healthcheck    exit 0 if GET /healthz on HTTP_ADDR answers 200
  ordersd help           print this help (also -h, --help)

Environment variables (name, default, meaning):
`)
	if err != nil {
		return err
	}
	if err := config.WriteUsage(w); err != nil {
		return err
	}
	_, err = fmt.Fprint(w, `
OpenTelemetry's standard OTEL_* variables configure tracing export
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME, ...).
`)
	return err
}

// dialable turns a listen address into one to connect to: a wildcard host
// means this machine.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// newLogger writes JSON for machines and text for a person at a terminal.
func newLogger(cfg config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: telemetry.ReadableDurations}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, opts)
	if term.IsTerminal(int(os.Stderr.Fd())) {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(telemetry.NewLogHandler(h))
}
