package cli

import (
	"fmt"
	"strings"
	"time"
)

// progress draws a one-line bar on stderr, only on a terminal, so piped or
// JSON output stays clean.
type progress struct {
	a     *app
	label string
	start time.Time
	drawn bool
}

func newProgress(a *app, label string) *progress {
	return &progress{a: a, label: label, start: time.Now()}
}

func (p *progress) update(pos, target, done uint64) {
	if !p.a.progressOn() {
		return
	}
	pct := 0.0
	if target > 0 {
		pct = float64(pos) / float64(target) * 100
	}
	rate := float64(done) / time.Since(p.start).Seconds()
	eta := "-"
	if rate > 0 && target > pos {
		eta = (time.Duration(float64(target-pos)/rate) * time.Second).Round(time.Second).String()
	}
	const width = 30
	filled := int(pct / 100 * width)
	filled = min(max(filled, 0), width)
	fmt.Fprintf(p.a.io.Err, "\r%s [%s%s] %5.1f%%  %.0f events/s  ETA %s ", p.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), pct, rate, eta)
	p.drawn = true
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.a.io.Err, "\r\x1b[K")
	}
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.a.io.Err)
		p.drawn = false
	}
}
