package main

import (
	"bytes"
	"io"
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
// runnable waits and, with --top, no more than that many of what held the
// processors; it refuses anything but one trace and positive bounds,
// with the usage on stderr, and -h prints the usage alone.
func TestWaitsReadsATraceFromAFileOrStdin(t *testing.T) {
	tr := pingPongTrace(t)
	file := filepath.Join(t.TempDir(), "trace.out")
	if err := os.WriteFile(file, tr, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{file}, {"--over", "1ms", "--top", "3", "-"}} {
		var out bytes.Buffer
		if err := runWaits(args, bytes.NewReader(tr), &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.HasPrefix(out.String(), "runnable waits: ") || !strings.Contains(out.String(), "\nwaits over ") {
			t.Fatalf("%v printed:\n%s", args, out.String())
		}
	}
	// Every wait is long over a nanosecond: one line of what held the
	// processors, after the three of the summary.
	var out bytes.Buffer
	if err := runWaits([]string{"--over", "1ns", "--top", "1", file}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 4 || !strings.HasSuffix(lines[2], "started in:") {
		t.Fatalf("--top 1 printed:\n%s", out.String())
	}
	for _, args := range [][]string{{}, {file, file}, {"--over", "0", file}, {"--top", "0", file}, {"--no-such-flag", file}} {
		var stderr bytes.Buffer
		if err := runWaits(args, strings.NewReader(""), io.Discard, &stderr); err == nil || !strings.HasPrefix(stderr.String(), "usage: ") {
			t.Fatalf("%v: err %v, stderr %q", args, err, stderr.String())
		}
	}
	if err := runWaits([]string{filepath.Join(t.TempDir(), "none")}, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("a missing file: no error")
	}
	if err := runWaits([]string{"-"}, strings.NewReader("not a trace"), io.Discard, io.Discard); err == nil {
		t.Fatal("garbage on stdin: no error")
	}
	var help bytes.Buffer
	if err := runWaits([]string{"-h"}, nil, &help, io.Discard); err != nil || !strings.HasPrefix(help.String(), "usage: ") {
		t.Fatalf("-h: err %v, printed %q", err, help.String())
	}
}
