// Package config reads ordersd's configuration from environment variables
// into one struct. Every variable has a default that runs locally; a bad
// value is an error naming the variable, so start-up fails loudly rather than
// running with a surprise.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"
	"google.golang.org/grpc/resolver"
)

// MaxPaymentAckWait is the longest PAYMENT_ACK_WAIT: the payments
// manager's own bound (payments.MaxAckWait), a retry's lease lasting 15 of
// them.
const MaxPaymentAckWait = time.Hour

// MaxDeadline is the longest PAYMENT_TIMEOUT, SHIPPING_SLA and
// PAYMENT_OUTAGE_LIMIT: the
// deadlines' own bound (deadlines.MaxTimeout), ten years, which means
// "never" without reaching 2262, past which a timer would fire at once.
const MaxDeadline = 10 * 365 * 24 * time.Hour

// Config is the whole configuration of ordersd.
type Config struct {
	// Roles are the parts this process runs: any of command, query,
	// audit, payments, gateway, console. Each can scale on its own.
	Roles []string `env:"ROLES" envSeparator:"," envDefault:"command,query,audit,payments,gateway,console" help:"the parts this process runs: any of command, query, audit, payments, gateway, console"`
	// CommandAddr, QueryAddr and AuditAddr are the gRPC addresses the
	// gateway and the console (and, for commands, the payments manager)
	// call; empty means
	// this process's own GRPC_ADDR, allowed only when this process runs
	// that role itself (see Needs).
	CommandAddr string `env:"COMMAND_ADDR" help:"gRPC address of the command role (gateway, console, payments); empty: this process"`
	QueryAddr   string `env:"QUERY_ADDR" help:"gRPC address of the query role (gateway, console); empty: this process"`
	AuditAddr   string `env:"AUDIT_ADDR" help:"gRPC address of the audit role (gateway, console); empty: this process"`
	// PaymentsAddr is the gRPC address of the payments role, whose payment
	// and deadline admin services the gateway and the console call. Empty
	// means this process, allowed when it runs the payments role or the
	// command role (see Validate): a front end that reaches the command
	// role elsewhere cannot tell where payments runs.
	PaymentsAddr string `env:"PAYMENTS_ADDR" help:"gRPC address of the payments role: its payment and deadline admin services (gateway, console); empty: this process"`
	// NATSURL joins an external NATS cluster (comma-separated URLs). Empty
	// starts an embedded nats-server with JetStream in DataDir.
	NATSURL string `env:"NATS_URL" help:"external NATS server(s), comma-separated; empty starts an embedded server"`
	// NATS credentials and TLS for an external cluster: a JWT creds file,
	// an nkey seed file, or user and password; a CA to verify the servers
	// and a client certificate for servers that verify clients.
	NATSCreds    string `env:"NATS_CREDS" help:"JWT creds file to authenticate to NATS"`
	NATSNKey     string `env:"NATS_NKEY" help:"nkey seed file to authenticate to NATS"`
	NATSUser     string `env:"NATS_USER" help:"user name to authenticate to NATS (with NATS_PASSWORD)"`
	NATSPassword string `env:"NATS_PASSWORD" help:"password to authenticate to NATS (with NATS_USER)"`
	NATSCA       string `env:"NATS_CA" help:"CA file to verify the NATS servers"`
	NATSCert     string `env:"NATS_CERT" help:"client certificate file for NATS"`
	NATSKey      string `env:"NATS_KEY" help:"client key file for NATS"`
	// NATSConnectTimeout bounds waiting for NATS at start-up.
	NATSConnectTimeout time.Duration `env:"NATS_CONNECT_TIMEOUT" envDefault:"30s" help:"how long start-up waits for NATS"`
	// TLSCert and TLSKey serve gRPC and HTTP over TLS; TLSClientCA also
	// requires client certificates signed by it (mTLS) on gRPC and on the
	// REST API (not on /healthz, /readyz and /metrics).
	TLSCert     string `env:"TLS_CERT" help:"certificate file: serve gRPC and HTTP over TLS (with TLS_KEY)"`
	TLSKey      string `env:"TLS_KEY" help:"key file of TLS_CERT"`
	TLSClientCA string `env:"TLS_CLIENT_CA" help:"require client certificates signed by this CA (mTLS)"`
	// TLSCA, TLSClientCert and TLSClientKey are used by this process's
	// own gRPC clients (gateway, console, payments); TLSServerName
	// overrides the name checked in the server's certificate. Calls to
	// another process (an *_ADDR set) go over TLS when TLS_CERT or any of
	// these is set, so a process may call TLS upstreams without serving
	// TLS itself; calls to this process's own listener go over TLS when
	// it serves TLS (TLS_CERT).
	TLSCA         string `env:"TLS_CA" help:"CA file this process's own gRPC clients trust; setting any TLS_CA, TLS_CLIENT_*, TLS_SERVER_NAME turns on TLS for calls to other processes"`
	TLSClientCert string `env:"TLS_CLIENT_CERT" help:"client certificate file of this process's own gRPC clients"`
	TLSClientKey  string `env:"TLS_CLIENT_KEY" help:"key file of TLS_CLIENT_CERT"`
	TLSServerName string `env:"TLS_SERVER_NAME" help:"name checked in the certificate of the servers this process calls"`
	// Authentication: static bearer tokens from a file, JWTs signed with an
	// HMAC secret (file), or JWTs signed by keys in a JWKS file. With none
	// set, ordersd serves only on loopback unless AllowInsecure.
	AuthTokensFile     string `env:"AUTH_TOKENS_FILE" help:"static bearer tokens, one \"<token> <subject> <role>[,<role>...]\" per line"`
	AuthHMACSecretFile string `env:"AUTH_JWT_HMAC_SECRET_FILE" help:"accept JWTs signed with this HMAC secret"`
	AuthJWKSFile       string `env:"AUTH_JWKS_FILE" help:"accept JWTs signed by a key of this JWKS"`
	AuthJWTIssuer      string `env:"AUTH_JWT_ISSUER" help:"a JWT's iss must be this (empty: not checked)"`
	AuthJWTAudience    string `env:"AUTH_JWT_AUDIENCE" help:"a JWT's aud must contain this (empty: not checked)"`
	AllowInsecure      bool   `env:"ALLOW_INSECURE" envDefault:"false" help:"true allows listening beyond loopback without authentication"`
	// PaymentsToken is the bearer token the payments manager and the
	// deadlines present to the command service when authentication is on
	// and their calls go to another process (COMMAND_ADDR set); only when
	// they call this process's own command role does ordersd make its own.
	PaymentsToken string `env:"PAYMENTS_TOKEN" help:"token the payments role presents to the command role at COMMAND_ADDR (required with authentication when COMMAND_ADDR is set)"`
	// DataDir holds the embedded server's store and the read models.
	DataDir string `env:"DATA_DIR" envDefault:"./data" help:"embedded JetStream store and read models; must be writable"`
	// PIIMasterKeyFile holds the master key (64 hexadecimal digits) that
	// wraps customers' data keys. Empty: a development key generated once
	// and kept in the keys bucket beside the keys it wraps (in DATA_DIR
	// with the embedded server), shared by every process, with a warning:
	// it protects nothing against a reader of the store.
	PIIMasterKeyFile string `env:"PII_MASTER_KEY_FILE" help:"master key file (64 hex digits) wrapping customers' data keys; empty: a development key kept with the keys"`
	// GRPCAddr is the gRPC listen address.
	GRPCAddr string `env:"GRPC_ADDR" envDefault:"127.0.0.1:50051" help:"gRPC listen address"`
	// HTTPAddr serves REST, /openapi.json, /metrics, /healthz and /readyz.
	HTTPAddr string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080" help:"REST, /openapi.json, /metrics, /healthz and /readyz listen address"`
	// DebugAddr, when set, serves net/http/pprof under /debug/pprof/ so a
	// running ordersd can be profiled. Off by default, and loopback only:
	// profiles expose memory contents and cost CPU while taken.
	DebugAddr string `env:"DEBUG_ADDR" help:"serves net/http/pprof under /debug/pprof/ when set (loopback only)"`
	// NATSListen is the embedded server's client address, so the nats CLI
	// can look in. Port 0 picks a free port. The embedded server has no
	// authentication, so beyond loopback it needs AllowInsecure.
	NATSListen string `env:"NATS_LISTEN" envDefault:"127.0.0.1:4222" help:"embedded NATS server's client address; port 0 picks a free port"`
	// NATSSync is the embedded server's fsync policy: "interval" (the
	// server's periodic sync; survives a process crash) or "always" (fsync
	// every write; survives power loss too, at a cost per write).
	NATSSync string `env:"NATS_SYNC" envDefault:"interval" help:"embedded server's fsync policy: interval or always"`
	// StreamReplicas is the ORDERS stream's replica count (1 embedded, 3 in
	// a cluster). The embedded server is a single server: above 1 needs
	// NATS_URL.
	StreamReplicas int `env:"STREAM_REPLICAS" envDefault:"1" help:"replicas of the ORDERS stream and of the ORDERS_KEYS and PAYMENTS_PARKED buckets and the DEADLINES stream (3 in a cluster); each start of a process with the command role (the stream, the keys bucket) or the payments role (the others) brings existing ones to this count; another creates them with it when it starts first"`
	// DuplicateWindow is how long the server remembers request ids as
	// message ids. Retries are also recognised from the order's history
	// beyond it; a CreateOrder without an order id derives the id from its
	// request id, so its retries find that history too. The window costs
	// heap per append while it lasts and a read-back of its appends at
	// start-up, hence 30 s rather than the server's usual 2 minutes.
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW" envDefault:"30s" help:"how long the server deduplicates request ids by message id; set on the stream by a process with the command role, or by another that creates it"`
	// EventHeaders is how this process writes an event's metadata:
	// "compact" (one Orders-Meta header) or "separate" (one Orders-*
	// header per field, the format of builds before Orders-Meta, which
	// cannot read the compact one). Every build that knows this setting
	// reads both; "separate" lets new writers run beside old readers
	// during an upgrade.
	EventHeaders string `env:"EVENT_HEADERS" envDefault:"compact" help:"how events' metadata is written: compact (one header) or separate (one header per field, readable by builds before compact)"`
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error"`
	// LogFlushInterval is how long an informational JSON log line may
	// wait to be written with others (warnings and errors, and every line
	// before them, are written at once); 0 writes each line at once.
	LogFlushInterval time.Duration `env:"LOG_FLUSH_INTERVAL" envDefault:"100ms" help:"how long an informational JSON log line may wait to be written with others; warnings and errors are written at once; 0 writes each line at once"`
	// WorkerPoolSize is the number of payment workers.
	WorkerPoolSize int `env:"WORKER_POOL_SIZE" envDefault:"10" help:"payment workers"`
	// PaymentMaxAttempts bounds gateway attempts before a job is parked.
	PaymentMaxAttempts int `env:"PAYMENT_MAX_ATTEMPTS" envDefault:"8" help:"gateway attempts before a payment job is parked"`
	// PaymentAttemptTimeout bounds one gateway call.
	PaymentAttemptTimeout time.Duration `env:"PAYMENT_ATTEMPT_TIMEOUT" envDefault:"5s" help:"timeout of one payment gateway call"`
	// PaymentBackoffBase and PaymentBackoffMax bound the jittered
	// exponential backoff between attempts.
	PaymentBackoffBase time.Duration `env:"PAYMENT_BACKOFF_BASE" envDefault:"100ms" help:"bound of the first wait between attempts, doubled for each next one (each wait between half its bound and all of it)"`
	PaymentBackoffMax  time.Duration `env:"PAYMENT_BACKOFF_MAX" envDefault:"5s" help:"largest bound of a wait between attempts"`
	// PaymentAckWait is how soon the payments consumer delivers again the
	// messages of a manager that died; running jobs keep theirs alive.
	PaymentAckWait time.Duration `env:"PAYMENT_ACK_WAIT" envDefault:"2s" help:"how soon the messages of a payments manager that died are delivered again (1s to 1h)"`
	// PaymentOutageLimit is how long a payment job waits for the event
	// store or the command side, without spending attempts, before the
	// manager alerts and hands the job back for redelivery.
	PaymentOutageLimit time.Duration `env:"PAYMENT_OUTAGE_LIMIT" envDefault:"15m" help:"how long a payment job waits for the event store or the command side without spending attempts before the manager alerts"`
	// The built-in payment simulator: latency per call, transient failure
	// rate (0-1), and charges above this amount (minor units) declined
	// (0: none). Customer "cust-decline" is always declined.
	PaymentSimLatency     time.Duration `env:"PAYMENT_SIM_LATENCY" envDefault:"0s" help:"the payment simulator's latency per call"`
	PaymentSimFailureRate float64       `env:"PAYMENT_SIM_FAILURE_RATE" envDefault:"0" help:"the payment simulator's transient failure rate (0-1)"`
	PaymentSimDeclineOver int64         `env:"PAYMENT_SIM_DECLINE_OVER" envDefault:"0" help:"the payment simulator declines charges above this (minor units; 0: none)"`
	// PaymentTimeout is how long a placed order may wait for a payment
	// outcome before it is cancelled (reason payment_timeout).
	PaymentTimeout time.Duration `env:"PAYMENT_TIMEOUT" envDefault:"30m" help:"a placed order not paid this long after its placing is cancelled (payment_timeout); a declined payment does not stop the clock"`
	// ShippingSLA is how long a paid order may wait to ship before it is
	// reported overdue.
	ShippingSLA time.Duration `env:"SHIPPING_SLA" envDefault:"72h" help:"a paid order not shipped this long is reported overdue"`
	// CommandHistories is how many orders' histories a command node keeps
	// between commands, so the next command on a busy order does not read
	// the log again (command.WithHistories).
	CommandHistories int `env:"COMMAND_HISTORIES" envDefault:"4096" help:"orders whose event histories the command role keeps between commands (0: none)"`
	// ReadModelBulkCatchUp is the log head position from which a query
	// node starting without a read model catches up as a rebuild replays
	// (projections.WithBulkCatchUp).
	ReadModelBulkCatchUp uint64 `env:"READ_MODEL_BULK_CATCHUP" envDefault:"20000" help:"the log head position from which a query node starting without a read model catches up as a rebuild replays (0: never)"`
	// MaxInFlight bounds the unary RPCs served at once; beyond it calls
	// are refused at once with RESOURCE_EXHAUSTED, so overload sheds load
	// instead of queueing it in memory.
	MaxInFlight int `env:"MAX_IN_FLIGHT" envDefault:"1024" help:"unary RPCs served at once; beyond it RESOURCE_EXHAUSTED"`
	// MaxStreams bounds the server-streaming RPCs (StreamEvents,
	// VerifyLog, RebuildReadModel) open at once, apart from MaxInFlight:
	// a stream may stay open for hours and must not eat the capacity for
	// unary calls. One more is refused with RESOURCE_EXHAUSTED.
	MaxStreams int `env:"MAX_STREAMS" envDefault:"64" help:"server-streaming RPCs open at once; beyond it RESOURCE_EXHAUSTED"`
	// GRPCStreamWorkers is how many goroutines the gRPC server keeps to
	// run RPCs on (grpc.NumStreamWorkers), beyond which an RPC gets a
	// goroutine of its own as without them. A new goroutine starts with a
	// small stack and grows it, copying it, on every call deep enough;
	// a worker keeps the stack it grew.
	GRPCStreamWorkers int `env:"GRPC_STREAM_WORKERS" envDefault:"256" help:"goroutines the gRPC server keeps to run RPCs on, keeping the stacks they grew (0: a new goroutine per RPC)"`
	// TraceUIURL is the tracing UI the console links trace ids to:
	// "{trace_id}" in it is replaced by the id, otherwise "/trace/<id>"
	// (Jaeger's path) is appended. Empty: trace ids are shown unlinked.
	TraceUIURL string `env:"TRACE_UI_URL" help:"tracing UI the console links trace ids to ({trace_id} is replaced, else /trace/<id> is appended)"`
	// ShutdownTimeout bounds draining in-flight requests on SIGINT/SIGTERM,
	// the HTTP and the gRPC server's together (streams end at once). The
	// whole stop takes up to ShutdownSlack more (see there).
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s" help:"how long SIGINT/SIGTERM waits for in-flight requests, REST and gRPC together"`
}

