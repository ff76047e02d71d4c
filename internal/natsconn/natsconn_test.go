package natsconn_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/orderstream/orderstream/internal/natsconn"
	"github.com/orderstream/orderstream/internal/natsconn/natstest"
	"github.com/orderstream/orderstream/internal/tcpproxy"
	"github.com/orderstream/orderstream/internal/testlog"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// connect connects and waits for the connection, failing the test on error.
func connect(t *testing.T, o natsconn.Options, extra ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := natsconn.Connect(o, slog.New(slog.DiscardHandler), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := natsconn.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

// roundTrip proves the connection carries messages both ways.
func roundTrip(t *testing.T, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.Subscribe("natsconn.ping", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	msg, err := nc.Request("natsconn.ping", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "pong" {
		t.Fatalf("reply %q", msg.Data)
	}
}

// rejected connects without retrying the first attempt and returns the error.
func rejected(t *testing.T, o natsconn.Options, extra ...nats.Option) error {
	t.Helper()
	extra = append(extra, nats.RetryOnFailedConnect(false), nats.MaxReconnects(0))
	nc, err := natsconn.Connect(o, slog.New(slog.DiscardHandler), extra...)
	if err == nil {
		nc.Close()
		t.Fatal("connection accepted")
	}
	return err
}

func TestUserPassword(t *testing.T) {
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.JetStream = true
		o.Username, o.Password = "orders", "s3cret"
	})
	nc := connect(t, natsconn.Options{URLs: ns.ClientURL(), User: "orders", Password: "s3cret"})
	roundTrip(t, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream through the connection: %v", err)
	}

	// Credentials never accepted are a configuration mistake: the
	// connection closes rather than retrying them, and WaitConnected says
	// why before its deadline, even when an attempt at a server that is
	// down came after the rejection.
	for name, urls := range map[string]string{
		"wrong password closes the connection":                   ns.ClientURL(),
		"wrong password closes the connection beside a dead URL": ns.ClientURL() + fmt.Sprintf(",nats://127.0.0.1:%d", freePort(t)),
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := natsconn.Connect(natsconn.Options{URLs: urls, User: "orders", Password: "wrong", ReconnectWait: time.Millisecond},
				slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			err = natsconn.WaitConnected(ctx, nc)
			if !errors.Is(err, nats.ErrConnectionClosed) || !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("got %v, want the connection closed by an authorization error", err)
			}
		})
	}
}

func TestNKey(t *testing.T) {
	pub, seedFile := natstest.UserNKey(t)
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	})
	roundTrip(t, connect(t, natsconn.Options{URLs: ns.ClientURL(), NKeySeedFile: seedFile}))

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := filepath.Join(t.TempDir(), "other.nk")
	if err := os.WriteFile(otherFile, otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rejected(t, natsconn.Options{URLs: ns.ClientURL(), NKeySeedFile: otherFile}); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("unknown nkey: got %v, want authorization violation", err)
	}
}

func TestMutualTLS(t *testing.T) {
	ca, srvCert, srvKey, cliCert, cliKey := tlstest.Generate(t, t.TempDir())
	scfg, err := tlsconfig.Server(srvCert, srvKey, ca)
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartServer(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, scfg, 5
	})
	url := fmt.Sprintf("tls://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)

	nc := connect(t, natsconn.Options{URLs: url, CAFile: ca, CertFile: cliCert, KeyFile: cliKey})
	roundTrip(t, nc)
	state, err := nc.TLSConnectionState()
	if err != nil {
		t.Fatal(err)
	}
	if len(state.PeerCertificates) == 0 || state.PeerCertificates[0].Subject.CommonName != "localhost" {
		t.Fatalf("server certificate %v", state.PeerCertificates)
	}

	// nats:// with a CA file still insists on TLS.
	plainURL := strings.Replace(url, "tls://", "nats://", 1)
	roundTrip(t, connect(t, natsconn.Options{URLs: plainURL, CAFile: ca, CertFile: cliCert, KeyFile: cliKey}))

	t.Run("without client certificate", func(t *testing.T) {
		// Refused by the server: the client, trusting the CA, verified
		// the server's certificate.
		err := rejected(t, natsconn.Options{URLs: url, CAFile: ca})
		if cve := (*tls.CertificateVerificationError)(nil); err == nil || errors.As(err, &cve) {
			t.Fatalf("got %v, want the server's refusal of a client without a certificate", err)
		}
	})
	t.Run("server from an untrusted CA", func(t *testing.T) {
		otherCA, _, _, _, _ := tlstest.Generate(t, t.TempDir())
		err := rejected(t, natsconn.Options{URLs: url, CAFile: otherCA, CertFile: cliCert, KeyFile: cliKey})
		if cve := (*tls.CertificateVerificationError)(nil); !errors.As(err, &cve) {
			t.Fatalf("got %v, want a certificate verification error", err)
		}
	})
}

