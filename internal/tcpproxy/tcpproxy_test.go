package tcpproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/tcpproxy"
)

// echo serves a line-echoing server on loopback, each line prefixed with
// name, until t ends.
func echo(t *testing.T, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := io.WriteString(c, name+":"+sc.Text()+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

func start(t *testing.T, targets func() []string) *tcpproxy.Proxy {
	t.Helper()
	p, err := tcpproxy.Start(targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type conn struct {
	net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return conn{c, bufio.NewReader(c)}
}

// roundTrip sends line and returns the answer, or the error reading it
// within wait.
func (c conn) roundTrip(line string, wait time.Duration) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return s[:len(s)-1], nil
}

func want(t *testing.T, c conn, line, answer string) {
	t.Helper()
	got, err := c.roundTrip(line, 10*time.Second)
	if err != nil || got != answer {
		t.Fatalf("%q answered %q, %v; want %q", line, got, err, answer)
	}
}

// closed reports whether c was closed by the proxy: reading ends without a
// timeout.
func closed(c conn) bool {
	_, err := c.roundTrip("x", 10*time.Second)
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestForwardDropRefuse(t *testing.T) {
	p := start(t, tcpproxy.To(echo(t, "a")))
	c := dial(t, p.Addr())
	want(t, c, "1", "a:1")

	// A partition: silence on the open connection and on a new one, not
	// a reset.
	p.SetMode(tcpproxy.Drop)
	if _, err := c.roundTrip("2", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("across a dropping proxy: %v, want silence", err)
	}
	during := dial(t, p.Addr())
	if _, err := during.roundTrip("3", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection across a dropping proxy: %v, want silence", err)
	}

	// Healing closes what lost bytes; new connections work.
	p.SetMode(tcpproxy.Forward)
	if !closed(c) || !closed(during) {
		t.Fatal("connections that lost bytes stay open after healing")
	}
	c = dial(t, p.Addr())
	want(t, c, "4", "a:4")

	p.SetMode(tcpproxy.Refuse)
	if !closed(c) {
		t.Fatal("open connection not closed by Refuse")
	}
	if !closed(dial(t, p.Addr())) {
		t.Fatal("new connection not refused")
	}
	p.SetMode(tcpproxy.Forward)
	want(t, dial(t, p.Addr()), "5", "a:5")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, tcpproxy.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

// With several targets, connections go to those that accept them.
func TestTargetsThatAnswer(t *testing.T) {
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	_ = down.Close()
	a, b := echo(t, "a"), echo(t, "b")
	p := start(t, func() []string { return []string{downAddr, a, b} })
	seen := map[string]bool{}
	for i := range 6 {
		got, err := dial(t, p.Addr()).roundTrip("x", 10*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		seen[got] = true
	}
	if !seen["a:x"] || !seen["b:x"] || len(seen) != 2 {
		t.Fatalf("answers %v, want both live targets", seen)
	}
	none := start(t, func() []string { return nil })
	if !closed(dial(t, none.Addr())) {
		t.Fatal("connection kept without a target")
	}
}
