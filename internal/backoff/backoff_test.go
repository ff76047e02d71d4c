package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestCeilingDoublesUpToTheCap(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Cap: time.Second}
	const ms = time.Millisecond
	want := []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second}
	for i, w := range want {
		if got := p.Ceiling(i + 1); got != w {
			t.Errorf("Ceiling(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := p.Ceiling(0); got != p.Base {
		t.Errorf("Ceiling(0) = %v, want Base", got)
	}
}

// No n and no Base or Cap near the largest duration makes the ceiling wrap
// around to a negative or zero wait.
func TestCeilingDoesNotOverflow(t *testing.T) {
	for _, p := range []Policy{
		{Base: time.Nanosecond, Cap: math.MaxInt64},
		{Base: math.MaxInt64 / 3, Cap: math.MaxInt64},
		{Base: math.MaxInt64, Cap: math.MaxInt64},
		{Base: time.Second, Cap: time.Millisecond},
	} {
		prev := time.Duration(0)
		for _, n := range []int{1, 2, 3, 30, 62, 63, 64, 65, 1000, math.MaxInt} {
			c := p.Ceiling(n)
			if c <= 0 || c > p.Cap || c < prev {
				t.Fatalf("%+v: Ceiling(%d) = %v after %v", p, n, c, prev)
			}
			prev = c
		}
		if prev != p.Cap {
			t.Errorf("%+v: the ceiling never reached the cap: %v", p, prev)
		}
	}
}

func TestDelayStaysInItsJitterRange(t *testing.T) {
	for _, j := range []Jitter{Full, Equal} {
		p := Policy{Base: 10 * time.Microsecond, Cap: 5 * time.Millisecond, Jitter: j}
		for n := 1; n <= 20; n++ {
			c := p.Ceiling(n)
			lo := time.Duration(1)
			if j == Equal {
				lo = c / 2
			}
			var below, above bool // the draws spread over the range
			for range 200 {
				d := p.Delay(n)
				if d < lo || d > c {
					t.Fatalf("jitter %d, retry %d: delay %v outside [%v, %v]", j, n, d, lo, c)
				}
				mid := lo + (c-lo)/2
				below, above = below || d < mid, above || d > mid
			}
			if c-lo >= 100 && !(below && above) {
				t.Errorf("jitter %d, retry %d: 200 delays all on one side of %v", j, n, lo+(c-lo)/2)
			}
		}
	}
}

func TestDelayOfAnInvalidPolicyIsZero(t *testing.T) {
	for _, p := range []Policy{{}, {Base: time.Second}, {Cap: time.Second}, {Base: -1, Cap: time.Second}} {
		if d := p.Delay(3); d != 0 {
			t.Errorf("%+v: Delay = %v, want 0", p, d)
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if err := Sleep(t.Context(), time.Microsecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep after cancel: %v, want context.Canceled", err)
	}
}