func TestCredentials(t *testing.T) {
	edit, credsFile := natstest.Operator(t, func(uc *jwt.UserClaims) {
		uc.Pub.Allow.Add("natsconn.>", "_INBOX.>")
		uc.Sub.Allow.Add("natsconn.>", "_INBOX.>")
	})
	ns := natstest.StartServer(t, edit)
	roundTrip(t, connect(t, natsconn.Options{URLs: ns.ClientURL(), CredsFile: credsFile}))

	t.Run("credentials of another operator", func(t *testing.T) {
		_, foreign := natstest.Operator(t, nil)
		if err := rejected(t, natsconn.Options{URLs: ns.ClientURL(), CredsFile: foreign}); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("got %v, want authorization violation", err)
		}
	})
}

// logRecorder keeps the messages logged at each level.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string // "LEVEL message"
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count(line string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == line {
			n++
		}
	}
	return n
}

// freePort returns a loopback port that nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// A process started before its NATS server comes up once the server does,
// and comes back after the server restarts; each outage is logged once.
func TestConnectBeforeServerStarts(t *testing.T) {
	port := freePort(t)
	storeDir := t.TempDir()
	serverOpts := func(o *server.Options) { o.Port, o.JetStream, o.StoreDir = port, true, storeDir }

	failed := make(chan error, 100)
	connected := make(chan struct{}, 1)
	disconnected := make(chan struct{}, 1)
	reconnected := make(chan struct{}, 1)
	rec := &logRecorder{}
	nc, err := natsconn.Connect(
		natsconn.Options{URLs: fmt.Sprintf("nats://127.0.0.1:%d", port), ReconnectWait: time.Millisecond, MaxReconnectWait: 5 * time.Millisecond},
		slog.New(rec),
		// The caller's own handlers run too (after the logging ones).
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case failed <- err:
			default:
			}
		}),
		// With RetryOnFailedConnect, the first successful connection is
		// reported to the connect handler, later ones to the reconnect one.
		nats.ConnectHandler(func(*nats.Conn) { connected <- struct{}{} }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				disconnected <- struct{}{}
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	)
	if err != nil {
		t.Fatalf("Connect with the server down: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected with no server running")
	}
	// Publishing while down is buffered, not an error.
	if err := nc.Publish("natsconn.early", []byte("x")); err != nil {
		t.Fatalf("publish while reconnecting: %v", err)
	}
	// Let a few attempts fail so the log can be checked for repetition.
	for range 3 {
		<-failed
	}

	ns := natstest.StartServer(t, serverOpts)
	waitFor(t, connected, "connect handler")
	if err := natsconn.WaitConnected(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, nc)

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, disconnected, "disconnect handler")
	for range 3 {
		<-failed
	}
	ns = natstest.StartServer(t, serverOpts)
	waitFor(t, reconnected, "reconnect handler")
	roundTrip(t, nc)
	_ = ns

	for line, want := range map[string]int{
		"WARN nats unreachable, retrying":          2, // once per outage
		"INFO nats connected":                      1,
		"WARN nats disconnected, reconnecting":     1,
		"INFO nats reconnected":                    1,
		"DEBUG nats connect attempt failed":        -1, // the rest, at debug
		"ERROR nats connection closed":             0,
		"INFO nats connection closed":              0,
		"WARN nats async error":                    0,
		"INFO nats server entering lame duck mode": 0,
	} {
		got := rec.count(line)
		if want < 0 {
			if got < 4 {
				t.Errorf("%q logged %d times, want the repeated failures at debug level", line, got)
			}
			continue
		}
		if got != want {
			t.Errorf("%q logged %d times, want %d", line, got, want)
		}
	}
}