// ShutdownSlack is how much longer than ShutdownTimeout a stop may take
// at the most: before the requests drain, the payments and deadlines
// managers hand back their work (up to 5 s while NATS does not answer),
// and after, the projection's consumer and the connections are released
// (up to about 6 s then). A supervisor's grace period before it kills
// the process should be at least ShutdownTimeout plus this, or a stop
// during a NATS outage is killed half-way (which loses nothing
// acknowledged, but the last log lines and spans).
const ShutdownSlack = 15 * time.Second

// AllRoles are the roles ordersd can run.
var AllRoles = []string{"command", "query", "audit", "payments", "gateway", "console"}

// Needs returns the roles whose gRPC services role calls: payments records
// outcomes through the command service; the gateway serves REST and the
// console its pages from the command, query and audit services and the
// payments role's admin services. Other roles need none.
func Needs(role string) []string {
	switch role {
	case "payments":
		return []string{"command"}
	case "gateway", "console":
		return []string{"command", "query", "audit", "payments"}
	}
	return nil
}

// AddrVariable returns the variable that holds the gRPC address of the
// processes running role, for the roles another role calls (command, query,
// audit, payments), and "" for the others.
func AddrVariable(role string) string {
	switch role {
	case "command":
		return "COMMAND_ADDR"
	case "query":
		return "QUERY_ADDR"
	case "audit":
		return "AUDIT_ADDR"
	case "payments":
		return "PAYMENTS_ADDR"
	}
	return ""
}

