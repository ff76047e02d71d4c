// Package cli is ordersctl: a command-line client for ordersd over gRPC.
//
// Output is an aligned table for people and, with -o json, the proto3 JSON
// mapping of the response (stable lowerCamel field names) for scripts, with
// one change, the same in every command: each amount of money is an object
// {"minor": 2500, "currency": "EUR", "decimal": "25.00"}, the integer in
// minor units, its currency, and the major-unit amount the tables show.
// audit export is the exception: it writes the log's own proto3 JSON, one
// RecordedEvent a line (the REST API's /v1/events wraps each in
// {"result":{"event":…}}), amounts in minor units.
// Colours appear only when stdout is a terminal and never with NO_COLOR set.
// Progress is drawn on stderr only when stderr is a terminal and the output
// is not -o json, so it never corrupts piped or JSON output.
//
// A call answered UNAVAILABLE (the server unreachable or restarting, its
// stream electing a leader, its read model behind) is made again, with the
// same request and so the same request id, after a jittered, growing wait,
// until it is answered otherwise or its --timeout has passed (retry). A
// command that did land the first time is answered with its original result,
// never applied twice. orders watch reconnects and resumes after the last
// position it printed (follow). Other codes, admin health and the other
// streams are not retried.
//
// Exit codes: 0 success (also a followed export stopped by Ctrl-C), 1 usage
// or invalid argument (out of range too), 2 not found,
// 3 conflict (already exists, failed precondition, stale revision),
// 4 unavailable (server unreachable, deadline, read model behind,
// overloaded: resource exhausted, which is not retried),
// 5 any other error, 6 verification found a broken hash chain.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/orderstream/orderstream/internal/backoff"
	"github.com/orderstream/orderstream/internal/client"
	"github.com/orderstream/orderstream/internal/telemetry"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Exit codes, the same as those of ordersd's subcommands.
const (
	ExitOK          = client.ExitOK
	ExitUsage       = client.ExitUsage
	ExitNotFound    = client.ExitNotFound
	ExitConflict    = client.ExitConflict
	ExitUnavailable = client.ExitUnavailable
	ExitOther       = client.ExitOther
	ExitBrokenChain = client.ExitBrokenChain
)

// IO is where the CLI reads its environment and writes its output; tests
// substitute buffers.
type IO struct {
	Out, Err io.Writer
	// In is what audit decode reads; nil reads nothing.
	In     io.Reader
	Getenv func(string) string
	// IsTerminal reports whether Out is a terminal: it decides colours.
	IsTerminal bool
	// ErrIsTerminal reports whether Err is a terminal: it decides whether
	// progress bars are drawn there.
	ErrIsTerminal bool
	// TracerProvider makes the client span of each call, whose W3C trace
	// context goes with it; nil is the global provider.
	TracerProvider trace.TracerProvider
}

// errBrokenChain makes a verification with broken links exit 6.
var errBrokenChain = errors.New("hash chain broken")

// usageError marks bad flags, arguments or commands found before any call;
// it exits 1. Flag and argument errors from cobra are wrapped in it (see
// typeUsage), so no error is classified by its wording.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func asUsage(err error) error {
	if err == nil {
		return nil
	}
	var ue usageError
	if errors.As(err, &ue) {
		return err
	}
	return usageError{err.Error()}
}

// typeUsage makes every argument check in the tree return a usageError, and
// makes group commands ("orders", "audit", ...) refuse an unknown
// subcommand instead of silently printing their help. It runs after cobra's
// own help and completion commands are added, so they are covered too.
func typeUsage(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		}
	} else if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error { return asUsage(check(cmd, args)) }
	}
	for _, sub := range c.Commands() {
		typeUsage(sub)
	}
}

type app struct {
	io      IO
	addr    string
	token   string
	actor   string
	output  string
	timeout time.Duration
	tlsOn   bool
	// plainToken sends the token without TLS beyond loopback (--plaintext-token).
	plainToken bool
	caFile     string
	// serverName is the name the server's certificate must carry, when
	// it is not --addr's host (an address by IP, a tunnel).
	serverName string
	cert       string
	key        string
	conn       *grpc.ClientConn
	// trust holds the last handshake error that said the server's
	// certificate is not trusted (trustRecorder).
	trust atomic.Pointer[error]
	// madeRID is the request id ordersctl made for a command given none
	// (madeRequestID).
	madeRID string
}

// madeRequestID makes a new request id for a command given none, and keeps
// it: should the command fail without saying whether it was applied, the
// user is told it, as only a retry under it is safe.
func (a *app) madeRequestID() string {
	a.madeRID = uuid.NewString()
	return a.madeRID
}

