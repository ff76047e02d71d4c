package httpapi

import (
	"net/http"
	"time"
)

// stallLimit sets a write deadline wait ahead before each write and flush
// of an answer (see WithWriteTimeout), so that a client that stops reading
// ends its request rather than holding the handler, and a stream's call,
// until its connection dies. net/http lifts the deadline once the answer
// is finished, before the connection serves its next request.
type stallLimit struct {
	http.ResponseWriter
	rc   *http.ResponseController // of the ResponseWriter
	wait time.Duration
}

func (s *stallLimit) Write(b []byte) (int, error) {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait)) // unsupported by some writers: then unbounded
	return s.ResponseWriter.Write(b)
}

// Flush is what grpc-gateway's streams ask of their writer.
func (s *stallLimit) Flush() { _ = s.FlushError() }

// FlushError is what http.ResponseController's Flush asks of a writer.
func (s *stallLimit) FlushError() error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.wait))
	return s.rc.Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *stallLimit) Unwrap() http.ResponseWriter { return s.ResponseWriter }