// Addr returns the gRPC address configured for role (COMMAND_ADDR,
// QUERY_ADDR, AUDIT_ADDR, PAYMENTS_ADDR): "" when unset, or for another
// role, and a caller's calls to it then go to this process's own listener.
func (c Config) Addr(role string) string {
	switch role {
	case "command":
		return c.CommandAddr
	case "query":
		return c.QueryAddr
	case "audit":
		return c.AuditAddr
	case "payments":
		return c.PaymentsAddr
	}
	return ""
}

// ClientTLS reports whether this process's calls to other processes'
// gRPC services go over TLS: when it serves TLS itself (TLS_CERT), or when
// any of its clients' TLS settings (TLS_CA, TLS_CLIENT_CERT,
// TLS_CLIENT_KEY, TLS_SERVER_NAME) is set. Calls to its own listener go
// over TLS only when it serves TLS.
func (c Config) ClientTLS() bool {
	return c.TLSCert != "" || c.TLSCA != "" || c.TLSClientCert != "" || c.TLSClientKey != "" || c.TLSServerName != ""
}

// ErrPaymentsTokenRequired reports a payments role whose calls to a
// command service elsewhere have no token: with authentication on, the
// one ordersd makes is known only to its own listener, and the command
// service would refuse it after the charge was made.
var ErrPaymentsTokenRequired = errors.New("PAYMENTS_TOKEN: with authentication configured, the payments role calls the command service at COMMAND_ADDR and needs a token with the clerk role that it accepts")

