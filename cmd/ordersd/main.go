// Command ordersd runs the orderstream server: the gRPC order services on an
// event log in NATS JetStream. With no NATS_URL it starts an embedded
// nats-server in DATA_DIR, so `go run ./cmd/ordersd` is the whole system.
// Configuration is environment variables; `ordersd help` lists them with
// their defaults and meanings.
//
// Subcommands talk to a running ordersd configured by the same variables:
//
//	ordersd rebuild       rebuild the read model without downtime, with progress (presenting ORDERS_TOKEN)
//	ordersd healthcheck   exit 0 if GET /healthz on HTTP_ADDR answers 200 (for container health checks)
//	ordersd healthcheck --ready   the same of GET /readyz: the node serves (for what waits on it)
//
// With TLS_CERT set, healthcheck speaks HTTPS and accepts the server's
// certificate if it chains to TLS_CERT's own certificates or to TLS_CA; it
// does not check the name, since it dials an address of this machine.
// rebuild dials GRPC_ADDR as ordersd's own clients do: with TLS_CERT set,
// over TLS trusting TLS_CA and presenting TLS_CLIENT_CERT when set.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/client"
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
		os.Exit(subcommand(ctx, cfg, os.Args[1:], os.Stderr))
	}
	log, closeLog := newLogger(cfg)
	memlimit.Apply(log, os.Getenv, nil)
	// Once the first signal has begun the graceful shutdown, a second one
	// ends the process at once, should the shutdown hang. Exited here, not
	// left to the signal's default action: in a container ordersd is
	// process 1, which the kernel does not end by a signal it does not
	// handle.
	// It writes the log lines held first, as every exit does. Notify
	// comes before stop, so that no signal falls between them.
	second := make(chan os.Signal, 1)
	context.AfterFunc(ctx, func() {
		signal.Notify(second, os.Interrupt, syscall.SIGTERM)
		stop()
		go func() {
			<-second
			// Within a second: should the hang be stderr itself (a
			// full pipe), the signal still ends the process.
			written := make(chan struct{})
			go func() { closeLog(); close(written) }()
			select {
			case <-written:
			case <-time.After(time.Second):
			}
			os.Exit(1)
		}()
	})
	err = app.Run(ctx, cfg, log, nil)
	if err != nil {
		log.Error("ordersd failed", "err", err)
	}
	closeLog()
	if err != nil {
		stop()
		os.Exit(1)
	}
}

// subcommand runs the named subcommand and returns its exit code; its
// errors go to errOut, each naming ordersd.
func subcommand(ctx context.Context, cfg config.Config, args []string, errOut io.Writer) int {
	name, args := args[0], args[1:]
	switch {
	case name == "healthcheck" && len(args) == 1 && args[0] == "--ready":
		return healthcheck(cfg, "/readyz", errOut)
	case len(args) > 0:
		fmt.Fprintf(errOut, "ordersd %s: unexpected arguments %q (only healthcheck takes one: --ready)\n", name, args)
		return 2
	}
	switch name {
	case "rebuild":
		var bar io.Writer
		if errOut == os.Stderr && term.IsTerminal(int(os.Stderr.Fd())) {
			bar = errOut
		}
		return rebuild(ctx, cfg, os.Getenv("ORDERS_TOKEN"), os.Stdout, errOut, bar)
	case "healthcheck":
		return healthcheck(cfg, "/healthz", errOut)
	default:
		fmt.Fprintf(errOut, "ordersd: unknown subcommand %q (want rebuild, healthcheck or help, or none to run the server)\n", name)
		return 2
	}
}

// healthcheck asks the HTTP listener of the ordersd configured as cfg for
// path (/healthz: the process runs; /readyz: it serves) and returns 0 when
// it answers 200, else 1, saying why on errOut.
func healthcheck(cfg config.Config, path string, errOut io.Writer) int {
	// No proxy: the probe is of this node, and HTTP_PROXY (set for a
	// container's calls out) would have a proxy answer for it when
	// HTTP_ADDR names the node by a host name.
	tr := &http.Transport{Proxy: nil}
	c := &http.Client{Timeout: 3 * time.Second, Transport: tr}
	scheme := "http"
	if cfg.TLSCert != "" {
		// The HTTP listener serves TLS with TLS_CERT and asks for no
		// client certificate; see tlsconfig.Probe for what is trusted.
		tc, err := tlsconfig.Probe(cfg.TLSCA, cfg.TLSCert)
		if err != nil {
			fmt.Fprintln(errOut, "ordersd healthcheck: TLS_CERT/TLS_CA:", err)
			return 1
		}
		tr.TLSClientConfig = tc
		scheme = "https"
	}
	res, err := c.Get(scheme + "://" + client.Dialable(cfg.HTTPAddr) + path)
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
  ordersd rebuild        rebuild the read model of a running ordersd, with progress;
                         with authentication on, ORDERS_TOKEN is an admin's token
  ordersd healthcheck    exit 0 if GET /healthz on HTTP_ADDR answers 200
  ordersd healthcheck --ready
                         exit 0 if GET /readyz answers 200: the node serves
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

// rebuild rebuilds the read model of the ordersd listening on GRPC_ADDR,
// dialing it as ordersd's own clients do (TLS_CA, TLS_CLIENT_CERT, ...) and
// presenting token, and returns the exit code ordersctl admin rebuild would.
// Progress is drawn on bar unless it is nil; the summary goes to out, errors
// to errOut.
func rebuild(ctx context.Context, cfg config.Config, token string, out, errOut, bar io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(errOut, "ordersd rebuild: "+client.Message(err))
		return client.ExitCode(err)
	}
	creds, err := app.ClientCredentials(cfg)
	if err != nil {
		fmt.Fprintln(errOut, "ordersd rebuild:", err)
		return client.ExitUsage
	}
	conn, err := client.Dial(client.Dialable(cfg.GRPCAddr), client.WithCredentials(creds), client.WithToken(token))
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	progress := client.NewProgress(bar, "rebuilding")
	last, err := client.Rebuild(ctx, conn, func(res *ordersv1.RebuildReadModelResponse) error {
		progress.Update(res.GetPosition(), res.GetTargetPosition(), res.GetEventsDone())
		return nil
	})
	progress.Done()
	if err != nil {
		return fail(err)
	}
	if last != nil {
		fmt.Fprintln(out, client.RebuildSummary(last))
	}
	return client.ExitOK
}

// newLogger writes JSON for machines, in batches of LOG_FLUSH_INTERVAL
// (telemetry.LogWriter), and text for a person at a terminal, line by
// line. The function it returns writes what is held and stops the
// batching: call it before the process exits.
func newLogger(cfg config.Config) (*slog.Logger, func()) {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: telemetry.ReadableDurations}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return slog.New(telemetry.NewLogHandler(slog.NewTextHandler(os.Stderr, opts))), func() {}
	}
	if cfg.LogFlushInterval == 0 {
		return slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(os.Stderr, opts))), func() {}
	}
	w := telemetry.NewLogWriter(os.Stderr, cfg.LogFlushInterval)
	h := telemetry.FlushOn(telemetry.NewLogHandler(slog.NewJSONHandler(w, opts)), w, slog.LevelWarn)
	return slog.New(h), func() { _ = w.Close() }
}
