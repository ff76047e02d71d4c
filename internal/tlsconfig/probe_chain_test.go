package tlsconfig_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/tlsconfig"
)

// issue makes a certificate from tmpl signed by parent (self-signed when
// nil) and returns it, its key and its DER.
func issue(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key, der
}

// A server certificate file is often a full chain: the server's own
// certificate followed by the intermediate that issued it. A probe trusts
// the server's own certificate, not everything that intermediate issued:
// a server presenting another name's certificate from it is refused
// (ordersd rebuild would otherwise send it the admin token). Before, every
// certificate of the file was a trusted root.
func TestProbeTrustsTheOwnCertificateNotItsChain(t *testing.T) {
	ca := func(name string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	server := func(name string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	}
	root, rootKey, _ := issue(t, ca("root"), nil, nil)
	inter, interKey, interDER := issue(t, ca("intermediate"), root, rootKey)
	_, ownKey, ownDER := issue(t, server("orders.internal"), inter, interKey)
	_, otherKey, otherDER := issue(t, server("elsewhere.example"), inter, interKey)
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	keyPEM := func(k *ecdsa.PrivateKey) *pem.Block {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	cert := func(der []byte) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: der} }
	ownChain := write("own.pem", cert(ownDER), cert(interDER))
	own := serveTLSFiles(t, ownChain, write("own-key.pem", keyPEM(ownKey)))
	other := serveTLSFiles(t, write("other.pem", cert(otherDER), cert(interDER)), write("other-key.pem", keyPEM(otherKey)))
	p, err := tlsconfig.Probe("", ownChain)
	if err != nil {
		t.Fatal(err)
	}
	handshake := func(addr string) error {
		c, err := tls.Dial("tcp", addr, p)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(own); err != nil {
		t.Fatalf("own server: %v", err)
	}
	if err := handshake(other); err == nil {
		t.Fatal("a server presenting another name's certificate from the same intermediate was trusted")
	}
	// With the intermediate as TLS_CA, its certificates are trusted, as
	// that setting says.
	p, err = tlsconfig.Probe(write("ca.pem", cert(interDER)), ownChain)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(other); err != nil {
		t.Fatalf("with the intermediate as CA: %v", err)
	}
}
