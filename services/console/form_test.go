package console_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// serveConsole serves a console of cfg on a loopback listener.
func serveConsole(t *testing.T, cfg consolepkg.Config) *httptest.Server {
	t.Helper()
	c, err := consolepkg.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv
}

// stubConn serves the services register adds on a loopback gRPC server and
// returns a client connection to it.
func stubConn(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// A post's form is read within the form timeout and at most 64 KiB of it:
// a client that sends part of a body and then nothing is answered 408 and
// its connection closed, one that sends too much 413. Before, a sign-in or
// any other post whose body never came held its handler, and the
// connection, for as long as the client liked.
func TestFormsAreReadWithinBounds(t *testing.T) {
	// The form is refused before any service is called: these connections
	// are never used.
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// A console whose form timeout ends the trickled bodies at once, and one
	// whose timeout no loaded machine reaches, for the bodies too large.
	quickSrv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn, FormTimeout: 100 * time.Millisecond})
	slowSrv := serveConsole(t, consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		ctype  string
		length int
		body   string
		want   int
	}{
		{"trickled", quickSrv, form, 65000, "token=a", http.StatusRequestTimeout},
		// ParseForm reads only urlencoded forms: the rest is read too.
		{"trickled, multipart", quickSrv, "multipart/form-data; boundary=xyz", 60000, "--xyz\r\n", http.StatusRequestTimeout},
		{"trickled, text", quickSrv, "text/plain", 60000, "token=a", http.StatusRequestTimeout},
		{"too large", slowSrv, form, 70000, "token=" + strings.Repeat("a", 70000-6), http.StatusRequestEntityTooLarge},
		{"too large, text", slowSrv, "text/plain", 70000, strings.Repeat("a", 70000), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", tc.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			head := fmt.Sprintf("POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", tc.ctype, tc.length)
			if _, err := io.WriteString(nc, head+tc.body); err != nil {
				t.Fatal(err)
			}
			// The deadline bounds how long the test waits, not the
			// console.
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(nc)
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("answered %s, want %d", res.Status, tc.want)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after its %d the console holds the connection: %v", res.StatusCode, err)
			}
		})
	}
}
