package deadlines

import (
	"errors"
	"testing"
)

// Err tells why a consumer that does not consume now stopped: the log's
// consumer consuming again after a failure, and the firings' not started
// yet, is no failure (readiness says "yet", not "retrying"); the firings'
// failing is. It returned the last error of either, the one consuming
// again included.
func TestErrIsThatOfAConsumerNotConsuming(t *testing.T) {
	m := &Manager{}
	logErr, firedErr := errors.New("log consumer refused"), errors.New("firings consumer refused")
	m.lastErr[0].Store(&logErr)
	m.consuming[0].Store(true) // the log's consumer recovered
	if err := m.Err(); err != nil {
		t.Fatalf("Err with the log's consumer consuming again and the firings' not started: %v, want nil", err)
	}
	m.lastErr[1].Store(&firedErr)
	if err := m.Err(); !errors.Is(err, firedErr) {
		t.Fatalf("Err with the firings' consumer failing: %v, want its error", err)
	}
	m.consuming[1].Store(true)
	if err := m.Err(); err != nil || m.Consuming() {
		t.Fatalf("Err with the shipping SLAs' firings' consumer not started: %v (consuming %v), want nil, not consuming", err, m.Consuming())
	}
	m.consuming[2].Store(true)
	if err := m.Err(); err != nil || !m.Consuming() {
		t.Fatalf("Err with every consumer consuming: %v (consuming %v), want nil", err, m.Consuming())
	}
}