// AuthEnabled reports whether any token source is configured.
func (c Config) AuthEnabled() bool {
	return c.AuthTokensFile != "" || c.AuthHMACSecretFile != "" || c.AuthJWKSFile != ""
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Has reports whether this process runs role.
func (c Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

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
	// The parser takes a variable set but empty for one unset, and gives
	// it its default: ROLES= (a deployment's ${ROLES} left unset, say)
	// ran every role where the operator meant some, GRPC_ADDR= listened on
	// loopback in a container meant to be reached, DATA_DIR= kept the log
	// outside the volume meant for it.
	if v, set := lookup(opts, "ROLES"); set && strings.TrimSpace(v) == "" {
		return Config{}, errors.New("ROLES: set but empty: name at least one of command, query, audit, payments, gateway, console (unset, every role runs)")
	}
	if err := setButEmpty(opts); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// setButEmpty refuses a variable with a default that is set but empty: the
// operator meant a value, and the default may be far from it.
func setButEmpty(opts env.Options) error {
	var errs []error
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name, def := f.Tag.Get("env"), f.Tag.Get("envDefault")
		if name == "" || def == "" {
			continue
		}
		if v, set := lookup(opts, name); set && strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s: set but empty (unset, it is %s)", name, def))
		}
	}
	return errors.Join(errs...)
}

