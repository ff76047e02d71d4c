// Package writewait bounds how long a write of an HTTP answer may wait on
// a client that takes nothing, without bounding how long a client that
// reads takes: a write deadline is set before each piece of at most Piece
// bytes and each flush, and lifted once it returns.
//
// The deadline is lifted after each write because under HTTP/2 it is a
// timer on the stream that resets the stream when it fires, whether or not
// a write is waiting: a stream quiet for longer than the wait (a watch of an
// order that does not change) would be cut. It is set per piece because
// one Write of a large answer to a slow link can take longer than the wait
// while the client reads all along.
package writewait

import (
	"net/http"
	"time"
)

// Piece is the most a write sends under one deadline.
const Piece = 16 << 10

// Write writes b to w in pieces, each under a deadline wait ahead (set
// through rc, w's ResponseController), and returns the bytes written and
// the first error: os.ErrDeadlineExceeded (wrapped) once a piece waited
// wait. A writer without deadlines (rc refuses them) writes unbounded.
func Write(w http.ResponseWriter, rc *http.ResponseController, b []byte, wait time.Duration) (int, error) {
	n := 0
	for len(b) > 0 {
		p := b[:min(len(b), Piece)]
		_ = rc.SetWriteDeadline(time.Now().Add(wait))
		m, err := w.Write(p)
		_ = rc.SetWriteDeadline(time.Time{})
		n += m
		if err != nil {
			return n, err
		}
		b = b[len(p):]
	}
	return n, nil
}

// Flush flushes rc's writer under a deadline wait ahead, lifted once it
// returns.
func Flush(rc *http.ResponseController, wait time.Duration) error {
	_ = rc.SetWriteDeadline(time.Now().Add(wait))
	err := rc.Flush()
	_ = rc.SetWriteDeadline(time.Time{})
	return err
}

// Writer is an http.ResponseWriter each of whose writes (Write) and
// flushes waits at most its wait on the client, so that a client that
// stops reading ends its request (the write fails) rather than holding the
// handler, and whatever call feeds it, until its connection dies.
type Writer struct {
	http.ResponseWriter
	rc   *http.ResponseController // of the ResponseWriter
	wait time.Duration
}

// NewWriter returns w with each write and flush bounded by wait.
func NewWriter(w http.ResponseWriter, wait time.Duration) *Writer {
	return &Writer{ResponseWriter: w, rc: http.NewResponseController(w), wait: wait}
}

// Write writes b in pieces, each under the wait (see Write).
func (w *Writer) Write(b []byte) (int, error) { return Write(w.ResponseWriter, w.rc, b, w.wait) }

// Flush is what http.Flusher users (grpc-gateway's streams) ask of it.
func (w *Writer) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController's Flush asks of a writer.
func (w *Writer) FlushError() error { return Flush(w.rc, w.wait) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
