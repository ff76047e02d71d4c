// Package backoff computes the jittered, capped exponential waits between
// retries that the command service (conflicts), the payments manager
// (provider and outage retries) and the NATS client (reconnects) use.
//
// The ceiling before retry n (counted from 1) is Base·2ⁿ⁻¹, capped at Cap.
// Growing, so that many contenders spread out; capped, so that one that
// keeps losing still gets its chances within a bounded time; random, so
// that contenders that collided do not collide again in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter says how a wait is drawn below its ceiling.
type Jitter int

const (
	// Full draws the wait uniformly from (0, ceiling]: the widest spread,
	// for contenders of one resource.
	Full Jitter = iota
	// Equal draws the wait uniformly from [ceiling/2, ceiling]: at least
	// half the ceiling, for a client that must not hammer a server that
	// just went away.
	Equal
)

// Policy is a jittered, capped exponential backoff. The zero Jitter is
// Full. A Policy is a value; it is safe for concurrent use.
type Policy struct {
	// Base is the ceiling before the first retry; it must be positive.
	Base time.Duration
	// Cap bounds every ceiling; it must be positive. A Cap below Base
	// caps every wait at Cap.
	Cap    time.Duration
	Jitter Jitter
}

// Ceiling returns min(Cap, Base·2ⁿ⁻¹) for retry n (from 1; n < 1 counts
// as 1), without overflowing for any n. It returns 0 when Base or Cap is
// not positive.
func (p Policy) Ceiling(n int) time.Duration {
	if p.Base <= 0 || p.Cap <= 0 {
		return 0
	}
	d := min(p.Base, p.Cap)
	for i := 1; i < n && d < p.Cap; i++ {
		if d > p.Cap/2 {
			return p.Cap
		}
		d *= 2
	}
	return d
}

// Delay returns the wait before retry n, drawn below Ceiling(n) as Jitter
// says. It returns 0 when Base or Cap is not positive.
func (p Policy) Delay(n int) time.Duration {
	c := p.Ceiling(n)
	if c <= 0 {
		return 0
	}
	if p.Jitter == Equal {
		half := c / 2
		return half + rand.N(c-half+1)
	}
	return rand.N(c) + 1
}

// Sleep waits d, or until ctx ends, in which case it returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
