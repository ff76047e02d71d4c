package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// signalWriter keeps what is written to it and closes hit the first time a
// write contains needle.
type signalWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	needle []byte
	hit    chan struct{}
	once   sync.Once
}

func newSignalWriter(needle string) *signalWriter {
	return &signalWriter{needle: []byte(needle), hit: make(chan struct{})}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(p, w.needle) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(p), nil
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// With TLS_CERT, a connection to the HTTP listener that ends before its
// handshake (a load balancer's TCP check, a probe speaking plain HTTP) is
// reported by net/http. The report reaches ordersd's own log as a JSON
// line, at debug since a TCP check makes one every few seconds, not the
// standard library's log, which writes a plain line without a level to
// stderr, outside the JSON log.
func TestHTTPServerErrorsGoToTheJSONLog(t *testing.T) {
	const needle = "TLS handshake error"
	std := newSignalWriter(needle)
	prevOut := log.Writer()
	log.SetOutput(std)
	t.Cleanup(func() { log.SetOutput(prevOut) })

	own := newSignalWriter(needle)
	logger := slog.New(slog.NewJSONHandler(own, &slog.HandlerOptions{Level: slog.LevelDebug}))

	_, cert, key, _, _ := tlstest.Generate(t, t.TempDir())
	cfg := apptest.Config(t, map[string]string{"ROLES": "command", "TLS_CERT": cert, "TLS_KEY": key})
	ctx, cancel := context.WithCancel(t.Context())
	listening := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, logger, nil, app.WithListening(func(a app.Addrs) { listening <- a }))
	}()
	t.Cleanup(func() { cancel(); <-done })
	var addrs app.Addrs
	select {
	case addrs = <-listening:
	case err := <-done:
		t.Fatalf("ordersd stopped: %v", err)
	}

	// A TCP check: connect, then close before any TLS is spoken.
	c, err := net.Dial("tcp", addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	select {
	case <-own.hit:
		for line := range strings.Lines(own.String()) {
			var rec struct{ Level, Err string }
			if strings.Contains(line, needle) && (json.Unmarshal([]byte(line), &rec) != nil || rec.Level != "DEBUG" || !strings.Contains(rec.Err, needle)) {
				t.Fatalf("the failed handshake was logged as %q; want a JSON line at DEBUG carrying net/http's report", line)
			}
		}
	case <-std.hit:
		t.Fatalf("net/http's error went to the standard library's log as plain text, not to ordersd's JSON log:\n%s", std.String())
	case <-t.Context().Done():
		t.Fatal("no report of the failed handshake anywhere")
	}
}
