package payments

import (
	"errors"
	"sync"
	"time"
)

// ErrCircuitOpen is returned instead of calling a provider that has just
// failed many times in a row: hammering a sick provider with every retry of
// every worker only delays its recovery.
var ErrCircuitOpen = errors.New("payment gateway circuit open")

// Default circuit breaker tuning: open after this many consecutive
// transient failures (at a 50% failure rate that happens about once in a
// thousand calls), let calls through again after the cool-down.
const (
	DefaultCircuitThreshold = 10
	DefaultCircuitCooldown  = 2 * time.Second
)

// breaker is a consecutive-failure circuit breaker. After the cool-down it
// is half-open: one call at a time probes the provider, and its result
// closes the circuit or opens it for another cool-down, so a recovering
// provider meets one request rather than every waiting worker at once.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	failures int
	openedAt time.Time
	probing  bool
}

// probePoll is how often workers held back by a half-open circuit look
// again while the probe is in flight.
func (b *breaker) probePoll() time.Duration { return max(b.cooldown/20, 10*time.Millisecond) }

// wait returns how long until the circuit may let a held-back call
// through: the rest of the cool-down, or a short poll while a probe runs.
func (b *breaker) wait() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return 0
	}
	if rest := b.cooldown - time.Since(b.openedAt); rest > 0 {
		return rest
	}
	if b.probing {
		return b.probePoll()
	}
	return 0
}

// allow reports ErrCircuitOpen while the circuit is open, or half-open
// with a probe in flight; probe says the call allowed is the half-open
// circuit's probe. A nil answer must be followed by record or cancel,
// given probe.
func (b *breaker) allow() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return false, nil
	}
	if time.Since(b.openedAt) < b.cooldown || b.probing {
		return false, ErrCircuitOpen
	}
	b.probing = true
	return true, nil
}

// record counts the result of an allowed call. Only the probe's ends the
// probe: a slow call allowed before the circuit opened, ending while the
// probe runs, let a second probe through.
func (b *breaker) record(probe, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openedAt = time.Now()
	}
}

// cancel ends an allowed call that says nothing about the provider (it
// was stopped by shutdown), without counting it.
func (b *breaker) cancel(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.threshold && time.Since(b.openedAt) < b.cooldown
}