// lookup returns the variable key of the environment opts parse.
func lookup(opts env.Options, key string) (string, bool) {
	if opts.Environment != nil {
		v, ok := opts.Environment[key]
		return v, ok
	}
	return os.LookupEnv(key)
}

// Validate checks values the parser cannot; each error names its variable.
func (c Config) Validate() error {
	var errs []error
	for _, check := range []func() []error{
		c.validateRoles, c.validateLimits, c.validatePayments, c.validateTransport,
		c.validateListeners, c.validateDebug, c.validateUpstreams,
	} {
		errs = append(errs, check()...)
	}
	return errors.Join(errs...)
}

// validateRoles checks ROLES.
func (c Config) validateRoles() []error {
	var errs []error
	if len(c.Roles) == 0 {
		errs = append(errs, errors.New("ROLES: name at least one of command, query, audit, payments, gateway, console"))
	}
	for i, r := range c.Roles {
		switch {
		case !slices.Contains(AllRoles, r):
			errs = append(errs, fmt.Errorf("ROLES: unknown role %q (want command, query, audit, payments, gateway, console)", r))
		case slices.Contains(c.Roles[:i], r):
			// Each role is one set of services and subscriptions: twice
			// would register them twice, and a process running one role
			// is told apart by counting them.
			errs = append(errs, fmt.Errorf("ROLES: %q named twice", r))
		}
	}
	return errs
}

// maxStreamWorkers bounds GRPC_STREAM_WORKERS: each worker is a goroutine
// kept for the life of the server.
const maxStreamWorkers = 65536

// validateLimits checks the store's settings and the server's bounds.
func (c Config) validateLimits() []error {
	var errs []error
	if c.NATSSync != "interval" && c.NATSSync != "always" {
		errs = append(errs, fmt.Errorf("NATS_SYNC: %q is not interval or always", c.NATSSync))
	} else if c.NATSSync == "always" && c.NATSURL != "" {
		// It sets the embedded server's fsync; a server at NATS_URL
		// syncs as its own configuration says. Accepted, it promised a
		// durability across power losses that nothing gave.
		errs = append(errs, errors.New("NATS_SYNC: always applies to the embedded server, and NATS_URL is set: set sync_interval: always in the jetstream block of the NATS servers' configuration instead"))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("STREAM_REPLICAS: %d is not between 1 and 5", c.StreamReplicas))
	} else if c.StreamReplicas > 1 && c.NATSURL == "" {
		// The embedded server is one nats-server, not a cluster: the
		// stream could not be placed, and start-up would fail later
		// without naming either variable.
		errs = append(errs, fmt.Errorf("STREAM_REPLICAS: %d needs a NATS cluster (NATS_URL); the embedded server keeps 1 replica", c.StreamReplicas))
	}
	if c.NATSURL == "" {
		// The embedded server is reached in process, without TLS or
		// credentials: a client certificate or a CA made the connection
		// insist on TLS it cannot have, and start-up failed after
		// NATS_CONNECT_TIMEOUT naming NATS_URL, which was not set.
		for _, v := range []struct{ name, value string }{
			{"NATS_CA", c.NATSCA}, {"NATS_CERT", c.NATSCert}, {"NATS_KEY", c.NATSKey}, {"NATS_CREDS", c.NATSCreds},
			{"NATS_NKEY", c.NATSNKey}, {"NATS_USER", c.NATSUser}, {"NATS_PASSWORD", c.NATSPassword},
		} {
			if v.value != "" {
				errs = append(errs, fmt.Errorf("%s: set for a NATS server at NATS_URL, which is not set: the embedded server takes no TLS or credentials", v.name))
			}
		}
	}
	if c.EventHeaders != "compact" && c.EventHeaders != "separate" {
		errs = append(errs, fmt.Errorf("EVENT_HEADERS: %q is not compact or separate", c.EventHeaders))
	}
	if c.DuplicateWindow < time.Second {
		errs = append(errs, fmt.Errorf("DUPLICATE_WINDOW: %s is shorter than 1s", c.DuplicateWindow))
	}
	if c.WorkerPoolSize < 1 || c.WorkerPoolSize > 1000 {
		errs = append(errs, fmt.Errorf("WORKER_POOL_SIZE: %d is not between 1 and 1000", c.WorkerPoolSize))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, errors.New("MAX_IN_FLIGHT: must be at least 1"))
	}
	if c.CommandHistories < 0 {
		errs = append(errs, errors.New("COMMAND_HISTORIES: must not be negative"))
	}
	if c.MaxStreams < 1 {
		errs = append(errs, errors.New("MAX_STREAMS: must be at least 1"))
	}
	if c.GRPCStreamWorkers < 0 || c.GRPCStreamWorkers > maxStreamWorkers {
		errs = append(errs, fmt.Errorf("GRPC_STREAM_WORKERS: %d is not between 0 and %d", c.GRPCStreamWorkers, maxStreamWorkers))
	}
	return errs
}

