package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testlog"
)

// TestMain runs ordersd's main instead of the tests when a test re-executes
// this binary as ordersd (reexecMain).
func TestMain(m *testing.M) {
	if os.Getenv("ORDERSD_TEST_REEXEC_MAIN") == "1" {
		os.Args = os.Args[:1]
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// ordersd "writes what it holds when it exits" (README, Logs): a second
// SIGTERM during a shutdown that waits for a request ends the process at
// once, and writes the informational lines it held (LOG_FLUSH_INTERVAL)
// first. It exited through os.Exit without them: every informational line
// since the last warning, "ordersd listening" among them, was gone.
func TestSecondSignalWritesTheHeldLogLines(t *testing.T) {
	httpAddr := freeLoopback(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), "ORDERSD_TEST_REEXEC_MAIN=1",
		"DATA_DIR="+t.TempDir(), "GRPC_ADDR="+freeLoopback(t), "HTTP_ADDR="+httpAddr, "NATS_LISTEN=127.0.0.1:0",
		"ROLES=command,query,audit,gateway", "SHUTDOWN_TIMEOUT=10m", "LOG_FLUSH_INTERVAL=1h")
	var stderr testlog.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Ready: /readyz 200 (a bounded poll, as waitStatus does).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ordersd not ready in 30 s; stderr: %s", stderr.String())
		}
	}
	// A request whose handler is known to be running (it asked for the
	// body: 100 Continue) and waits for a body that does not come, which
	// holds the HTTP server's shutdown.
	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "100") {
		t.Fatalf("waiting for 100 Continue: %q %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Shutdown has begun once the HTTP listener is closed.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		conn, err := net.Dial("tcp", httpAddr)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("HTTP listener still open 30 s after SIGTERM")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("after the second signal: %v, want exit status 1", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ordersd still running 30 s after the second signal")
	}
	out := stderr.String()
	if !bytes.Contains([]byte(out), []byte(`"msg":"ordersd listening"`)) {
		t.Fatalf("the informational lines ordersd held are not on stderr after its exit on the second signal; stderr:\n%s", out)
	}
}
