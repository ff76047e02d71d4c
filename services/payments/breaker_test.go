package payments

import (
	"errors"
	"testing"
	"time"
)

func TestBreakerHalfOpenLetsOneProbeThrough(t *testing.T) {
	b := breaker{threshold: 2, cooldown: time.Minute}
	for range 2 {
		if err := b.allow(); err != nil {
			t.Fatal(err)
		}
		b.record(false)
	}
	if err := b.allow(); !errors.Is(err, ErrCircuitOpen) || b.wait() <= 0 {
		t.Fatalf("open circuit: allow %v, wait %v", err, b.wait())
	}
	b.openedAt = time.Now().Add(-2 * time.Minute) // the cool-down is over
	if err := b.allow(); err != nil {
		t.Fatalf("half-open: the probe was refused: %v", err)
	}
	if err := b.allow(); !errors.Is(err, ErrCircuitOpen) || b.wait() <= 0 {
		t.Fatalf("a second call got through while the probe runs: allow %v, wait %v", err, b.wait())
	}
	b.cancel() // a probe cut short by shutdown proves nothing
	if err := b.allow(); err != nil {
		t.Fatalf("after a cancelled probe: %v", err)
	}
	b.record(false) // the probe failed: open for another cool-down
	if err := b.allow(); !errors.Is(err, ErrCircuitOpen) || b.wait() < 59*time.Second {
		t.Fatalf("after a failed probe: allow %v, wait %v", err, b.wait())
	}
	b.openedAt = time.Now().Add(-2 * time.Minute)
	if err := b.allow(); err != nil {
		t.Fatal(err)
	}
	b.record(true) // the probe succeeded: closed
	for range 3 {
		if err := b.allow(); err != nil || b.wait() != 0 {
			t.Fatalf("closed circuit: allow %v, wait %v", err, b.wait())
		}
		b.record(true)
	}
}
