package main

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// healthcheck probes /healthz, the process running; with --ready it probes
// /readyz, the node serving, which is what a service waiting on it (compose's
// depends_on) needs: a node that has not reached NATS, or whose read model
// is catching up, is alive and not ready.
func TestHealthcheckSubcommand(t *testing.T) {
	var healthy, ready atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && healthy.Load() || r.URL.Path == "/readyz" && ready.Load() {
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg, err := config.FromMap(map[string]string{"HTTP_ADDR": strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	live, readiness := []string{"healthcheck"}, []string{"healthcheck", "--ready"}
	if code := subcommand(t.Context(), cfg, live, io.Discard); code != 0 {
		t.Fatalf("healthy server: exit %d", code)
	}
	if code := subcommand(t.Context(), cfg, readiness, io.Discard); code != 1 {
		t.Fatalf("--ready of a server alive and not ready: exit %d, want 1", code)
	}
	ready.Store(true)
	if code := subcommand(t.Context(), cfg, readiness, io.Discard); code != 0 {
		t.Fatalf("--ready of a ready server: exit %d", code)
	}
	healthy.Store(false)
	if code := subcommand(t.Context(), cfg, live, io.Discard); code != 1 {
		t.Fatalf("unhealthy server: exit %d", code)
	}
	for _, args := range [][]string{{"dance"}, {"healthcheck", "--readyz"}, {"rebuild", "--ready"}} {
		if code := subcommand(t.Context(), cfg, args, io.Discard); code != 2 {
			t.Errorf("ordersd %q: exit %d, want 2", args, code)
		}
	}
}

// tlsHealthServer serves /healthz over TLS with the given key pair.
func tlsHealthServer(t *testing.T, certFile, keyFile string, healthy *atomic.Bool) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// With TLS_CERT, the probe speaks HTTPS to its own listener and trusts the
// server's own certificate or TLS_CA, whatever name the certificate carries.
func TestHealthcheckOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, srvKey, _, _ := tlstest.Generate(t, dir)
	otherCA, otherCert, otherKey, _, _ := tlstest.Generate(t, t.TempDir())
	svcCert, svcKey := tlstest.SelfSigned(t, dir, "command")
	var healthy atomic.Bool
	healthy.Store(true)

	check := func(addr string, vars map[string]string) int {
		t.Helper()
		all := map[string]string{"HTTP_ADDR": addr}
		for k, v := range vars {
			all[k] = v
		}
		cfg, err := config.FromMap(all)
		if err != nil {
			t.Fatal(err)
		}
		return subcommand(t.Context(), cfg, []string{"healthcheck"}, io.Discard)
	}
	caSigned := tlsHealthServer(t, srvCert, srvKey, &healthy)
	for name, tc := range map[string]struct {
		addr string
		vars map[string]string
		want int
	}{
		"own certificate":             {caSigned, map[string]string{"TLS_CERT": srvCert, "TLS_KEY": srvKey}, 0},
		"TLS_CA":                      {caSigned, map[string]string{"TLS_CERT": srvCert, "TLS_KEY": srvKey, "TLS_CA": ca}, 0},
		"name is not the dialled one": {tlsHealthServer(t, svcCert, svcKey, &healthy), map[string]string{"TLS_CERT": svcCert, "TLS_KEY": svcKey}, 0},
		"server of another CA":        {tlsHealthServer(t, otherCert, otherKey, &healthy), map[string]string{"TLS_CERT": srvCert, "TLS_KEY": srvKey, "TLS_CA": ca}, 1},
		"TLS_CA of another CA":        {caSigned, map[string]string{"TLS_CERT": svcCert, "TLS_KEY": svcKey, "TLS_CA": otherCA}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			if got := check(tc.addr, tc.vars); got != tc.want {
				t.Fatalf("exit %d, want %d", got, tc.want)
			}
		})
	}
	healthy.Store(false)
	if got := check(caSigned, map[string]string{"TLS_CERT": srvCert, "TLS_KEY": srvKey}); got != 1 {
		t.Fatalf("unhealthy over TLS: exit %d, want 1", got)
	}
}

// The help lists every subcommand and every variable of config.Config (read
// here from the struct itself) with its default and a meaning.
func TestUsageListsEveryVariable(t *testing.T) {
	for _, arg := range []string{"help", "-h", "--help"} {
		if !isHelp(arg) {
			t.Errorf("%q is not taken as a request for help", arg)
		}
	}
	var b strings.Builder
	if err := usage(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, sub := range []string{"rebuild", "healthcheck", "help"} {
		if !strings.Contains(out, "ordersd "+sub) {
			t.Errorf("help does not list the subcommand %s", sub)
		}
	}
	lines := strings.Split(out, "\n")
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue
		}
		if f.Tag.Get("help") == "" {
			t.Errorf("Config.%s (%s) has no help tag", f.Name, name)
		}
		found := false
		for _, l := range lines {
			fields := strings.Fields(l)
			if len(fields) < 3 || fields[0] != name {
				continue
			}
			found = true
			if d := f.Tag.Get("envDefault"); d != "" && fields[1] != d {
				t.Errorf("help shows %s's default as %q, the struct says %q", name, fields[1], d)
			}
		}
		if !found {
			t.Errorf("help does not list %s (Config.%s) with a default and a meaning", name, f.Name)
		}
	}
}

// ordersd rebuild's errors name ordersd, not the ordersctl it shares code
// with.
func TestRebuildErrorsNameOrdersd(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	cfg, err := config.FromMap(map[string]string{"GRPC_ADDR": addr})
	if err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	if code := subcommand(t.Context(), cfg, []string{"rebuild"}, &errOut); code == 0 {
		t.Fatal("rebuild against no server succeeded")
	}
	if got := errOut.String(); !strings.HasPrefix(got, "ordersd rebuild: ") || strings.Contains(got, "ordersctl") {
		t.Fatalf("rebuild error: %q", got)
	}
}

// ordersd rebuild rebuilds the read model of the ordersd on GRPC_ADDR and
// prints the outcome; a token the server does not accept is refused.
func TestRebuildSubcommand(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("admin-token-0123456789 root admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := apptest.Start(t, map[string]string{"DATA_DIR": t.TempDir(), "AUTH_TOKENS_FILE": tokens})
	cfg, err := config.FromMap(map[string]string{"GRPC_ADDR": addrs.GRPC})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if code := rebuild(t.Context(), cfg, "admin-token-0123456789", &out, &errOut, nil); code != 0 || !strings.Contains(out.String(), "swapped: true") {
		t.Fatalf("rebuild: exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
	if code := rebuild(t.Context(), cfg, "wrong", io.Discard, io.Discard, nil); code == 0 {
		t.Fatal("rebuild with a token the server does not accept succeeded")
	}
}