// A connection that was up does not end for good when a restarting server
// refuses its credentials for a while (its accounts not loaded yet, a
// configuration rolled out in steps): nats.go's default closes it after two
// rejections, which left ordersd up and unready until restarted. Each
// rejection is a failed attempt of the outage, warned about once.
func TestReconnectSurvivesRejectedCredentials(t *testing.T) {
	port := freePort(t)
	storeDir := t.TempDir()
	withPassword := func(pw string) func(*server.Options) {
		return func(o *server.Options) {
			o.Port, o.JetStream, o.StoreDir, o.Username, o.Password = port, true, storeDir, "orders", pw
		}
	}
	ns := natstest.StartServer(t, withPassword("s3cret"))

	rejected := make(chan struct{}, 100)
	closed := make(chan struct{}, 1)
	reconnected := make(chan struct{}, 1)
	rec := &logRecorder{}
	nc, err := natsconn.Connect(
		natsconn.Options{URLs: fmt.Sprintf("nats://127.0.0.1:%d", port), User: "orders", Password: "s3cret",
			ReconnectWait: time.Millisecond, MaxReconnectWait: 5 * time.Millisecond},
		slog.New(rec),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if errors.Is(err, nats.ErrAuthorization) {
				select {
				case rejected <- struct{}{}:
				default:
				}
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { closed <- struct{}{} }),
		// Runs after the logging handler of the same event, on the
		// client's callback goroutine: once it has run, so has the log.
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := natsconn.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	ns = natstest.StartServer(t, withPassword("other"))
	for i := range 5 {
		select {
		case <-rejected:
		case <-closed:
			t.Fatalf("the connection closed for good after %d rejection(s): %v", i, nc.LastError())
		case <-time.After(30 * time.Second):
			t.Fatalf("%d rejection(s), want 5", i)
		}
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	natstest.StartServer(t, withPassword("s3cret"))
	if err := natsconn.WaitConnected(ctx, nc); err != nil {
		t.Fatalf("once the server takes the credentials again: %v", err)
	}
	roundTrip(t, nc)
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("connected again, but the reconnect handler never ran")
	}

	for line, want := range map[string]int{
		"WARN nats unreachable, retrying": 1, // one outage
		"INFO nats reconnected":           1,
		"ERROR nats connection closed":    0,
	} {
		if got := rec.count(line); got != want {
			t.Errorf("%q logged %d times, want %d", line, got, want)
		}
	}
	// The rejections are errors the server sends too; one may be warned
	// about, if the outage began with it, the rest are at debug level.
	if got := rec.count("WARN nats async error"); got > 1 {
		t.Errorf("%q logged %d times for one outage, want at most once", "WARN nats async error", got)
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not called", what)
	}
}

func TestWaitConnectedDeadline(t *testing.T) {
	nc, err := natsconn.Connect(natsconn.Options{URLs: fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := natsconn.WaitConnected(ctx, nc); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "NATS_URL") {
		t.Fatalf("got %v, want a NATS_URL error wrapping context.Canceled", err)
	}
	nc.Close()
	if err := natsconn.WaitConnected(context.Background(), nc); !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("closed connection: got %v", err)
	}
}

func TestConfigurationErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _, _, cliCert, cliKey := tlstest.Generate(t, dir)
	_, expiredCreds := natstest.Operator(t, func(uc *jwt.UserClaims) { uc.Expires = time.Now().Add(-time.Hour).Unix() })
	_, goodCreds := natstest.Operator(t, nil)
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	garbage := write("garbage", "not a key\n")
	accountSeed := func() string {
		kp, _ := nkeys.CreateAccount()
		s, _ := kp.Seed()
		return write("account.nk", string(s))
	}()
	missing := filepath.Join(dir, "missing")
	url := "nats://127.0.0.1:4222"
	// The errors name the files, never what is in them.
	var seeds []string
	for _, f := range []string{accountSeed, expiredCreds, goodCreds} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		seeds = append(seeds, string(seed))
	}

	for _, tc := range []struct {
		name string
		o    natsconn.Options
		want []string
	}{
		{"no URL", natsconn.Options{URLs: " "}, []string{"NATS_URL"}},
		{"creds missing", natsconn.Options{URLs: url, CredsFile: missing}, []string{"NATS_CREDS", "no such file"}},
		{"creds garbage", natsconn.Options{URLs: url, CredsFile: garbage}, []string{"NATS_CREDS"}},
		{"creds expired", natsconn.Options{URLs: url, CredsFile: expiredCreds}, []string{"NATS_CREDS", "expired"}},
		{"nkey missing", natsconn.Options{URLs: url, NKeySeedFile: missing}, []string{"NATS_NKEY"}},
		{"nkey garbage", natsconn.Options{URLs: url, NKeySeedFile: garbage}, []string{"NATS_NKEY"}},
		{"nkey of an account", natsconn.Options{URLs: url, NKeySeedFile: accountSeed}, []string{"NATS_NKEY"}},
		{"user without password", natsconn.Options{URLs: url, User: "u"}, []string{"NATS_PASSWORD"}},
		{"password without user", natsconn.Options{URLs: url, Password: "p"}, []string{"NATS_USER"}},
		{"two auth methods", natsconn.Options{URLs: url, CredsFile: goodCreds, User: "u", Password: "p"}, []string{"NATS_CREDS", "NATS_USER/NATS_PASSWORD", "only one"}},
		{"CA missing", natsconn.Options{URLs: url, CAFile: missing}, []string{"NATS_CA", "no such file"}},
		{"CA garbage", natsconn.Options{URLs: url, CAFile: garbage}, []string{"NATS_CA", "no PEM certificate"}},
		{"cert without key", natsconn.Options{URLs: url, CAFile: ca, CertFile: cliCert}, []string{"NATS_KEY"}},
		{"key without cert", natsconn.Options{URLs: url, CAFile: ca, KeyFile: cliKey}, []string{"NATS_CERT"}},
		{"cert and key mismatch", natsconn.Options{URLs: url, CAFile: ca, CertFile: cliCert, KeyFile: garbage}, []string{"NATS_CERT/NATS_KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := natsconn.Connect(tc.o, nil)
			if err == nil {
				nc.Close()
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			for _, seed := range seeds {
				if strings.Contains(err.Error(), seed) {
					t.Errorf("error %q shows an nkey seed", err)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const wait, maxWait = 100 * time.Millisecond, 2 * time.Second
	delay := natsconn.Backoff(wait, maxWait)
	for n := 1; n <= 100; n++ {
		base := maxWait
		if n <= 5 {
			base = wait << (n - 1) // 100ms, 200ms, 400ms, 800ms, 1.6s
		}
		for range 50 {
			if d := delay(n); d < base/2 || d > base {
				t.Fatalf("pass %d: delay %s outside [%s, %s]", n, d, base/2, base)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	for urls, want := range map[string]string{
		"nats://u:p@a:4222,nats://b:4222,tls://tok@c:4222": "nats://***@a:4222,nats://b:4222,tls://***@c:4222",
		// nats.go dials an entry without a scheme as nats://entry.
		"u:p@a:4222":                  "***@a:4222",
		"nats://a:4222, u:p@b:4222":   "nats://a:4222,***@b:4222",
		"tok@a":                       "***@a",
		"ws://a:4222":                 "ws://a:4222",
		"":                            "",
		"nats://u:p@ss@a:4222":        "nats://***@a:4222", // url.Parse splits at the last '@'
		"nats://u:p/ss#x@a:4222":      "nats://***@a:4222", // url.Parse rejects it; masked still
		"u:pa://ss@a:4222":            "***@a:4222",        // "u:pa" is no scheme
		"  tls://u:p@a:4222  ,b:4222": "tls://***@a:4222,b:4222",
	} {
		if got := natsconn.Redact(urls); got != want {
			t.Errorf("Redact(%q) = %q, want %q", urls, got, want)
		}
	}
}

// Credentials in NATS_URL reach neither a log line nor an error: not
// without a scheme ("user:pass@host", which nats.go dials as
// nats://user:pass@host), not as a token ("nats://token@host", which
// url.URL.Redacted leaves in place), not in a URL url.Parse rejects, whose
// error quotes it whole.
func TestURLCredentialsAreNotShown(t *testing.T) {
	const password, token = "s3cret-pw", "s3cret-token"
	hostPort := func(ns *server.Server) string { return ns.Addr().String() }
	userServer := natstest.StartServer(t, func(o *server.Options) { o.Username, o.Password = "alice", password })
	tokenServer := natstest.StartServer(t, func(o *server.Options) { o.Authorization = token })
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	var out testlog.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var shown []string // every error's text

	for name, urls := range map[string]string{
		"user and password without a scheme": "alice:" + password + "@" + hostPort(userServer),
		"second URL of a list":               "nats://" + dead + ", alice:" + password + "@" + hostPort(userServer),
		"token":                              "nats://" + token + "@" + hostPort(tokenServer),
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := natsconn.Connect(natsconn.Options{URLs: urls, ReconnectWait: time.Millisecond}, log)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := natsconn.WaitConnected(ctx, nc); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, nc)
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		nc, err := natsconn.Connect(natsconn.Options{URLs: "alice:" + password + "@" + dead, ReconnectWait: time.Millisecond}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		err = natsconn.WaitConnected(ctx, nc)
		if err == nil {
			t.Fatal("connected to a port nothing listens on")
		}
		shown = append(shown, err.Error())
	})

	for urls, want := range map[string]string{
		"nats://alice:" + password + "@127.0.0.1:42x2":       "invalid port",
		"alice:" + password + "@127.0.0.1:42x2":              "invalid port",
		"nats://127.0.0.1:4222,alice:" + password + "@:42x2": "invalid port",
		"nats://" + token + "@127.0.0.1:42x2":                "invalid port",
		"nats://alice:" + password + "/x@127.0.0.1:4222":     "percent-encode", // url.Parse: invalid port ":s3cret-pw"
		"nats://alice:" + password + "%zz@127.0.0.1:4222":    "percent-encode", // url.Parse: invalid URL escape
		"nats://alice:" + password + "@127.0.0.1:4222/\x7f":  "invalid control character",
		// A ',' in the password splits the list there, which nats.go
		// does too: refused without quoting either part.
		"nats://alice:" + password + ",more@127.0.0.1:4222": "%2C",
		"nats://alice:" + password + ",a,b@127.0.0.1:4222":  "%2C",
	} {
		_, err := natsconn.Connect(natsconn.Options{URLs: urls}, log)
		if err == nil {
			t.Errorf("Connect(%q) accepted", urls)
			continue
		}
		if !strings.Contains(err.Error(), "NATS_URL") || !strings.Contains(err.Error(), want) {
			t.Errorf("Connect(%q): %v, want a NATS_URL error saying %q", urls, err, want)
		}
		shown = append(shown, err.Error())
	}

	logged := out.String()
	if !strings.Contains(logged, "nats connected") || !strings.Contains(logged, "nats unreachable") {
		t.Fatalf("the log lacks the lines that show URLs:\n%s", logged)
	}
	for _, text := range append(shown, logged) {
		if strings.Contains(text, "s3cret") {
			t.Errorf("credentials shown:\n%s", text)
		}
	}
}

// The embedded server of ordersd is reached in process, without TCP.
func TestInProcessServer(t *testing.T) {
	ns := natstest.StartServer(t, func(o *server.Options) { o.JetStream = true })
	nc := connect(t, natsconn.Options{URLs: ns.ClientURL()}, nats.InProcessServer(ns))
	roundTrip(t, nc)
	if got := nc.ConnectedAddr(); got != "pipe" {
		t.Fatalf("connected to %q, want the in-process pipe", got)
	}
}

// A server that goes silent without closing the connection (a partition
// dropping packets) is left for another one in NATS_URL once pings go
// unanswered. Before, nats.go's defaults (a ping every 2 minutes) kept the
// connection CONNECTED to it for minutes, every request timing out.
func TestSilentServerIsLeftForAnother(t *testing.T) {
	s1 := natstest.StartServer(t, nil)
	s2 := natstest.StartServer(t, nil)
	proxy, err := tcpproxy.Start(tcpproxy.To(strings.TrimPrefix(s1.ClientURL(), "nats://")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	reconnected := make(chan string, 4)
	nc := connect(t, natsconn.Options{URLs: "nats://" + proxy.Addr() + "," + s2.ClientURL(), PingInterval: 100 * time.Millisecond,
		ReconnectWait: time.Millisecond, MaxReconnectWait: 10 * time.Millisecond},
		nats.DontRandomize(), nats.ReconnectHandler(func(nc *nats.Conn) { reconnected <- nc.ConnectedUrl() }))
	if nc.ConnectedUrl() != "nats://"+proxy.Addr() {
		t.Fatalf("connected to %s first; want the proxy", nc.ConnectedUrl())
	}
	proxy.SetMode(tcpproxy.Drop)
	select {
	case url := <-reconnected:
		if url != s2.ClientURL() {
			t.Fatalf("reconnected to %s; want the server that answers, %s", url, s2.ClientURL())
		}
	case <-time.After(time.Minute):
		t.Fatalf("still on the silent server after a minute (status %v)", nc.Status())
	}
	roundTrip(t, nc)
}

// Closing a connection on purpose is no error, even after an asynchronous
// error (a permission violation) the log already reported. Before, every
// shutdown after one logged it again at ERROR.
func TestCleanCloseIsNoError(t *testing.T) {
	srv := natstest.StartServer(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "u", Password: "p", Permissions: &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{"forbidden"}}}}}
	})
	rec := &logRecorder{}
	violated, closed := make(chan struct{}, 1), make(chan struct{})
	nc, err := natsconn.Connect(natsconn.Options{URLs: srv.ClientURL(), User: "u", Password: "p"}, slog.New(rec),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {
			select {
			case violated <- struct{}{}:
			default:
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := natsconn.WaitConnected(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("forbidden", nil); err != nil {
		t.Fatal(err)
	}
	<-violated
	if nc.LastError() == nil {
		t.Fatal("no last error after the permission violation")
	}
	nc.Close()
	<-closed
	if n := rec.count("ERROR nats connection closed"); n != 0 {
		t.Fatalf("a clean close logged an error: %q", rec.msgs)
	}
}