// Run runs ordersctl with args (without the program name) and returns the
// process exit code. Errors are printed as one line on io.Err.
func Run(ctx context.Context, args []string, io IO) int {
	// Every request string comes from the arguments, and gRPC's strings
	// must be UTF-8: one that is not would fail to encode on this side,
	// reported as an internal error rather than as the usage mistake it is.
	for i, arg := range args {
		if !utf8.ValidString(arg) {
			// Not shown: it may be a token (--token=…, or the one after
			// --token), which stays out of logs that keep stderr.
			fmt.Fprintf(io.Err, "ordersctl: argument %d is not valid UTF-8\n", i+1)
			return ExitUsage
		}
	}
	a := &app{io: io}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(io.Out)
	root.SetErr(io.Err)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	typeUsage(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asUsage(err) })
	err := root.ExecuteContext(ctx)
	if a.conn != nil {
		_ = a.conn.Close()
	}
	if err == nil {
		return ExitOK
	}
	if status.Code(err) == codes.Unavailable {
		// A call that is not retried (admin health, the streams) tells
		// an untrusted certificate as the retried ones do: exit 5, not 4.
		if terr := a.untrusted(); terr != nil {
			err = terr
		}
	}
	msg, code := client.Message(err), exitCode(err)
	if a.madeRID != "" && (code == ExitUnavailable || status.Code(err) == codes.Canceled) {
		// The answer was lost, or never came: the command may have been
		// applied, and run again under a new request id it would be
		// applied again (a second order, for a create without
		// --order-id).
		msg += "; it may have been applied: to retry it safely, run it again with --request-id " + a.madeRID
	}
	fmt.Fprintln(io.Err, "ordersctl: "+msg)
	return code
}

func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, errBrokenChain):
		return ExitBrokenChain
	}
	return client.ExitCode(err)
}

func (a *app) env(key, def string) string {
	if a.io.Getenv != nil {
		if v := a.io.Getenv(key); v != "" {
			return v
		}
	}
	return def
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "ordersctl",
		Short: "Command-line client for orderstream",
		Long: `ordersctl talks gRPC to ordersd: create and change orders, query them,
read and verify their audit history, and administer the read model.

Money is entered and shown in the currency's major unit with its proper
decimals (EUR 12.50, JPY 1200); the server stores integer minor units.
With -o json every amount is {"minor": 1250, "currency": "EUR",
"decimal": "12.50"}: both, and the currency, in every command (audit export
excepted: it writes the log's proto3 JSON, amounts in minor units).

Two numbers locate a change. REVISION is the order's stream revision: the
number of events in its history (1 after create, one more per change); it is
what --expected-revision and audit at --revision take, and what audit
history's VERSION column counts. POSITION is the log position of the order's
last event in the global log of all orders; it is what --min-position and
audit export --from take.

A call answered UNAVAILABLE (the server is unreachable or restarting, the
log is electing a leader, the read model is behind --min-position) is made
again after a growing, jittered wait until it is answered otherwise or
--timeout has passed, then exits 4. Each try sends the same request with the
same request id, so a command that landed the first time is answered with
its original result, never applied twice. orders watch reconnects and
resumes where it was. Other errors are not retried, nor are admin health,
audit export, audit verify --all and admin rebuild.`,
		Example: `  ordersctl orders create --customer cust-42 --currency EUR --item BOOK-1:2:12.50 \
      --name Ada --line1 "1 Analytical Way" --city London --country GB
  ordersctl orders place 7d3f0c2a-...
  ordersctl orders list --customer cust-42 --all -o json
  ordersctl audit history 7d3f0c2a-...
  ordersctl audit verify --all`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.output != "table" && a.output != "json" {
				return usagef("--output must be table or json, not %q", a.output)
			}
			// Read here, not as the flag's default: help prints a flag's
			// default, and the token is a secret.
			if !cmd.Flags().Changed("token") {
				a.token = a.env("ORDERS_TOKEN", "")
			}
			if a.timeout <= 0 {
				return usagef("--timeout must be positive, not %v", a.timeout)
			}
			// Both go as gRPC metadata, which carries printable ASCII only:
			// refused here, every call would fail as an internal error.
			if !client.Sendable(a.actor) {
				return usagef("--actor (or ORDERS_ACTOR) must be printable ASCII, not %q", a.actor)
			}
			if !client.Sendable(a.token) {
				return usagef("--token (or ORDERS_TOKEN) must be printable ASCII")
			}
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&a.addr, "addr", a.env("ORDERS_ADDR", "127.0.0.1:50051"), "ordersd gRPC address (env ORDERS_ADDR)")
	f.StringVar(&a.token, "token", "", "bearer token sent as authorization (env ORDERS_TOKEN)")
	f.StringVar(&a.actor, "actor", a.env("ORDERS_ACTOR", ""), "who is acting, recorded in the audit log (env ORDERS_ACTOR); with authentication on, the server records the token's subject instead")
	f.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "deadline of each call, its retries on UNAVAILABLE included; how long a watch waits for the server to take it on, or tries to reconnect (exports, verifications of the whole log and rebuilds have none)")
	f.BoolVar(&a.tlsOn, "tls", false, "use TLS")
	f.StringVar(&a.caFile, "ca", "", "CA certificate to verify the server (implies --tls)")
	f.StringVar(&a.cert, "cert", "", "client certificate for mTLS, with --key (implies --tls)")
	f.StringVar(&a.key, "key", "", "client key for mTLS, with --cert (implies --tls)")
	f.StringVar(&a.serverName, "server-name", "", "name the server's certificate must carry, when it is not --addr's host (implies --tls)")
	f.BoolVar(&a.plainToken, "plaintext-token", false, "send --token without TLS to an address that is not loopback (a network you trust, or a proxy that adds TLS)")
	root.AddCommand(a.ordersCmd(), a.auditCmd(), a.adminCmd())
	root.CompletionOptions.HiddenDefaultCmd = false
	return root
}

