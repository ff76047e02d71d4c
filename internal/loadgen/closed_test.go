package loadgen

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"
)

// straddler answers each request only when the request's own deadline
// ends it, then fails every second one: given a deadline longer than the
// run, every request it gets is still running when the run ends.
type straddler struct{ sent, failed atomic.Int64 }

func (s *straddler) Do(ctx context.Context, _ Op, _ *rand.Rand) string {
	n := s.sent.Add(1)
	<-ctx.Done()
	if n%2 == 0 {
		s.failed.Add(1)
		return "DeadlineExceeded"
	}
	return ""
}

func (*straddler) Close() error { return nil }

// A closed loop records every request it sent, also those that end after
// the run does, failed or not: the end of the run cuts none off, so one
// that failed failed on its own. The rate counts the successes answered
// within the run alone, over the run's length: here, none.
func TestRunClosedRecordsRequestsAcrossTheEnd(t *testing.T) {
	s := &straddler{}
	// Each request lasts its timeout, three times the run: every client
	// sends one, and all of them end after the run.
	rep, err := RunClosed(t.Context(), "straddle", s, 4, 100*time.Millisecond, Mix{Create: 1}, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sent, failed := s.sent.Load(), s.failed.Load()
	if sent < 2 {
		t.Fatalf("%d requests sent by 4 clients in 100 ms; the test needs a success and a failure", sent)
	}
	if rep.Completed != sent || rep.Overall.Count != sent || rep.Ops[Create].Count != sent || rep.Overall.Errors["DeadlineExceeded"] != failed {
		t.Fatalf("recorded %d (overall %d, create %d) with errors %v; sent %d, %d of them failed",
			rep.Completed, rep.Overall.Count, rep.Ops[Create].Count, rep.Overall.Errors, sent, failed)
	}
	if rep.Overall.LateOK != sent-failed || rep.Ops[Create].LateOK != sent-failed || okCount(rep) != 0 || rep.OKRate() != 0 || rep.OKThroughput != 0 || rep.Duration != 0.1 {
		t.Fatalf("%d succeeded after the end (create %d), %d within it at %v/s over %v s; want %d after it, none within the 0.1 s",
			rep.Overall.LateOK, rep.Ops[Create].LateOK, okCount(rep), rep.OKRate(), rep.Duration, sent-failed)
	}
}
