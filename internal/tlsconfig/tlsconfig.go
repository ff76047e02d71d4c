// Package tlsconfig builds the *tls.Config values ordersd and its clients use:
// one for servers (gRPC and HTTP share it; with a client CA it is mutual TLS)
// and one for clients (ordersctl, and the gateway dialling the gRPC
// services).
//
// Both speak TLS 1.2 or newer. Certificates are read from PEM files and
// re-read when a file changes, so a rotated certificate (cert-manager, a
// renewed ACME certificate, a Kubernetes secret update) is picked up without a
// restart: every handshake stats the two files, and only a change in
// modification time or size triggers a reload. A reload that fails, such as a
// key written a moment after its certificate, or a pair that does not match,
// keeps the previous certificate, is logged (WithLogger) and is retried once
// either file changes again, not at every handshake: reading and parsing a
// key is a thousand times a stat. The CA bundles are read once.
package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Option configures Server and Client.
type Option func(*options)

type options struct {
	log *slog.Logger
}

// WithLogger logs, as a warning, each reload of a rotated certificate that
// fails (the previous certificate still presented), and, as information,
// the reload that follows such a failure and succeeds. Without it, or with
// nil, failures are not logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.log = l }
}

func collect(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Server returns a server configuration presenting the certificate in
// certFile with the private key in keyFile. With a clientCAFile, every client
// must present a certificate signed by one of its CAs (mutual TLS,
// tls.RequireAndVerifyClientCert); without one, clients are not asked for a
// certificate.
//
// The same configuration serves gRPC (credentials.NewTLS) and HTTP
// (http.Server.ServeTLS, with empty file names): both clone it and add the
// ALPN protocols they need.
func Server(certFile, keyFile, clientCAFile string, opts ...Option) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tlsconfig: a server needs both a certificate file and a key file")
	}
	kp, err := newKeyPair("server", certFile, keyFile, collect(opts).log)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get(), nil },
	}
	if clientCAFile != "" {
		pool, err := LoadCertPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: client CA: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientAccepted returns why a server configured as srv (Server, with a
// client CA) would refuse the client certificate client presents (Client,
// Own), as the TLS handshake verifies it: it must chain to the client CA,
// through the intermediates it carries, and be usable to authenticate a
// client. nil when it would accept it, or when srv verifies no client
// certificate or client presents none.
func ClientAccepted(srv, client *tls.Config) error {
	if srv == nil || srv.ClientCAs == nil || client == nil || client.GetClientCertificate == nil {
		return nil
	}
	c, err := client.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		return fmt.Errorf("tlsconfig: client certificate: %w", err)
	}
	if c == nil || len(c.Certificate) == 0 {
		return errors.New("tlsconfig: no client certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return fmt.Errorf("tlsconfig: client certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: srv.ClientCAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// Client returns a client configuration. caFile holds the CAs that may sign
// the server's certificate; empty trusts the system's roots. certFile and
// keyFile, both or neither, are the client's own certificate for servers
// that require mutual TLS. serverName overrides the name checked against the
// server's certificate; empty lets the caller derive it from the address it
// dials (gRPC does so from the target).
func Client(caFile, certFile, keyFile, serverName string, opts ...Option) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("tlsconfig: CA: %w", err)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "" || keyFile == "":
		return nil, errors.New("tlsconfig: a client certificate needs both a certificate file and a key file")
	default:
		kp, err := newKeyPair("client", certFile, keyFile, collect(opts).log)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get(), nil }
	}
	return cfg, nil
}

// Probe returns a client configuration for a process probing its own TLS
// listener (ordersd healthcheck, ordersd rebuild): it dials the listen
// address (127.0.0.1 for a wildcard), a name the server's certificate
// rarely carries, so the name is not checked. Instead the server must
// present the first certificate in certFile (the server's own: exactly
// that certificate is trusted, not the intermediates a full chain holds
// after it, which issue certificates for other names too) or, when caFile
// is set, one that verifies against the CAs in caFile (so a certificate
// rotated in by the same CA passes too). certFile is required; an
// unreadable file, or one holding no certificate, is an error.
func Probe(caFile, certFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, errors.New("tlsconfig: a probe needs the server's certificate file")
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: probe: %w", err)
	}
	own := firstCertificate(b)
	if own == nil {
		return nil, fmt.Errorf("tlsconfig: probe: %s: no PEM certificate found", certFile)
	}
	var roots *x509.CertPool
	if caFile != "" {
		if roots, err = LoadCertPool(caFile); err != nil {
			return nil, fmt.Errorf("tlsconfig: probe CA: %w", err)
		}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The standard verification would check the dialled name; the
		// certificate is checked below instead, without a name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyOwn(cs, own, roots, "probe", "the one in its certificate file")
		},
	}, nil
}

// firstCertificate returns the DER of the first certificate in the PEM
// data b, or nil when it holds none.
func firstCertificate(b []byte) []byte {
	for {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			return nil
		}
		if block.Type == "CERTIFICATE" {
			return block.Bytes
		}
	}
}