// validatePayments checks the payments manager's and the deadlines'
// settings.
func (c Config) validatePayments() []error {
	var errs []error
	if c.PaymentMaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("PAYMENT_MAX_ATTEMPTS: must be at least 1"))
	}
	if c.PaymentTimeout < time.Second || c.ShippingSLA < time.Second || c.PaymentTimeout > MaxDeadline || c.ShippingSLA > MaxDeadline {
		errs = append(errs, fmt.Errorf("PAYMENT_TIMEOUT, SHIPPING_SLA: must be 1s to %v", MaxDeadline))
	}
	if c.PaymentAttemptTimeout <= 0 || c.PaymentBackoffBase <= 0 || c.PaymentBackoffMax < c.PaymentBackoffBase {
		errs = append(errs, fmt.Errorf("PAYMENT_ATTEMPT_TIMEOUT, PAYMENT_BACKOFF_BASE, PAYMENT_BACKOFF_MAX: must be positive, base <= max"))
	}
	// The outage limit's bound keeps the built-in simulator's key
	// lifetime, four of them, within what a time.Duration holds.
	if c.PaymentAckWait < time.Second || c.PaymentAckWait > MaxPaymentAckWait || c.PaymentOutageLimit <= 0 || c.PaymentOutageLimit > MaxDeadline {
		errs = append(errs, fmt.Errorf("PAYMENT_ACK_WAIT, PAYMENT_OUTAGE_LIMIT: the ack wait must be 1s to %v, the outage limit positive up to %v", MaxPaymentAckWait, MaxDeadline))
	}
	// Written so that NaN, which every comparison rejects, fails too.
	if !(c.PaymentSimFailureRate >= 0 && c.PaymentSimFailureRate <= 1) {
		errs = append(errs, fmt.Errorf("PAYMENT_SIM_FAILURE_RATE: %v is not between 0 and 1", c.PaymentSimFailureRate))
	}
	if c.PaymentSimLatency < 0 {
		errs = append(errs, fmt.Errorf("PAYMENT_SIM_LATENCY: %s is negative", c.PaymentSimLatency))
	} else if c.Has("payments") && c.PaymentAttemptTimeout > 0 && c.PaymentSimLatency >= c.PaymentAttemptTimeout {
		// The simulator answers after its latency, every call: each
		// attempt would time out, and every charge be parked.
		errs = append(errs, fmt.Errorf("PAYMENT_SIM_LATENCY, PAYMENT_ATTEMPT_TIMEOUT: the simulator's latency %s is not below the attempt timeout %s, so every call to it would time out", c.PaymentSimLatency, c.PaymentAttemptTimeout))
	}
	if c.PaymentSimDeclineOver < 0 {
		errs = append(errs, fmt.Errorf("PAYMENT_SIM_DECLINE_OVER: %d is negative (0 declines none)", c.PaymentSimDeclineOver))
	}
	return errs
}

