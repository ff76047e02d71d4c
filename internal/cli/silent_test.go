package cli_test

import (
	"net"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/cli"
)

// A server that takes the connection and never answers (a hung process, a
// dead node behind a proxy): a watch gives up at --timeout, exit 4, as a
// unary call does. Each attempt waited gRPC's connect timeout, 20 s.
func TestWatchGivesUpAtTimeoutOnASilentServer(t *testing.T) {
	// Never accepted: the kernel's backlog completes the handshake, and
	// nothing ever speaks.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	for _, args := range [][]string{{"orders", "get", "o-1"}, {"orders", "watch", "o-1"}, {"orders", "watch", "--from", "3"}} {
		done := make(chan result, 1)
		go func() { done <- run(t, lis.Addr().String(), append([]string{"--timeout", "500ms"}, args...)...) }()
		select {
		case r := <-done:
			if r.code != cli.ExitUnavailable {
				t.Errorf("%v: exit %d, want %d: %s", args, r.code, cli.ExitUnavailable, r.stderr)
			}
		case <-time.After(15 * time.Second): // under the 20 s a connection attempt waits
			t.Errorf("%v --timeout 500ms: still running after 15 s", args)
			<-done
		}
	}
}