// Own returns a client configuration for a process's calls to its own TLS
// listener, whose server configuration (Server) is srv: they dial
// 127.0.0.1, a name the server's certificate rarely carries, and the
// certificate may be self-signed or from a CA the system does not trust.
// So the name is not checked; instead the server must present the
// certificate srv presents now (it reloads with it), or, when caFile is
// set, one that verifies against the CAs in caFile. certFile and keyFile
// are the client certificate, as for Client, for a listener that requires
// mutual TLS; opts are Client's.
func Own(srv *tls.Config, caFile, certFile, keyFile string, opts ...Option) (*tls.Config, error) {
	if srv == nil || srv.GetCertificate == nil {
		return nil, errors.New("tlsconfig: own: not a server configuration of Server")
	}
	cfg, err := Client(caFile, certFile, keyFile, "", opts...)
	if err != nil {
		return nil, err
	}
	roots := cfg.RootCAs
	cfg.RootCAs = nil
	// The standard verification would check the dialled name and the
	// system's roots; the certificate is checked below instead.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		var own []byte
		if c, err := srv.GetCertificate(&tls.ClientHelloInfo{}); err == nil && c != nil && len(c.Certificate) > 0 {
			own = c.Certificate[0]
		}
		return verifyOwn(cs, own, roots, "own listener", "this process's own")
	}
	return cfg, nil
}

// verifyOwn accepts a server that presents the certificate own (DER; nil
// for none known) or, with roots, one that verifies against them without
// a name (verifyUnnamed). what names the caller and whose the certificate
// in errors.
func verifyOwn(cs tls.ConnectionState, own []byte, roots *x509.CertPool, what, whose string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("tlsconfig: %s: the server presented no certificate", what)
	}
	if own != nil && bytes.Equal(cs.PeerCertificates[0].Raw, own) {
		return nil
	}
	if roots == nil {
		return fmt.Errorf("tlsconfig: %s: the server presented a certificate other than %s", what, whose)
	}
	return verifyUnnamed(cs, roots)
}

// verifyUnnamed verifies the server's presented chain against roots as a
// server certificate, without a name: a process's own listener is dialled
// at its address, which its certificate rarely carries.
func verifyUnnamed(cs tls.ConnectionState, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// LoadCertPool reads a PEM bundle of CA certificates. A file holding no
// certificate at all is an error: silently trusting nothing would only show
// up later as a confusing handshake failure.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

// LoadKeyPair reads a certificate (chain) and its private key and checks that
// they belong together and that the leaf certificate is currently valid.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate %s, key %s: %w", certFile, keyFile, err)
	}
	leaf := cert.Leaf // filled by LoadX509KeyPair unless GODEBUG x509keypairleaf=0
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("certificate %s: %w", certFile, err)
		}
		cert.Leaf = leaf
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("certificate %s expired at %s", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("certificate %s is not valid before %s", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// keyPair holds a certificate and reloads it when its files change.
type keyPair struct {
	role              string
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	certSig fileSig
	keySig  fileSig
	// failedCert and failedKey are the versions of the files the last
	// reload failed on, with failure its error (nil after a success):
	// until either file changes, the failure stands without a read.
	failedCert, failedKey fileSig
	failure               error
	log                   *slog.Logger
}

// fileSig identifies a version of a file well enough to notice a rewrite.
type fileSig struct {
	mod  time.Time
	size int64
}

func statSig(file string) (fileSig, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return fileSig{}, err
	}
	return fileSig{mod: fi.ModTime(), size: fi.Size()}, nil
}

func newKeyPair(role, certFile, keyFile string, log *slog.Logger) (*keyPair, error) {
	kp := &keyPair{role: role, certFile: certFile, keyFile: keyFile, log: log}
	if err := kp.reload(); err != nil {
		return nil, fmt.Errorf("tlsconfig: %s %w", role, err)
	}
	return kp, nil
}

// reload reads both files if either changed since the last successful load
// and since the last failed one. The lock is held by the caller, or the pair
// is not shared yet.
func (kp *keyPair) reload() error {
	cs, err := statSig(kp.certFile)
	if err != nil {
		return err
	}
	ks, err := statSig(kp.keyFile)
	if err != nil {
		return err
	}
	if kp.cert != nil && cs == kp.certSig && ks == kp.keySig {
		return nil
	}
	if kp.failure != nil && cs == kp.failedCert && ks == kp.failedKey {
		return kp.failure
	}
	cert, err := LoadKeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		kp.failedCert, kp.failedKey, kp.failure = cs, ks, err
		if kp.log != nil && kp.cert != nil {
			kp.log.Warn("tls: the "+kp.role+" certificate's files changed but do not load; still presenting the previous certificate until they change again",
				"cert", kp.certFile, "key", kp.keyFile, "err", err)
		}
		return err
	}
	if kp.log != nil && kp.failure != nil {
		kp.log.Info("tls: the "+kp.role+" certificate's files load again", "cert", kp.certFile, "key", kp.keyFile)
	}
	kp.cert, kp.certSig, kp.keySig, kp.failure = &cert, cs, ks, nil
	return nil
}

// get returns the current certificate, reloading it first if its files
// changed. A failed reload keeps serving the last good certificate: a
// rotation caught half-written must not take the listener down.
func (kp *keyPair) get() *tls.Certificate {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	_ = kp.reload()
	return kp.cert
}
