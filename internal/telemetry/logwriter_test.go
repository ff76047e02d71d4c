package telemetry_test

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/telemetry"
)

// recorder is an io.Writer that keeps each write apart and signals it.
type recorder struct {
	mu     sync.Mutex
	writes []string
	fail   error
	wrote  chan struct{}
}

func newRecorder() *recorder { return &recorder{wrote: make(chan struct{}, 1000)} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, string(p))
	select {
	case r.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes)
}

// never is an interval no test waits out.
const never = time.Hour

func TestLogWriterHoldsLinesUntilFlushed(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, never)
	t.Cleanup(func() { _ = w.Close() })
	for _, l := range []string{"a\n", "b\n", "c\n"} {
		if n, err := w.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", l, n, err)
		}
	}
	if got := out.got(); len(got) != 0 {
		t.Fatalf("written before a flush: %q", got)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := out.got(); !slices.Equal(got, []string{"a\nb\nc\n"}) {
		t.Fatalf("after Flush: writes %q, want the three lines in one, in order", got)
	}
	if err := w.Flush(); err != nil || len(out.got()) != 1 {
		t.Fatalf("a Flush with nothing held wrote: %q, %v", out.got(), err)
	}
}

func TestLogWriterWritesWhenItsBufferIsFull(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, never)
	t.Cleanup(func() { _ = w.Close() })
	line := strings.Repeat("x", 1023) + "\n"
	var sent int
	for sent < telemetry.LogBufferSize {
		_, _ = w.Write([]byte(line))
		sent += len(line)
	}
	got := out.got()
	if len(got) != 1 || len(got[0]) != telemetry.LogBufferSize {
		t.Fatalf("after %d bytes of lines: %d writes, want one of %d bytes", sent, len(got), telemetry.LogBufferSize)
	}
}

func TestLogWriterFlushesOnItsInterval(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, 10*time.Millisecond)
	t.Cleanup(func() { _ = w.Close() })
	_, _ = w.Write([]byte("tick\n"))
	select {
	case <-out.wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("a held line was not written on the interval")
	}
	if got := out.got(); !slices.Equal(got, []string{"tick\n"}) {
		t.Fatalf("writes %q", got)
	}
}

func TestLogWriterCloseWritesWhatItHolds(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, never)
	_, _ = w.Write([]byte("last\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.got(); !slices.Equal(got, []string{"last\n"}) {
		t.Fatalf("after Close: writes %q", got)
	}
	// Closed, it writes each line at once.
	_, _ = w.Write([]byte("after\n"))
	if got := out.got(); !slices.Equal(got, []string{"last\n", "after\n"}) {
		t.Fatalf("a line after Close: writes %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A write that fails is reported, and what it held is dropped: the buffer
// stays bounded, and later lines are written when the output is back.
func TestLogWriterDropsWhatItCouldNotWrite(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, never)
	t.Cleanup(func() { _ = w.Close() })
	out.fail = errors.New("disk full")
	_, _ = w.Write([]byte("lost\n"))
	if err := w.Flush(); err == nil {
		t.Fatal("a failed write was not reported")
	}
	out.fail = nil
	_, _ = w.Write([]byte("kept\n"))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := out.got(); !slices.Equal(got, []string{"kept\n"}) {
		t.Fatalf("writes %q, want only the line after the failure", got)
	}
}

// Lines written from many goroutines come out whole, each once.
func TestLogWriterKeepsConcurrentLinesWhole(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, time.Millisecond)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(w, "%d-%d %s\n", g, i, strings.Repeat("y", i%200))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(strings.Join(out.got(), ""), "\n"), "\n") {
		id, pad, ok := strings.Cut(l, " ")
		var g, i int
		if _, err := fmt.Sscanf(id, "%d-%d", &g, &i); err != nil || !ok || pad != strings.Repeat("y", i%200) || seen[id] {
			t.Fatalf("line %q broken or repeated", l)
		}
		seen[id] = true
	}
	if len(seen) != writers*lines {
		t.Fatalf("%d lines out, want %d", len(seen), writers*lines)
	}
}

// Through FlushOn, an informational line waits for the interval, and a
// warning is written at once, after the lines before it, whatever
// attributes or groups the logger was given.
func TestFlushOnWritesWarningsAtOnce(t *testing.T) {
	out := newRecorder()
	w := telemetry.NewLogWriter(out, never)
	t.Cleanup(func() { _ = w.Close() })
	log := slog.New(telemetry.FlushOn(slog.NewJSONHandler(w, nil), w, slog.LevelWarn)).With("node", "n1").WithGroup("g")
	log.Info("first")
	if got := out.got(); len(got) != 0 {
		t.Fatalf("an info line was written at once: %q", got)
	}
	log.Warn("second")
	got := out.got()
	if len(got) != 1 {
		t.Fatalf("after a warning: %d writes, want the two lines in one", len(got))
	}
	lines := strings.Split(strings.TrimSpace(got[0]), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"first"`) || !strings.Contains(lines[1], `"msg":"second"`) || !strings.Contains(lines[1], `"node":"n1"`) {
		t.Fatalf("after a warning: %q", got[0])
	}
	log.Error("third")
	if got := out.got(); len(got) != 2 || !strings.Contains(got[1], `"msg":"third"`) {
		t.Fatalf("an error was not written at once: %q", got)
	}
}
