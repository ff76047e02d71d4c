package httpapi

import (
	"net/http"
	"time"

	"github.com/orderstream/orderstream/internal/writewait"
)

// stallLimit bounds how long each write and flush of an answer may wait on
// a client that takes nothing (see WithWriteTimeout and package writewait),
// so that a client that stops reading ends its request rather than holding
// the handler, and a stream's call, until its connection dies.
type stallLimit struct {
	http.ResponseWriter
	rc   *http.ResponseController // of the ResponseWriter
	wait time.Duration
}

func (s *stallLimit) Write(b []byte) (int, error) {
	return writewait.Write(s.ResponseWriter, s.rc, b, s.wait)
}

// Flush is what grpc-gateway's streams ask of their writer.
func (s *stallLimit) Flush() { _ = s.FlushError() }

// FlushError is what http.ResponseController's Flush asks of a writer.
func (s *stallLimit) FlushError() error { return writewait.Flush(s.rc, s.wait) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *stallLimit) Unwrap() http.ResponseWriter { return s.ResponseWriter }
