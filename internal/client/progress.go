package client

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Progress draws a one-line progress bar (percentage, events per second,
// ETA) for a person at a terminal. A Progress with a nil writer draws
// nothing, so callers decide once whether a person is watching.
type Progress struct {
	w     io.Writer
	label string
	start time.Time
	drawn bool
}

// NewProgress returns a bar labelled label drawn on w; nil w draws nothing.
func NewProgress(w io.Writer, label string) *Progress {
	return &Progress{w: w, label: label, start: time.Now()}
}

// Update redraws the bar at pos of target, done items processed so far.
func (p *Progress) Update(pos, target, done uint64) {
	if p.w == nil {
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
	fmt.Fprintf(p.w, "\r%s [%s%s] %5.1f%%  %.0f events/s  ETA %s ", p.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), pct, rate, eta)
	p.drawn = true
}

// Clear erases the bar, so that a line can be printed in its place; the
// next Update draws it again.
func (p *Progress) Clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

// Done ends the bar's line, leaving the last state visible.
func (p *Progress) Done() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
