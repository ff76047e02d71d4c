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
