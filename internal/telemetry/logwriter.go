package telemetry

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// LogWriter batches log lines into few writes: a line goes out with the
// others at the next flush, which comes every interval, as soon as
// LogBufferSize bytes wait, or when Flush is called (FlushOn calls it for
// every warning and error, so that those and everything before them are
// out at once).
//
// Why: ordersd logs a line per RPC, and one write(2) per line was a third
// of what a line cost (6% of ordersd's CPU under GetOrder at its peak).
// The price is that a process killed outright (SIGKILL, out of memory)
// loses the informational lines of its last interval; Close, which ordersd
// calls on its way out, writes them.
type LogWriter struct {
	mu     sync.Mutex
	out    io.Writer
	buf    []byte
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

// LogBufferSize is how many bytes of lines a LogWriter holds before it
// writes them without waiting for its interval.
const LogBufferSize = 64 << 10

// NewLogWriter returns a LogWriter writing to out every interval (at
// least a millisecond). Close it to stop its timer and write what it
// holds.
func NewLogWriter(out io.Writer, interval time.Duration) *LogWriter {
	w := &LogWriter{out: out, buf: make([]byte, 0, LogBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	t := time.NewTicker(max(interval, time.Millisecond))
	go func() {
		defer close(w.done)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				_ = w.Flush() // as slog does: a line that cannot be written has nowhere to be reported
			}
		}
	}()
	return w
}

// Write holds p (one log line, as slog's handlers write them) for the next
// flush; once closed, it writes p at once. Its error is that of a write it
// had to make, its buffer full.
func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.out.Write(p)
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= LogBufferSize {
		if err := w.flushLocked(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Flush writes what the writer holds, and returns the write's error.
func (w *LogWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *LogWriter) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.out.Write(w.buf)
	// What could not be written is dropped, not retried with every later
	// line: the buffer stays bounded.
	w.buf = w.buf[:0]
	return err
}

// Close stops the writer's timer and writes what it holds; later lines are
// written at once. It returns the last write's error.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	err := w.flushLocked()
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	return err
}

// FlushOn wraps h, which writes to w, so that a record at level or above
// (and every line before it) is written before Handle returns: a warning
// or an error is not left waiting for w's interval, nor lost with it.
func FlushOn(h slog.Handler, w *LogWriter, level slog.Level) slog.Handler {
	return flushOn{h, w, level}
}

type flushOn struct {
	slog.Handler
	w     *LogWriter
	level slog.Level
}

func (h flushOn) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushOn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushOn{h.Handler.WithAttrs(attrs), h.w, h.level}
}

func (h flushOn) WithGroup(name string) slog.Handler {
	return flushOn{h.Handler.WithGroup(name), h.w, h.level}
}
