package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

func TestHealthcheckSubcommand(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	cfg, err := config.FromMap(map[string]string{"HTTP_ADDR": strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	if code := subcommand(t.Context(), cfg, "healthcheck"); code != 0 {
		t.Fatalf("healthy server: exit %d", code)
	}
	healthy = false
	if code := subcommand(t.Context(), cfg, "healthcheck"); code != 1 {
		t.Fatalf("unhealthy server: exit %d", code)
	}
	if code := subcommand(t.Context(), cfg, "dance"); code != 2 {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:8080": "127.0.0.1:8080", ":50051": "127.0.0.1:50051", "10.0.0.5:1": "10.0.0.5:1"} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

// selfSigned writes a self-signed server certificate for dnsName only (no
// IP address, as for a container's service name) and its key into dir.
func selfSigned(t *testing.T, dir, dnsName string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, dnsName+".pem"), filepath.Join(dir, dnsName+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
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
	svcCert, svcKey := selfSigned(t, dir, "command")
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
		return subcommand(t.Context(), cfg, "healthcheck")
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
