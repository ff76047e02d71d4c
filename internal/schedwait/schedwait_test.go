package schedwait_test

import (
	"bytes"
	"errors"
	"runtime"
	"runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/schedwait"
)

// spinner keeps a processor busy until stop is set, waking the counter now
// and then without ever blocking itself: the counter, made runnable while
// both processors spin, waits until the scheduler preempts one of them.
type spinner struct {
	stop *atomic.Bool
	wake chan<- struct{}
}

func (s spinner) spin() {
	next := time.Now()
	for !s.stop.Load() {
		if time.Now().After(next) {
			select {
			case s.wake <- struct{}{}:
			default:
			}
			next = time.Now().Add(time.Millisecond)
		}
	}
}

// count takes n wakes, then stops the spinners.
func count(wake <-chan struct{}, n int, stop *atomic.Bool, done chan<- struct{}) {
	for range n {
		<-wake
	}
	stop.Store(true)
	close(done)
}

// With both processors held by spinners, the goroutine they wake waits
// for one, and the waits over the threshold are attributed to the
// spinners. They start through sync.WaitGroup.Go, so the wrapper must not
// be what names them.
func TestLongWaitsAreAttributedToWhoHeldTheProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("a trace is already running: %v", err)
	}
	var stop atomic.Bool
	wake, done := make(chan struct{}, 1), make(chan struct{})
	go count(wake, 50, &stop, done)
	var spinners sync.WaitGroup
	for range 2 {
		spinners.Go(spinner{&stop, wake}.spin)
	}
	<-done
	spinners.Wait()
	trace.Stop()

	rep, err := schedwait.Analyze(&buf, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Waits == 0 || rep.Long == 0 {
		t.Fatalf("%d waits, %d over %v", rep.Waits, rep.Long, rep.Over)
	}
	if !(rep.P50 <= rep.P99 && rep.P99 <= rep.P999 && rep.P999 <= rep.Max && rep.Max > rep.Over) {
		t.Fatalf("quantiles out of order: p50 %v p99 %v p99.9 %v max %v", rep.P50, rep.P99, rep.P999, rep.Max)
	}
	if len(rep.Held) == 0 || !strings.Contains(rep.Held[0].Func, "spinner.spin") {
		t.Fatalf("during the long waits the processors ran %+v; want the spinners first", rep.Held)
	}
	if rep.Held[0].Share < 0.5 {
		t.Fatalf("shares %+v: the spinners' only %.2f", rep.Held, rep.Held[0].Share)
	}
	// Two processors give no more than twice the time during which long
	// waits went on, however many waited at once.
	var heldTotal time.Duration
	for _, h := range rep.Held {
		heldTotal += h.Time
	}
	if heldTotal > 2*rep.During || rep.During > rep.LongTotal {
		t.Fatalf("processor time %v during %v of long waits (%v in all)", heldTotal, rep.During, rep.LongTotal)
	}
}

// Bytes that are not an execution trace are refused.
func TestAnalyzeRefusesWhatItCannotUse(t *testing.T) {
	if _, err := schedwait.Analyze(strings.NewReader("not a trace"), time.Millisecond); err == nil || errors.Is(err, schedwait.ErrNoWaits) {
		t.Fatalf("garbage: err %v, want a parse error", err)
	}
}
