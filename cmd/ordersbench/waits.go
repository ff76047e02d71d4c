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
// held the processors (by the function each started in). A mistake in the
// arguments prints the usage on stderr and returns the error, for the
// caller to report once.
func runWaits(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ordersbench waits", flag.ContinueOnError)
	over := fs.Duration("over", 5*time.Millisecond, "a wait longer than this is a long one, whose processors' time is attributed")
	top := fs.Int("top", 12, "show this many of the functions that held the processors")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "usage: ordersbench waits [--over 5ms] [--top 12] TRACE (a file, or - for stdin)")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fs.SetOutput(io.Discard) // the errors are returned, the usage printed here
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage(stdout)
		return nil
	case err == nil && (fs.NArg() != 1 || *over <= 0 || *top <= 0):
		err = errors.New("waits: one trace, a positive --over and a positive --top")
	}
	if err != nil {
		usage(stderr)
		return err
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
	fmt.Fprintf(stdout, "waits over %v: %d, %v in all, going on for %v\n", rep.Over, rep.Long, round(rep.LongTotal), round(rep.During))
	if rep.Long == 0 {
		return nil
	}
	fmt.Fprintln(stdout, "what held the processors meanwhile, by the function each goroutine started in:")
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
