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

// breaker is a consecutive-failure circuit breaker.
type breaker struct {
	threshold int
	cooldown  time.Duration

	mu       sync.Mutex
	failures int
	openedAt time.Time
}

// wait returns how long until an open circuit lets calls through again.
func (b *breaker) wait() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return 0
	}
	return max(b.cooldown-time.Since(b.openedAt), 0)
}

// allow reports ErrCircuitOpen while the circuit is open; after the
// cool-down it lets calls through again (half-open), and the next result
// closes or re-opens it.
func (b *breaker) allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures >= b.threshold && time.Since(b.openedAt) < b.cooldown {
		return ErrCircuitOpen
	}
	return nil
}

func (b *breaker) record(ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.failures = 0
		return
	}
	b.failures++
	if b.failures >= b.threshold {
		b.openedAt = time.Now()
	}
}

func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.threshold && time.Since(b.openedAt) < b.cooldown
}