// dial connects lazily, so --help and usage errors never need a server.
func (a *app) dial() (*grpc.ClientConn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	if err := checkAddr(a.addr); err != nil {
		return nil, usagef("--addr %q: %v", a.addr, err)
	}
	creds := insecure.NewCredentials()
	tlsOn := a.tlsOn || a.caFile != "" || a.cert != "" || a.key != "" || a.serverName != ""
	if a.token != "" && !tlsOn && !a.plainToken && !loopback(a.addr) {
		// Anyone on the way would read it, and be the token's holder
		// from then on: the server's listener may take plaintext
		// (TLS ended before it, or by mistake).
		return nil, usagef("--addr %q is not loopback and TLS is off: the token would be sent in clear; add --tls (--ca for a private CA), or --plaintext-token to send it anyway", a.addr)
	}
	if tlsOn {
		cfg, err := clientTLS(a.caFile, a.cert, a.key)
		if err != nil {
			return nil, usagef("tls: %v", err)
		}
		cfg.ServerName = a.serverName
		creds = trustRecorder{credentials.NewTLS(cfg), &a.trust}
	}
	tp := a.io.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	conn, err := client.Dial(a.addr, client.WithCredentials(creds), client.WithToken(a.token),
		client.WithTracing(tp, nil), client.WithPropagator(traceContext))
	if err != nil {
		return nil, usagef("--addr %q: %v", a.addr, err)
	}
	a.conn = conn
	return conn, nil
}

