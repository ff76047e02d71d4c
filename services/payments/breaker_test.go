package payments

import (
	"errors"
	"testing"
	"time"
)

func TestBreakerHalfOpenLetsOneProbeThrough(t *testing.T) {
	b := breaker{threshold: 2, cooldown: time.Minute}
	for range 2 {
		if _, err := b.allow(); err != nil {
			t.Fatal(err)
		}
		b.record(false, false)
	}
	if _, err := b.allow(); !errors.Is(err, ErrCircuitOpen) || b.wait() <= 0 {
		t.Fatalf("open circuit: allow %v, wait %v", err, b.wait())
	}
	b.openedAt = time.Now().Add(-2 * time.Minute) // the cool-down is over
	probe, err := b.allow()
	if err != nil || !probe {
		t.Fatalf("half-open: the probe was refused: %v (probe %v)", err, probe)
	}
	if _, err := b.allow(); !errors.Is(err, ErrCircuitOpen) || b.wait() <= 0 {
		t.Fatalf("a second call got through while the probe runs: allow %v, wait %v", err, b.wait())
	}
	b.cancel(probe) // a probe cut short by shutdown proves nothing
	if probe, err = b.allow(); err != nil || !probe {
		t.Fatalf("after a cancelled probe: %v (probe %v)", err, probe)
	}
	b.record(probe, false) // the probe failed: open for another cool-down
	if _, err := b.allow(); !errors.Is(err, ErrCircuitOpen) || b.wait() < 59*time.Second {
		t.Fatalf("after a failed probe: allow %v, wait %v", err, b.wait())
	}
	b.openedAt = time.Now().Add(-2 * time.Minute)
	if probe, err = b.allow(); err != nil || !probe {
		t.Fatal(err)
	}
	b.record(probe, true) // the probe succeeded: closed
	for range 3 {
		probe, err := b.allow()
		if err != nil || probe || b.wait() != 0 {
			t.Fatalf("closed circuit: allow %v (probe %v), wait %v", err, probe, b.wait())
		}
		b.record(probe, true)
	}
}

// A slow call allowed while the circuit was closed, ending (failed, or
// cut short) while the half-open circuit's probe runs, does not end the
// probe: it let a second probe through, and the recovering provider met
// two calls at once.
func TestBreakerOneProbeWhateverEndsMeanwhile(t *testing.T) {
	b := breaker{threshold: 2, cooldown: time.Minute}
	slow, err := b.allow() // before the circuit opens
	if err != nil || slow {
		t.Fatal(err)
	}
	for range 2 {
		p, err := b.allow()
		if err != nil {
			t.Fatal(err)
		}
		b.record(p, false)
	}
	b.openedAt = time.Now().Add(-2 * time.Minute)
	probe, err := b.allow()
	if err != nil || !probe {
		t.Fatalf("half-open: the probe was refused: %v", err)
	}
	b.cancel(slow)
	if _, err := b.allow(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("a cancelled slow call let a second probe through: %v", err)
	}
	b.record(slow, false)
	b.openedAt = time.Now().Add(-2 * time.Minute) // its failure reopened it; the cool-down is over again
	if _, err := b.allow(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("a failed slow call let a second probe through: %v", err)
	}
	b.record(probe, true)
	if p, err := b.allow(); err != nil || p {
		t.Fatalf("after the probe succeeded: allow %v (probe %v), want closed", err, p)
	}
}
