// Package natsconn connects ordersd to an external NATS cluster: one place
// that turns the NATS_* settings into a *nats.Conn that authenticates, speaks
// TLS when asked to, logs its state changes and never gives up reconnecting.
//
// # Start-up when the cluster is down
//
// Connect uses nats.RetryOnFailedConnect(true): when no server answers yet,
// it returns a connection in the RECONNECTING state instead of an error, and
// the client keeps trying in the background. A process started together with
// its cluster (docker compose, a Kubernetes rollout, a node restart) thus
// comes up instead of crash-looping, and everything it publishes meanwhile is
// buffered and sent once connected. Callers that must not go on without NATS
// bound the wait themselves with WaitConnected. Configuration mistakes are
// not retried: a missing or malformed credentials, nkey, certificate or CA
// file fails Connect at once with an error naming the variable, and a
// connection whose credentials the servers reject twice before it ever
// connected is closed, which WaitConnected reports with the rejection.
// Other failures, such as a TLS handshake the server refuses, are retried
// like an outage; the error WaitConnected returns when its deadline passes
// carries the last of them.
//
// # Reconnecting
//
// Reconnects never stop (nats.MaxReconnects(-1)), not even when servers
// reject the credentials of a connection that was up: by default nats.go
// closes it for good once a server rejects it twice in a row, and the
// process would then stay up and unready until restarted. A restarting
// server may refuse credentials it accepts a moment later (its accounts not
// loaded yet, a configuration rolled out in steps), so once connected a
// rejection is retried like an outage (nats.IgnoreAuthErrorAbort); only
// before the first connection does it mean a configuration mistake (see
// above).
//
// After each full pass over the server list the client waits with capped
// exponential backoff, ReconnectWait doubling up to MaxReconnectWait, with
// "equal jitter" (a random half of the delay) so that a fleet disconnected
// together does not return together. The backoff restarts from
// ReconnectWait after every successful reconnect.
//
// A server that goes silent without closing the connection (its host
// gone, a partition dropping packets) is noticed by pings: one every
// PingInterval (DefaultPingInterval, 5 s), and the connection is taken for
// stale, and the client moves to another server, when two go unanswered.
// nats.go's defaults (2 minutes, two) left a node on a dead server for
// four to six minutes, every append and read timing out meanwhile.
//
// # Logging
//
// Every state change is logged once: connected, disconnected (with the
// cause), reconnected, closed, lame-duck mode of a server, and asynchronous
// errors such as slow consumers or permission violations. Failed attempts
// while reconnecting are logged at warn level only for the first failure of
// an outage and at debug level afterwards, so a long outage does not flood
// the log; so are the servers' rejections of the credentials, which also
// arrive as asynchronous errors. Handlers of the same kinds passed in extra
// run after the logging ones instead of replacing them.
//
// Server URLs reach log lines and errors only through Redact, since they may
// carry credentials in more forms than url.URL.Redacted masks (see Redact).
// For the same reason Connect parses the URLs itself before nats.go does: a
// malformed URL is then reported masked, where url.Parse's error would
// quote it whole.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/orderstream/orderstream/internal/backoff"
	"github.com/orderstream/orderstream/internal/tlsconfig"
)

// Options are the settings of a connection. Every field has the environment
// variable that sets it in ordersd in its comment; errors name that variable.
// Of the three ways to authenticate (CredsFile, NKeySeedFile, User with
// Password) at most one may be set; credentials inside URLs work too.
type Options struct {
	// URLs is one or more server URLs, comma-separated (NATS_URL), e.g.
	// "nats://nats-1:4222,nats://nats-2:4222". tls:// URLs require TLS.
	URLs string
	// CredsFile is a user credentials file holding a user JWT and its nkey
	// seed, for decentralized (operator/account) auth (NATS_CREDS).
	CredsFile string
	// NKeySeedFile is a file holding a user nkey seed, "SU…" (NATS_NKEY).
	NKeySeedFile string
	// User and Password authenticate with a username and password
	// (NATS_USER, NATS_PASSWORD); both or neither.
	User     string
	Password string
	// CAFile holds the PEM CAs that may sign the servers' certificates
	// (NATS_CA). Setting it requires TLS; without it a tls:// URL trusts the
	// system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key for servers
	// that verify clients (NATS_CERT, NATS_KEY); both or neither. They are
	// re-read on every reconnect, so a rotated certificate is picked up.
	CertFile string
	KeyFile  string
	// Name is the connection name the server shows in its monitoring
	// endpoints (connz); empty means "ordersd".
	Name string
	// ReconnectWait is the first delay between two passes over the server
	// list after a disconnect; zero means DefaultReconnectWait.
	ReconnectWait time.Duration
	// MaxReconnectWait caps the exponential backoff; zero means
	// DefaultMaxReconnectWait.
	MaxReconnectWait time.Duration
	// PingInterval is how often the client pings its server; two pings
	// unanswered make the connection stale (see Reconnecting). Zero means
	// DefaultPingInterval.
	PingInterval time.Duration
}