// loopback reports whether addr (checked by checkAddr) reaches this
// machine only: a loopback IP or localhost, or a unix socket.
func loopback(addr string) bool {
	if scheme, rest, ok := strings.Cut(addr, ":"); ok && resolver.Get(scheme) != nil {
		switch scheme {
		case "unix", "unix-abstract":
			return true
		case "dns", "passthrough":
			// dns:///HOST:PORT, dns://AUTHORITY/HOST:PORT
			if i := strings.LastIndex(rest, "/"); i >= 0 {
				rest = rest[i+1:]
			}
			addr = rest
		default:
			return false
		}
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAddr refuses an address gRPC would take and fail on at every call
// (answered as UNAVAILABLE, retried for the whole --timeout, exit 4), or
// read otherwise than meant: one that is not HOST:PORT, unless it names a
// gRPC resolver (dns:///HOST:PORT, unix:PATH). "http://HOST:PORT" and a
// HOST without a port (which gRPC dials at 443) are refused.
func checkAddr(addr string) error {
	if scheme, _, ok := strings.Cut(addr, ":"); ok && resolver.Get(scheme) != nil {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT, e.g. 127.0.0.1:50051")
	}
	// A service name (https) is a port gRPC dials, as config takes it
	// for the roles' upstream addresses.
	if n, err := net.LookupPort("tcp", port); err != nil || n == 0 {
		return fmt.Errorf("port %q is not a port number or a service name", port)
	}
	return nil
}

// unary makes one unary call on the server's connection within the call
// deadline, retried while it is answered UNAVAILABLE (retry), and prints
// its answer: as proto3 JSON with -o json, otherwise as text writes it.
// call must send the same request each time. Errors are the dial's, the
// call's or the printing's.
func unary[R proto.Message](a *app, cmd *cobra.Command, call func(context.Context, *grpc.ClientConn) (R, error), text func(R) error) error {
	conn, err := a.dial()
	if err != nil {
		return err
	}
	res, err := retried(a, cmd.Context(), func(ctx context.Context) (R, error) { return call(ctx, conn) })
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.printJSON(res)
	}
	return text(res)
}

// retryBackoff spaces the tries of a call answered UNAVAILABLE, and a
// watch's reconnections: at least half of a ceiling that doubles from
// 250 ms up to 2 s, so that ordersctl neither hammers a server that just
// went away nor oversleeps the end of a leader election (4-9 s) by much.
var retryBackoff = backoff.Policy{Base: 250 * time.Millisecond, Cap: 2 * time.Second, Jitter: backoff.Equal}

// retry makes call until it is answered anything but UNAVAILABLE, waiting
// retryBackoff between tries, while ctx (the call's deadline, --timeout)
// lasts; then it returns the last UNAVAILABLE. call must send the same
// request each time, request id included: a command that landed although
// its answer was lost is then answered with its original result, never
// applied twice (the system's request-id rule). Other errors are returned
// at once.
func (a *app) retry(ctx context.Context, call func(context.Context) error) error {
	for n := 1; ; n++ {
		err := call(ctx)
		if status.Code(err) != codes.Unavailable {
			return err
		}
		if terr := a.untrusted(); terr != nil {
			return terr
		}
		d := retryBackoff.Delay(n)
		a.retrying(err, d)
		if backoff.Sleep(ctx, d) != nil {
			return err
		}
	}
}

// retried makes one call under its deadline (callCtx), again while it
// answers UNAVAILABLE (retry), and returns its answer.
func retried[R any](a *app, ctx context.Context, call func(context.Context) (R, error)) (R, error) {
	ctx, cancel := a.callCtx(ctx)
	defer cancel()
	var res R
	err := a.retry(ctx, func(ctx context.Context) (err error) {
		res, err = call(ctx)
		return err
	})
	return res, err
}

// retrying tells a person watching stderr (where progress is drawn) that a
// call answered err and is tried again in d; scripts see only the outcome.
func (a *app) retrying(err error, d time.Duration) {
	if a.progressOn() {
		fmt.Fprintf(a.io.Err, "ordersctl: %s; retrying in %v\n", client.Message(err), d.Round(10*time.Millisecond))
	}
}

// callCtx adds the deadline and the actor to one call.
func (a *app) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	return a.streamCtx(ctx), cancel
}

// streamCtx adds the actor without a deadline (the token goes with every
// call of the connection), for streams that
// run as long as the user wants (until Ctrl-C).
func (a *app) streamCtx(ctx context.Context) context.Context {
	if a.actor != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-actor", a.actor)
	}
	return ctx
}

// colour wraps s in an ANSI colour only when stdout is a terminal and
// NO_COLOR is unset.
func (a *app) colour(code, s string) string {
	if !a.io.IsTerminal || a.env("NO_COLOR", "") != "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// plain is colour with the terminal's own colour: in a table column some
// of whose cells are coloured (the header, say, or a "pending" beside an
// "overdue"), every cell then carries escapes as long as the others', which
// the tab writer counts as width, and the column stays aligned.
func (a *app) plain(s string) string { return a.colour("39", s) }

// progressOn says whether to draw progress: it is drawn on stderr, so it
// depends on stderr being a terminal, and -o json never gets it (JSON users
// are scripts, and some, like rebuild, print progress as JSON instead).
func (a *app) progressOn() bool { return a.io.ErrIsTerminal && a.output != "json" }

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// traceContext is the W3C propagator ordersd reads.
var traceContext = propagation.TraceContext{}

// Main is the entry point used by cmd/ordersctl. It joins the trace named
// by TRACEPARENT (and TRACESTATE), if set, and exports its spans as ordersd
// does when OTEL_EXPORTER_OTLP_ENDPOINT is set.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A write to a closed pipe (`ordersctl audit export | head -1`) then
	// fails with EPIPE, which exits 5 with a line saying so, as the
	// commands document, instead of killing the process by SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	ctx = traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": os.Getenv("TRACEPARENT"), "tracestate": os.Getenv("TRACESTATE")})
	io := IO{Out: os.Stdout, Err: os.Stderr, In: os.Stdin, Getenv: os.Getenv, IsTerminal: isTerminal(os.Stdout), ErrIsTerminal: isTerminal(os.Stderr)}
	tel, err := telemetry.Setup(ctx, "ordersctl")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ordersctl:", err)
	} else {
		io.TracerProvider = tel.Tracer
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = tel.Shutdown(sctx) // flushes the spans of this run
		}()
	}
	return Run(ctx, os.Args[1:], io)
}