// validateTransport checks timeouts, TLS files and the data directory.
func (c Config) validateTransport() []error {
	var errs []error
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("SHUTDOWN_TIMEOUT: must be positive"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("TLS_CERT, TLS_KEY: set both or neither"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("TLS_CLIENT_CA: needs TLS_CERT and TLS_KEY"))
	}
	if c.TLSClientCA != "" && c.TLSClientCert == "" {
		// This process's own listener asks every client for a certificate:
		// a role of it that calls another here (the gateway, the console,
		// payments, with no address for that role) has none to show, and
		// every one of its calls would fail while /readyz says ready.
	roles:
		for _, r := range c.Roles {
			for _, n := range Needs(r) {
				if c.Addr(n) == "" {
					errs = append(errs, fmt.Errorf("TLS_CLIENT_CA: the %s role calls the %s role in this process, whose listener then asks it for a client certificate: set TLS_CLIENT_CERT and TLS_CLIENT_KEY (or %s)", r, n, AddrVariable(n)))
					break roles
				}
			}
		}
	}
	// The clients' settings are used whenever they are set (see
	// ClientTLS), so they are checked whether or not TLS_CERT is.
	if (c.TLSClientCert == "") != (c.TLSClientKey == "") {
		errs = append(errs, errors.New("TLS_CLIENT_CERT, TLS_CLIENT_KEY: set both or neither"))
	}
	for _, f := range []struct{ name, file string }{
		{"TLS_CERT", c.TLSCert}, {"TLS_KEY", c.TLSKey}, {"TLS_CLIENT_CA", c.TLSClientCA},
		{"TLS_CA", c.TLSCA}, {"TLS_CLIENT_CERT", c.TLSClientCert}, {"TLS_CLIENT_KEY", c.TLSClientKey},
	} {
		if f.file == "" {
			continue
		}
		if fi, err := os.Stat(f.file); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, err))
		} else if fi.IsDir() {
			errs = append(errs, fmt.Errorf("%s: %s is a directory, not a PEM file", f.name, f.file))
		}
	}
	if c.NATSConnectTimeout <= 0 {
		errs = append(errs, errors.New("NATS_CONNECT_TIMEOUT: must be positive"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DATA_DIR: must not be empty"))
	}
	return errs
}

// validateListeners checks that each listener's address parses, that no
// two listeners of this process take one port, and that one reachable
// beyond this machine is guarded.
func (c Config) validateListeners() []error {
	var errs []error
	all := []listener{{"GRPC_ADDR", c.GRPCAddr}, {"HTTP_ADDR", c.HTTPAddr}, {"NATS_LISTEN", c.NATSListen}}
	// The ones this process binds: not the embedded server's with
	// NATS_URL. Cut to capacity, so that the debug listener's append
	// leaves all as it is.
	bound := all
	if c.NATSURL != "" {
		bound = all[:2:2]
	}
	if c.DebugAddr != "" {
		bound = append(bound, listener{"DEBUG_ADDR", c.DebugAddr})
	}
	errs = append(errs, samePort(bound)...)
	for _, l := range all {
		host, _, err := net.SplitHostPort(l.addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", l.name, l.addr))
			continue
		}
		if c.AllowInsecure || loopback(host) {
			continue
		}
		switch {
		case l.name == "NATS_LISTEN":
			// The embedded server has no authentication of its own, and
			// AUTH_* tokens do not guard it: whoever reaches it can read
			// and rewrite the event log. Unused with NATS_URL.
			if c.NATSURL == "" {
				errs = append(errs, fmt.Errorf("NATS_LISTEN: %q is reachable beyond this machine but the embedded NATS server has no authentication: listen on loopback, use NATS_URL with a secured cluster, or set ALLOW_INSECURE=true", l.addr))
			}
		case !c.AuthEnabled():
			errs = append(errs, fmt.Errorf("%s: %q is reachable beyond this machine but no authentication is configured: set AUTH_TOKENS_FILE, AUTH_JWT_HMAC_SECRET_FILE or AUTH_JWKS_FILE, or ALLOW_INSECURE=true", l.name, l.addr))
		}
	}
	return errs
}

// validateDebug checks LOG_FLUSH_INTERVAL, TRACE_UI_URL and DEBUG_ADDR.
func (c Config) validateDebug() []error {
	var errs []error
	if c.LogFlushInterval < 0 {
		errs = append(errs, fmt.Errorf("LOG_FLUSH_INTERVAL: %s is negative (0 writes each line at once)", c.LogFlushInterval))
	}
	if c.TraceUIURL != "" {
		if u, err := url.Parse(c.TraceUIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("TRACE_UI_URL: %q is not an http or https URL", c.TraceUIURL))
		}
	}
	if c.DebugAddr != "" {
		// Never beyond loopback, whatever ALLOW_INSECURE says: a profile
		// can show request contents, and anyone reaching it can spend
		// the process's CPU.
		if host, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			errs = append(errs, fmt.Errorf("DEBUG_ADDR: %q is not host:port", c.DebugAddr))
		} else if !loopback(host) {
			errs = append(errs, fmt.Errorf("DEBUG_ADDR: %q is not a loopback address: the profiling listener serves only 127.0.0.1, ::1 or localhost", c.DebugAddr))
		}
	}
	return errs
}