// Default backoff bounds and ping interval.
const (
	DefaultReconnectWait    = 250 * time.Millisecond
	DefaultMaxReconnectWait = 5 * time.Second
	DefaultPingInterval     = 5 * time.Second
)

// maxPingsOut is how many pings may go unanswered before the connection
// is stale.
const maxPingsOut = 2

// Connect validates o, then connects with the options described in the
// package documentation. Options in extra are applied last, so they override
// these (tests shorten the backoff that way); nats.InProcessServer connects
// to an embedded server without TCP. The returned connection may still be
// reconnecting; see WaitConnected.
func Connect(o Options, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts, err := o.natsOptions()
	if err != nil {
		return nil, err
	}
	// The caller's handlers, chained behind the logging ones.
	var user nats.Options
	for _, opt := range extra {
		if err := opt(&user); err != nil {
			return nil, fmt.Errorf("nats option: %w", err)
		}
	}
	opts = append(opts, extra...)
	opts = append(opts, handlers(log, &user)...)
	nc, err := nats.Connect(o.URLs, opts...)
	if err != nil {
		return nil, fmt.Errorf("NATS_URL: connect to %s: %w", Redact(o.URLs), redactErr(err))
	}
	return nc, nil
}

// timing returns the reconnect backoff's bounds and the ping interval,
// defaults in place of zeros.
func (o Options) timing() (wait, maxWait, ping time.Duration) {
	wait, maxWait, ping = o.ReconnectWait, o.MaxReconnectWait, o.PingInterval
	if wait <= 0 {
		wait = DefaultReconnectWait
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxReconnectWait
	}
	if ping <= 0 {
		ping = DefaultPingInterval
	}
	return wait, max(maxWait, wait), ping
}

