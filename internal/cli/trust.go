package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
)

// trustRecorder wraps TLS transport credentials to keep the last handshake
// that failed because the server's certificate is not trusted (another CA,
// another name, expired). gRPC reports it as UNAVAILABLE, as it does a
// server that is down, and retrying it until --timeout only delays the
// answer to a mistake no retry mends.
type trustRecorder struct {
	credentials.TransportCredentials
	failed *atomic.Pointer[error]
}

// ClientHandshake is the wrapped credentials' handshake; it keeps an error
// that says the server's certificate is not trusted, and forgets it once a
// handshake succeeds.
func (t trustRecorder) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := t.TransportCredentials.ClientHandshake(ctx, authority, raw)
	switch {
	case err == nil:
		t.failed.Store(nil)
	case untrustedCertificate(err):
		t.failed.Store(&err)
	}
	return conn, info, err
}

// Clone keeps the record shared, as gRPC clones credentials per
// connection.
func (t trustRecorder) Clone() credentials.TransportCredentials {
	return trustRecorder{t.TransportCredentials.Clone(), t.failed}
}

// untrustedCertificate reports whether err is a handshake's refusal of
// the server's certificate: crypto/tls wraps every failed verification of
// it (another CA, another name, expired) in a CertificateVerificationError.
func untrustedCertificate(err error) bool {
	var verify *tls.CertificateVerificationError
	return errors.As(err, &verify)
}

// untrusted returns, for a call answered UNAVAILABLE, why the server's
// certificate was not trusted, or nil when that was not why: the error
// exits ExitOther, not ExitUnavailable, and is not retried.
func (a *app) untrusted() error {
	if p := a.trust.Load(); p != nil {
		return fmt.Errorf("the server's certificate is not trusted (see --ca and --server-name): %w", *p)
	}
	return nil
}
