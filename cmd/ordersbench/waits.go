package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/orderstream/orderstream/internal/schedwait"
)

// runWaits is "ordersbench waits TRACE": it reads an execution trace (a
// file, or - for stdin), such as ordersd serves under DEBUG_ADDR at
// /debug/pprof/trace, and prints how long goroutines waited for a
// processor and, during the waits longer than --over, which goroutines
// held the processors (by the function each started in).
func runWaits(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("ordersbench waits", flag.ContinueOnError)
	over := fs.Duration("over", 5*time.Millisecond, "a wait longer than this is a long one, whose processors' time is attributed")
	top := fs.Int("top", 12, "show this many of the functions that held the processors")
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: ordersbench waits [--over 5ms] [--top 12] TRACE (a file, or - for stdin)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() != 1 || *over <= 0 || *top <= 0 {
		fs.Usage()
		return errors.New("waits: one trace, a positive --over and a positive --top")
	}
	in := stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	rep, err := schedwait.Analyze(in, *over)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "runnable waits: %d; p50 %v, p99 %v, p99.9 %v, max %v\n", rep.Waits, round(rep.P50), round(rep.P99), round(rep.P999), round(rep.Max))
	fmt.Fprintf(stdout, "waits over %v: %d, %v in all\n", rep.Over, rep.Long, round(rep.LongTotal))
	if rep.Long == 0 {
		return nil
	}
	fmt.Fprintln(stdout, "what held the processors during them, by the function each goroutine started in:")
	for i, h := range rep.Held {
		if i == *top {
			break
		}
		fmt.Fprintf(stdout, "%6.1f%% %10v  %s\n", 100*h.Share, round(h.Time), h.Func)
	}
	return nil
}

// round keeps three significant digits or so of a duration.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(10 * time.Nanosecond)
	}
	return d
}
