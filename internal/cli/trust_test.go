package cli_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/orderstream/orderstream/internal/cli"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// A server whose certificate --ca does not trust is a mistake no retry
// mends: a call or a watch exits 5 with it at once, not 4 ("unavailable")
// after retrying it for --timeout.
func TestUntrustedServerCertificateIsNotRetried(t *testing.T) {
	_, cert, key, _, _ := tlstest.Generate(t, t.TempDir())
	otherCA, _, _, _, _ := tlstest.Generate(t, t.TempDir())
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}})))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	for _, args := range [][]string{{"orders", "get", "o-1"}, {"orders", "watch", "o-1"}} {
		r := run(t, lis.Addr().String(), append([]string{"--ca", otherCA, "--timeout", "3s"}, args...)...)
		if r.code != cli.ExitOther {
			t.Errorf("%v against an untrusted certificate: exit %d, want %d: %s", args, r.code, cli.ExitOther, r.stderr)
		}
	}
}
