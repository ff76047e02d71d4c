package tlsconfig_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"testing"

	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// levels is a slog handler that records the level of each record.
type levels struct {
	mu  sync.Mutex
	got []slog.Level
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, r.Level)
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

func (l *levels) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, got := range l.got {
		if got == level {
			n++
		}
	}
	return n
}

// A rotation whose files do not load together is told to the operator once,
// however many handshakes follow, while the previous certificate is still
// presented; once the files change again and load, that is told too and the
// new certificate presented. Before, the failure was silent, and every
// handshake read and parsed both files again.
func TestFailedReloadIsLoggedOnceAndNotRetriedUntilTheFilesChange(t *testing.T) {
	dir := t.TempDir()
	_, srvCert, srvKey, _, _ := tlstest.Generate(t, dir)
	log := &levels{}
	scfg, err := tlsconfig.Server(srvCert, srvKey, "", tlsconfig.WithLogger(slog.New(log)))
	if err != nil {
		t.Fatal(err)
	}
	first, err := scfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	_, newCert, newKey, _, _ := tlstest.Generate(t, t.TempDir())
	replace(t, newCert, srvCert) // its key not yet
	for range 5 {
		if got, _ := scfg.GetCertificate(&tls.ClientHelloInfo{}); got != first {
			t.Fatal("a certificate without its key replaced the served certificate")
		}
	}
	if n := log.count(slog.LevelWarn); n != 1 {
		t.Fatalf("%d warnings over five handshakes after a rotation that does not load, want 1", n)
	}
	replace(t, newKey, srvKey)
	got, _ := scfg.GetCertificate(&tls.ClientHelloInfo{})
	if got == first {
		t.Fatal("the rotation completed, and the previous certificate is still presented")
	}
	if log.count(slog.LevelWarn) != 1 || log.count(slog.LevelInfo) != 1 {
		t.Fatalf("after the rotation completed: %d warnings and %d notices, want 1 and 1", log.count(slog.LevelWarn), log.count(slog.LevelInfo))
	}
}