// natsOptions checks o and turns it into nats options; each error names the
// variable to fix.
func (o Options) natsOptions() ([]nats.Option, error) {
	if strings.TrimSpace(o.URLs) == "" {
		return nil, errors.New("NATS_URL: no server URL")
	}
	if err := checkURLs(o.URLs); err != nil {
		return nil, err
	}
	name := o.Name
	if name == "" {
		name = "ordersd"
	}
	wait, maxWait, ping := o.timing()
	opts := []nats.Option{
		nats.Name(name),
		nats.PingInterval(ping),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
		nats.RetryOnFailedConnect(true),
		nats.CustomReconnectDelay(reconnectDelay(wait, maxWait)),
	}

	var methods []string
	if o.CredsFile != "" {
		methods = append(methods, "NATS_CREDS")
	}
	if o.NKeySeedFile != "" {
		methods = append(methods, "NATS_NKEY")
	}
	if o.User != "" || o.Password != "" {
		methods = append(methods, "NATS_USER/NATS_PASSWORD")
	}
	if len(methods) > 1 {
		return nil, fmt.Errorf("%s: set only one way to authenticate to NATS", strings.Join(methods, ", "))
	}
	switch {
	case o.CredsFile != "":
		if err := checkCreds(o.CredsFile); err != nil {
			return nil, fmt.Errorf("NATS_CREDS: %w", err)
		}
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: %s: %w", o.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case o.User != "" && o.Password == "":
		return nil, errors.New("NATS_PASSWORD: empty while NATS_USER is set")
	case o.User == "" && o.Password != "":
		return nil, errors.New("NATS_USER: empty while NATS_PASSWORD is set")
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}

	if o.CAFile != "" {
		if _, err := tlsconfig.LoadCertPool(o.CAFile); err != nil {
			return nil, fmt.Errorf("NATS_CA: %w", err)
		}
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	switch {
	case o.CertFile == "" && o.KeyFile == "":
	case o.CertFile == "":
		return nil, errors.New("NATS_CERT: empty while NATS_KEY is set")
	case o.KeyFile == "":
		return nil, errors.New("NATS_KEY: empty while NATS_CERT is set")
	default:
		if _, err := tlsconfig.LoadKeyPair(o.CertFile, o.KeyFile); err != nil {
			return nil, fmt.Errorf("NATS_CERT/NATS_KEY: %w", err)
		}
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return opts, nil
}

// checkCreds reads a credentials file the way the client will and checks
// that it holds a user JWT that has not expired and a user seed, so that a
// wrong file fails at start-up rather than as an authorization violation.
func checkCreds(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	defer clear(b)
	token, err := nkeys.ParseDecoratedJWT(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return fmt.Errorf("%s: not a user JWT: %w", file, err)
	}
	if claims.Expires != 0 && time.Unix(claims.Expires, 0).Before(time.Now()) {
		return fmt.Errorf("%s: user JWT expired at %s", file, time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339))
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return fmt.Errorf("%s: seed: %w", file, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("%s: seed: %w", file, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("%s: the seed is not a user seed", file)
	}
	if pub != claims.Subject {
		return fmt.Errorf("%s: the seed does not belong to the JWT's user %s", file, claims.Subject)
	}
	return nil
}

// reconnectDelay returns the delay before the n-th pass over the server
// list (n starts at 1): wait·2ⁿ⁻¹ capped at maxWait, of which a random half
// is jitter.
func reconnectDelay(wait, maxWait time.Duration) nats.ReconnectDelayHandler {
	return backoff.Policy{Base: wait, Cap: maxWait, Jitter: backoff.Equal}.Delay
}

// startupRejections is how many times the servers may reject the
// credentials of a connection that never connected before it is closed:
// twice, as nats.go's own abort, so that a credentials file caught being
// rewritten gets a second read.
const startupRejections = 2

// handlers log the connection's state changes and then call the caller's
// handlers of the same kind, if any. They also close a connection whose
// credentials are rejected before it first connected (startupRejections).
func handlers(log *slog.Logger, user *nats.Options) []nats.Option {
	// failing is set by the first failed attempt of an outage and cleared
	// when connected, so only that first failure is logged as a warning.
	var failing atomic.Bool
	// connected is set by the first connection; rejected counts the
	// rejections of the credentials before it.
	var connected atomic.Bool
	var rejected atomic.Int32
	return []nats.Option{
		nats.ConnectHandler(func(nc *nats.Conn) {
			failing.Store(false)
			connected.Store(true)
			log.Info("nats connected", "url", connectedURL(nc), "server", nc.ConnectedServerName())
			if user.ConnectedCB != nil {
				user.ConnectedCB(nc)
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			// A nil error is a deliberate Close or Drain; the closed
			// handler reports that.
			if err != nil {
				log.Warn("nats disconnected, reconnecting", "err", err)
			}
			if user.DisconnectedErrCB != nil {
				user.DisconnectedErrCB(nc, err)
			}
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			if failing.CompareAndSwap(false, true) {
				log.Warn("nats unreachable, retrying", "err", err, "urls", Redact(strings.Join(nc.Servers(), ",")))
			} else {
				log.Debug("nats connect attempt failed", "err", err)
			}
			if user.ReconnectErrCB != nil {
				user.ReconnectErrCB(nc, err)
			}
			// With nats.IgnoreAuthErrorAbort the client would retry
			// credentials that were never accepted forever; those are a
			// configuration mistake, which start-up must report.
			if !connected.Load() && isRejection(err) && rejected.Add(1) == startupRejections {
				giveUp(nc, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			failing.Store(false)
			log.Info("nats reconnected", "url", connectedURL(nc), "server", nc.ConnectedServerName())
			if user.ReconnectedCB != nil {
				user.ReconnectedCB(nc)
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			// An error only when the connection was given up on: the last
			// error nats.go keeps (a permission violation, a slow
			// consumer) was logged when it came, and a close this process
			// asked for (shutting down) is no error.
			if err := rejection(nc); err != nil {
				log.Error("nats connection closed", "err", err)
			} else {
				log.Info("nats connection closed")
			}
			if user.ClosedCB != nil {
				user.ClosedCB(nc)
			}
		}),
		nats.LameDuckModeHandler(func(nc *nats.Conn) {
			log.Info("nats server entering lame duck mode, will move to another", "server", nc.ConnectedServerName())
			if user.LameDuckModeHandler != nil {
				user.LameDuckModeHandler(nc)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			// Every attempt a server rejects reports the rejection here
			// too: during an outage it is one more failed attempt.
			if sub == nil && isRejection(err) && failing.Load() {
				log.Debug("nats async error", "err", err)
			} else if sub != nil {
				log.Warn("nats async error", "err", err, "subject", sub.Subject)
			} else {
				log.Warn("nats async error", "err", err)
			}
			if user.AsyncErrorCB != nil {
				user.AsyncErrorCB(nc, sub, err)
			}
		}),
	}
}

// isRejection reports whether err is a server's rejection of the
// credentials: one of the errors nats.go counts towards its abort
// (nats.IgnoreAuthErrorAbort), as a sentinel or as the server's -ERR text.
func isRejection(err error) bool {
	if err == nil {
		return false
	}
	for _, sentinel := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	msg := strings.ToLower(strings.TrimPrefix(err.Error(), "nats: "))
	for _, prefix := range []string{nats.AUTHORIZATION_ERR, nats.AUTHENTICATION_EXPIRED_ERR, nats.AUTHENTICATION_REVOKED_ERR, nats.ACCOUNT_AUTHENTICATION_EXPIRED_ERR} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// rejections holds why giveUp closed a connection, for WaitConnected and
// the closed handler: Close leaves no error on the connection, and a
// failed attempt at another server may already have replaced the rejection
// as its last error. The keys are weak, and an entry goes with its
// connection.
var rejections sync.Map // weak.Pointer[nats.Conn] → error

// giveUp closes nc, whose credentials the servers rejected with err before
// it ever connected.
func giveUp(nc *nats.Conn, err error) {
	key := weak.Make(nc)
	rejections.Store(key, err)
	runtime.AddCleanup(nc, func(key weak.Pointer[nats.Conn]) { rejections.Delete(key) }, key)
	nc.Close()
}

// closedBy returns why nc closed: the rejection it was given up for, or
// its last error.
func closedBy(nc *nats.Conn) error {
	if err := rejection(nc); err != nil {
		return err
	}
	return nc.LastError()
}

// rejection returns the rejection nc was given up for, or nil.
func rejection(nc *nats.Conn) error {
	if err, ok := rejections.Load(weak.Make(nc)); ok {
		return err.(error)
	}
	return nil
}

// WaitConnected blocks until nc is connected, ctx is done, or the connection
// is closed for good (for example after the server rejected its
// credentials). Use it after Connect where going on without NATS makes no
// sense, with a deadline that says how long an outage at start-up may last.
// The error wraps ctx.Err() when the deadline passed, or
// nats.ErrConnectionClosed together with the connection's last error when it
// closed.
func WaitConnected(ctx context.Context, nc *nats.Conn) error {
	ch := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	for {
		switch nc.Status() {
		case nats.CONNECTED:
			return nil
		case nats.CLOSED:
			if err := closedBy(nc); err != nil {
				// Both are wrapped: callers test for a closed connection,
				// and the last error says why it closed.
				return fmt.Errorf("NATS_URL: %w: %w", nats.ErrConnectionClosed, err)
			}
			return fmt.Errorf("NATS_URL: %w", nats.ErrConnectionClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if err := nc.LastError(); err != nil {
				return fmt.Errorf("NATS_URL: not connected to %s: %w (last error: %v)", Redact(strings.Join(nc.Servers(), ",")), ctx.Err(), err)
			}
			return fmt.Errorf("NATS_URL: not connected to %s: %w", Redact(strings.Join(nc.Servers(), ",")), ctx.Err())
		}
	}
}

// Redact masks the user information (user and password, or token) of
// each URL in a comma-separated list, so the list can be logged or put in
// an error. It does not rely on the URLs being well formed, since it also
// shows the ones url.Parse rejects:
//
//   - nats.go dials an entry without a scheme as nats://entry, so
//     "user:pass@host:4222" carries credentials as much as
//     "nats://user:pass@host:4222" does;
//   - a token ("nats://token@host") is user information too, which Go's
//     url.URL.Redacted leaves in place as it masks only passwords;
//   - everything up to the last '@' is masked, where url.Parse splits the
//     user information from the host, so that a password holding an '@',
//     or a '/' or '#' that url.Parse would choke on, is masked whole.
//
// Entries are trimmed of spaces, as nats.go trims them.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		parts[i] = redactURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactURL masks the user information of one URL; see Redact.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	if at < 0 {
		return u
	}
	start := userInfoStart(u, at)
	return u[:start] + "***@" + u[at+1:]
}

// userInfoStart is where the user information of u, which ends at its last
// '@' (at), starts: after the scheme's "://", or at 0 when u has no scheme
// of its own. What precedes "://" is a scheme only if it reads as one: in
// "user:pa://ss@host" it is part of the credentials.
func userInfoStart(u string, at int) int {
	if i := strings.Index(u, "://"); i >= 0 && i < at && isScheme(u[:i]) {
		return i + len("://")
	}
	return 0
}

// isScheme reports whether s is a URL scheme (RFC 3986, section 3.1):
// a letter, then letters, digits, '+', '-' or '.'.
func isScheme(s string) bool {
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// checkURLs parses each URL as nats.go will, so that a malformed one is
// reported here, masked: the error url.Parse returns quotes the whole URL,
// password included, and a malformed password may even show in the reason
// ("invalid port" after the part of it that preceded a '/'). The reason
// given is therefore that of the masked URL, which holds no credentials;
// when only the original fails to parse, the fault is in the credentials,
// and the reason is said without them.
func checkURLs(urls string) error {
	if splitCredentials(urls) {
		return errors.New("NATS_URL: an entry holds user information without a scheme of its own after one that holds none: " +
			"a ',' in a user name, password or token splits the URL there (percent-encode it as %2C)")
	}
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if _, err := parseURL(u); err == nil {
			continue
		}
		shown := redactURL(u)
		var uerr *url.Error
		if _, err := parseURL(shown); errors.As(err, &uerr) {
			return fmt.Errorf("NATS_URL: %s: %w", shown, uerr.Err)
		}
		return fmt.Errorf("NATS_URL: %s: the user name, password or token is not valid in a URL (percent-encode a '/', '?', '#' or '%%' in it)", shown)
	}
	return nil
}

// splitCredentials reports whether a comma seems to split a URL's user
// information: an entry holding '@' without a scheme of its own follows,
// however many entries later, one without '@' that is no URL. nats.go
// splits the list on every ',', so "nats://alice:pa,ss@host" is two
// servers, "nats://alice:pa" (host alice, port pa) and "ss@host", and
// checkURLs would quote the first part of the password as a URL it cannot
// parse. No such list can work, so it
// is refused without quoting it. A first part that parses ("alice:4711")
// names a server as well as it could hide a password, and is taken for
// one, as nats.go takes it.
func splitCredentials(urls string) bool {
	broken := false // an entry without '@' that is no URL came before
	for _, p := range strings.Split(urls, ",") {
		p = strings.TrimSpace(p)
		at := strings.LastIndex(p, "@")
		if at < 0 {
			// "nats://alice:pa" does not parse (its "port" is no
			// number); one that does is taken for the server it names,
			// as nats.go takes it.
			if _, err := parseURL(p); err != nil {
				broken = true
			}
			continue
		}
		if userInfoStart(p, at) > 0 {
			broken = false // a URL of its own
			continue
		}
		if broken {
			return true
		}
	}
	return false
}

// parseURL parses a server URL the way nats.go does, with "nats://"
// added when there is no scheme.
func parseURL(u string) (*url.URL, error) {
	if !strings.Contains(u, "://") {
		u = "nats://" + u
	}
	return url.Parse(u)
}

// redactErr masks the URL a *url.Error quotes. checkURLs leaves nats.go no
// URL to reject, but should nats.go come to parse differently, its error
// still must not carry credentials.
func redactErr(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		uerr.URL = Redact(uerr.URL)
	}
	return err
}

// connectedURL is the URL nc is connected to, masked; "" while it is not
// connected.
func connectedURL(nc *nats.Conn) string {
	return Redact(nc.ConnectedUrl())
}
