// Package testlog is for tests that read what a component logs while the
// component's goroutines still write to it.
package testlog

import (
	"strings"
	"sync"
)

// Buffer is an io.Writer that goroutines may write to while a test reads
// it; its zero value is empty and ready. A log handler over a plain buffer
// would race with the test's reads.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p; it never fails.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
