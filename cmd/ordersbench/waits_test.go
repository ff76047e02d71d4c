package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"
)

// pingPongTrace writes an execution trace of two goroutines handing a
// token back and forth: every hand-off makes one of them runnable.
func pingPongTrace(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("a trace is already running: %v", err)
	}
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	for i := range 1000 {
		ping <- i
		<-pong
	}
	close(ping)
	<-pong
	trace.Stop()
	return buf.Bytes()
}

// ordersbench waits reads a trace from a file or from stdin and prints its
// runnable waits; it refuses anything but one trace and positive bounds.
func TestWaitsReadsATraceFromAFileOrStdin(t *testing.T) {
	tr := pingPongTrace(t)
	file := filepath.Join(t.TempDir(), "trace.out")
	if err := os.WriteFile(file, tr, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{file}, {"--over", "1ms", "--top", "3", "-"}} {
		var out bytes.Buffer
		if err := runWaits(args, bytes.NewReader(tr), &out); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.HasPrefix(out.String(), "runnable waits: ") || !strings.Contains(out.String(), "\nwaits over ") {
			t.Fatalf("%v printed:\n%s", args, out.String())
		}
	}
	for _, args := range [][]string{{}, {file, file}, {"--over", "0", file}, {"--top", "0", file}, {filepath.Join(t.TempDir(), "none")}} {
		if err := runWaits(args, strings.NewReader(""), new(bytes.Buffer)); err == nil {
			t.Fatalf("%v: no error", args)
		}
	}
	if err := runWaits([]string{"-"}, strings.NewReader("not a trace"), new(bytes.Buffer)); err == nil {
		t.Fatal("garbage on stdin: no error")
	}
}
