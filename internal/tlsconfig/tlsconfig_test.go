package tlsconfig_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveGRPC starts a TLS gRPC server with the health service on loopback and
// returns its address.
func serveGRPC(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// check calls the health service once over a fresh connection.
func check(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v", resp.GetStatus())
	}
	return nil
}

func TestGRPCMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, srvKey, cliCert, cliKey := tlstest.Generate(t, dir)
	scfg, err := tlsconfig.Server(srvCert, srvKey, ca)
	if err != nil {
		t.Fatal(err)
	}
	if scfg.MinVersion != tls.VersionTLS12 || scfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("MinVersion %x, ClientAuth %v", scfg.MinVersion, scfg.ClientAuth)
	}
	addr := serveGRPC(t, scfg)

	t.Run("client certificate accepted", func(t *testing.T) {
		ccfg, err := tlsconfig.Client(ca, cliCert, cliKey, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := check(t, addr, ccfg); err != nil {
			t.Fatalf("health check with a valid client certificate: %v", err)
		}
	})
	t.Run("no client certificate rejected", func(t *testing.T) {
		ccfg, err := tlsconfig.Client(ca, "", "", "")
		if err != nil {
			t.Fatal(err)
		}
		err = check(t, addr, ccfg)
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("without a client certificate: got %v, want UNAVAILABLE", err)
		}
	})
	t.Run("client certificate from another CA rejected", func(t *testing.T) {
		_, _, _, otherCert, otherKey := tlstest.Generate(t, t.TempDir())
		ccfg, err := tlsconfig.Client(ca, otherCert, otherKey, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := check(t, addr, ccfg); status.Code(err) != codes.Unavailable {
			t.Fatalf("with a client certificate of another CA: got %v, want UNAVAILABLE", err)
		}
	})
	t.Run("server from an untrusted CA rejected", func(t *testing.T) {
		otherCA, _, _, _, _ := tlstest.Generate(t, t.TempDir())
		ccfg, err := tlsconfig.Client(otherCA, cliCert, cliKey, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := check(t, addr, ccfg); status.Code(err) != codes.Unavailable {
			t.Fatalf("trusting another CA: got %v, want UNAVAILABLE", err)
		}
	})
	t.Run("server name mismatch rejected", func(t *testing.T) {
		ccfg, err := tlsconfig.Client(ca, cliCert, cliKey, "orders.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if err := check(t, addr, ccfg); status.Code(err) != codes.Unavailable {
			t.Fatalf("with a server name not in the certificate: got %v, want UNAVAILABLE", err)
		}
	})
	t.Run("TLS 1.1 rejected", func(t *testing.T) {
		ccfg, err := tlsconfig.Client(ca, cliCert, cliKey, "")
		if err != nil {
			t.Fatal(err)
		}
		ccfg.MinVersion, ccfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if err := check(t, addr, ccfg); status.Code(err) != codes.Unavailable {
			t.Fatalf("TLS 1.1: got %v, want UNAVAILABLE", err)
		}
	})
}

func TestGRPCServerOnlyTLS(t *testing.T) {
	ca, srvCert, srvKey, _, _ := tlstest.Generate(t, t.TempDir())
	scfg, err := tlsconfig.Server(srvCert, srvKey, "")
	if err != nil {
		t.Fatal(err)
	}
	if scfg.ClientAuth != tls.NoClientCert {
		t.Fatalf("ClientAuth %v without a client CA", scfg.ClientAuth)
	}
	addr := serveGRPC(t, scfg)
	ccfg, err := tlsconfig.Client(ca, "", "", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if err := check(t, addr, ccfg); err != nil {
		t.Fatalf("health check without client certificate: %v", err)
	}
}

// The same server configuration serves HTTPS (the REST gateway, /healthz).
func TestHTTPMutualTLS(t *testing.T) {
	ca, srvCert, srvKey, cliCert, cliKey := tlstest.Generate(t, t.TempDir())
	scfg, err := tlsconfig.Server(srvCert, srvKey, ca)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName+" "+r.Proto)
		}),
		TLSConfig:         scfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // the rejected handshake is expected
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(lis, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	url := "https://" + lis.Addr().String() + "/healthz"

	ccfg, err := tlsconfig.Client(ca, cliCert, cliKey, "")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ccfg, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(body); got != "tlstest-client HTTP/2.0" {
		t.Fatalf("body %q, want the client's name over HTTP/2", got)
	}

	anon, err := tlsconfig.Client(ca, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	anonClient := &http.Client{Transport: &http.Transport{TLSClientConfig: anon}, Timeout: 10 * time.Second}
	defer anonClient.CloseIdleConnections()
	if resp, err := anonClient.Get(url); err == nil {
		resp.Body.Close()
		t.Fatal("request without a client certificate succeeded")
	}
}

// A rewritten certificate is served from the next handshake on, without a
// new configuration.
func TestServerReloadsRotatedCertificate(t *testing.T) {
	dir := t.TempDir()
	_, srvCert, srvKey, _, _ := tlstest.Generate(t, dir)
	scfg, err := tlsconfig.Server(srvCert, srvKey, "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := scfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}

	// Rotate: a new CA's server certificate replaces both files.
	newDir := t.TempDir()
	newCA, newCert, newKey, _, _ := tlstest.Generate(t, newDir)
	replace(t, newCert, srvCert)
	// A half-done rotation (new certificate, old key) keeps the old pair.
	if got, _ := scfg.GetCertificate(&tls.ClientHelloInfo{}); got != first {
		t.Fatal("a mismatched certificate and key replaced the served certificate")
	}
	replace(t, newKey, srvKey)

	addr := serveGRPC(t, scfg)
	ccfg, err := tlsconfig.Client(newCA, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := check(t, addr, ccfg); err != nil {
		t.Fatalf("client trusting the new CA after rotation: %v", err)
	}
}

// replace copies src over dst and moves dst's modification time forward, so
// the change is seen even on file systems with coarse timestamps.
func replace(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	next := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(dst, next, next); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, srvKey, cliCert, cliKey := tlstest.Generate(t, dir)
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"server without key", func() error { _, err := tlsconfig.Server(srvCert, "", ""); return err }, "both a certificate file and a key file"},
		{"server cert missing", func() error { _, err := tlsconfig.Server(missing, srvKey, ""); return err }, "missing.pem"},
		{"server key of another cert", func() error { _, err := tlsconfig.Server(srvCert, cliKey, ""); return err }, "does not match"},
		{"client CA not PEM", func() error { _, err := tlsconfig.Server(srvCert, srvKey, notPEM); return err }, "no PEM certificate"},
		{"client CA missing", func() error { _, err := tlsconfig.Server(srvCert, srvKey, missing); return err }, "client CA"},
		{"client cert without key", func() error { _, err := tlsconfig.Client(ca, cliCert, "", ""); return err }, "both a certificate file and a key file"},
		{"client CA file missing", func() error { _, err := tlsconfig.Client(missing, "", "", ""); return err }, "missing.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fn()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// serveTLS serves HTTPS with cfg on a loopback port until the test ends,
// and returns its address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// serveTLSFiles is serveTLS with the server's certificate and key files.
func serveTLSFiles(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	cfg, err := tlsconfig.Server(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	return serveTLS(t, cfg)
}

// A probe trusts the server's own certificate file or the CA file, ignores
// the dialled name, and refuses to be built without a certificate.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	ca, srvCert, srvKey, _, _ := tlstest.Generate(t, dir)
	_, otherCert, otherKey, _, _ := tlstest.Generate(t, t.TempDir())
	own, other := serveTLSFiles(t, srvCert, srvKey), serveTLSFiles(t, otherCert, otherKey)
	handshake := func(addr string, cfg *tls.Config) error {
		// A name the certificate does not carry: the probe ignores it.
		cfg = cfg.Clone()
		cfg.ServerName = "elsewhere.example"
		c, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, ca := range []string{"", ca} {
		p, err := tlsconfig.Probe(ca, srvCert)
		if err != nil {
			t.Fatal(err)
		}
		if err := handshake(own, p); err != nil {
			t.Errorf("CA %q: own server: %v", ca, err)
		}
		if err := handshake(other, p); err == nil {
			t.Errorf("CA %q: a server of another CA was trusted", ca)
		}
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][2]string{{"", ""}, {"", empty}, {empty, srvCert}, {"", filepath.Join(dir, "missing.pem")}} {
		if _, err := tlsconfig.Probe(bad[0], bad[1]); err == nil {
			t.Errorf("Probe(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

// Own trusts the certificate its server presents now, whatever name it
// carries and whoever signed it, and follows it when it rotates; with a CA
// it also trusts that CA's certificates; it trusts no other server.
func TestOwn(t *testing.T) {
	dir := t.TempDir()
	srvCert, srvKey := tlstest.SelfSigned(t, dir, "orders.internal")
	ca, caCert, caKey, _, _ := tlstest.Generate(t, t.TempDir())
	_, otherCert, otherKey, _, _ := tlstest.Generate(t, t.TempDir())
	scfg, err := tlsconfig.Server(srvCert, srvKey, "")
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(addr string, cfg *tls.Config) error {
		c, err := tls.Dial("tcp", addr, cfg.Clone())
		if err == nil {
			c.Close()
		}
		return err
	}
	own, other, caSigned := serveTLS(t, scfg), serveTLSFiles(t, otherCert, otherKey), serveTLSFiles(t, caCert, caKey)
	o, err := tlsconfig.Own(scfg, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(own, o); err != nil {
		t.Errorf("own server: %v", err)
	}
	if err := handshake(other, o); err == nil {
		t.Error("another server was trusted")
	}
	if err := handshake(caSigned, o); err == nil {
		t.Error("a server of a CA not given was trusted")
	}
	withCA, err := tlsconfig.Own(scfg, ca, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(caSigned, withCA); err != nil {
		t.Errorf("a server of the CA given: %v", err)
	}
	if err := handshake(own, withCA); err != nil {
		t.Errorf("own server, with a CA given: %v", err)
	}
	// The served certificate rotates: Own follows it.
	rotated, rotatedKey := tlstest.SelfSigned(t, t.TempDir(), "orders.internal")
	replace(t, rotated, srvCert)
	replace(t, rotatedKey, srvKey)
	if err := handshake(own, o); err != nil {
		t.Errorf("own server after rotation: %v", err)
	}
	if _, err := tlsconfig.Own(&tls.Config{}, "", "", ""); err == nil {
		t.Error("Own of a configuration not from Server accepted")
	}
}