// validateUpstreams checks that every role this process runs can reach the
// roles it calls: each is run here or has its address configured. Without
// that, the call would go to this process's own gRPC listener, which does
// not serve it, and fail on every attempt (payments would charge and then
// park every outcome). The payments role's admin services are the one
// exception: see below.
func (c Config) validateUpstreams() []error {
	var errs []error
	for _, up := range []string{"command", "query", "audit", "payments"} {
		if a := c.Addr(up); a != "" {
			if err := upstreamAddr(a); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q %w", AddrVariable(up), a, err))
			}
			continue
		}
		if c.Has(up) {
			continue
		}
		if up == "payments" && c.Has("command") {
			// Nodes that run without payments on purpose (development,
			// the tests) keep answering its admin routes UNIMPLEMENTED
			// from this process. A front end whose command role is
			// elsewhere used to send them there, which served them only
			// if payments happened to run in that process: it must say.
			continue
		}
		var callers []string
		for _, r := range c.Roles {
			if slices.Contains(Needs(r), up) && !slices.Contains(callers, r) {
				callers = append(callers, r)
			}
		}
		if len(callers) > 0 {
			errs = append(errs, fmt.Errorf("%s: the %s role calls the %s role, which this process does not run: set %[1]s to its gRPC address, or add %[3]s to ROLES",
				AddrVariable(up), strings.Join(callers, " and "), up))
		}
	}
	// With authentication on, the payments manager and the deadlines
	// present a token made by this process only to this process's own
	// listener: a command service elsewhere (COMMAND_ADDR set, even beside
	// a command role here) would refuse it, after the charge was made.
	if c.Has("payments") && c.AuthEnabled() && c.PaymentsToken == "" && (c.CommandAddr != "" || !c.Has("command")) {
		errs = append(errs, ErrPaymentsTokenRequired)
	}
	return errs
}

// upstreamAddr checks a role's gRPC address as gRPC would dial it: a
// host:port, or a target of a scheme a gRPC resolver is registered for
// (dns:///host:port, unix:path). gRPC dials a bare host on port 443, and a
// URL of another scheme (http://host:port) fails every call: both only at
// the first call.
func upstreamAddr(a string) error {
	if u, err := url.Parse(a); err == nil && u.Scheme != "" && resolver.Get(u.Scheme) != nil {
		if u.Scheme != "dns" {
			if u.Opaque == "" && strings.Trim(u.Path, "/") == "" {
				return errors.New("names no endpoint")
			}
			return nil
		}
		a = strings.TrimPrefix(u.Path, "/") // dns://[authority]/host:port
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" || port == "" {
		return errors.New("is not host:port (or a gRPC target such as dns:///host:port)")
	}
	// gRPC dials a port that is no number from 1 to 65535 nor a known
	// service name (https) and fails every call (unknown port, invalid
	// port, connection refused).
	if n, err := net.LookupPort("tcp", port); err != nil || n == 0 {
		return fmt.Errorf("port %q is not a port number (1 to 65535) or a service name", port)
	}
	return nil
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

// Variable describes one environment variable ordersd reads.
type Variable struct {
	Name    string
	Default string // empty when the variable has none
	Help    string
}

// Variables lists every environment variable of Config, in field order,
// read from the struct's tags so that help text cannot drift from what is
// parsed.
func Variables() []Variable {
	t := reflect.TypeFor[Config]()
	var out []Variable
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		out = append(out, Variable{Name: name, Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
	}
	return out
}

// WriteUsage writes the variables as aligned lines: name, default and
// meaning.
func WriteUsage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range Variables() {
		d := v.Default
		if d == "" {
			d = "(empty)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, d, v.Help)
	}
	return tw.Flush()
}

// listener is a listen address and the variable that sets it.
type listener struct{ name, addr string }

// samePort refuses two listeners on one port of hosts that overlap (the
// same host, or a wildcard, which takes every address): the second to
// listen failed as if another process held the port, naming only itself.
// Port 0 (any free port) and addresses that do not parse are left to the
// other checks.
func samePort(listeners []listener) []error {
	var errs []error
	for i, a := range listeners {
		ah, ap, ok := listenPort(a.addr)
		if !ok {
			continue
		}
		for _, b := range listeners[:i] {
			if bh, bp, ok := listenPort(b.addr); ok && bp == ap && hostsOverlap(ah, bh) {
				errs = append(errs, fmt.Errorf("%s, %s: both listen on %s and %s: one port cannot serve both", b.name, a.name, b.addr, a.addr))
			}
		}
	}
	return errs
}

// listenPort splits a listen address into its host and its port as a
// number ("http" is 80, "07000" 7000); ok is false for an address that
// does not parse and for port 0.
func listenPort(addr string) (host string, port int, ok bool) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	port, err = net.LookupPort("tcp", p)
	return host, port, err == nil && port != 0
}

// hostsOverlap reports whether listeners on hosts a and b take a common
// address: the same one however spelt, a wildcard (which takes every
// address), or localhost and 127.0.0.1, the address Go listens on for it
// (its first IPv4 one).
func hostsOverlap(a, b string) bool {
	ia, ib := listenIP(a), listenIP(b)
	switch {
	case a == "" || b == "" || ia != nil && ia.IsUnspecified() || ib != nil && ib.IsUnspecified():
		return true
	case ia != nil && ib != nil:
		return ia.Equal(ib)
	}
	return strings.EqualFold(a, b)
}

// listenIP is the IP a listen host names, localhost's included; nil for
// another name.
func listenIP(h string) net.IP {
	if strings.EqualFold(h, "localhost") {
		return net.IPv4(127, 0, 0, 1)
	}
	return net.ParseIP(h)
}
