package app

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// httpErrorLog is the log ordersd's HTTP servers report their own errors
// to (an accept that failed, a handler that panicked, a TLS handshake that
// failed): ordersd's JSON log, where net/http's default, the standard
// library's log, writes a plain line without a level beside it, which a
// JSON log pipeline cannot read.
func httpErrorLog(l *slog.Logger) *log.Logger { return log.New(httpErrors{l}, "", 0) }

// httpErrors writes each of net/http's reports as a log record: at warn,
// but a failed TLS handshake at debug. That one is the client's doing, and
// a load balancer's TCP check, which connects and closes without a word,
// makes one every few seconds.
type httpErrors struct{ log *slog.Logger }

func (w httpErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, "http server", "err", msg)
	return len(p), nil
}
