package payments_test

import (
	"errors"
	"testing"
	"time"

	"github.com/orderstream/orderstream/services/payments"
)

// An option given a value it does not accept makes New fail with
// ErrInvalidOption before it touches the store or the bucket, rather than
// being ignored and leaving a default the operator did not ask for.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]payments.Option{
		"no workers":          payments.WithWorkers(0),
		"no attempts":         payments.WithRetry(0, time.Second, time.Millisecond, time.Second),
		"no attempt timeout":  payments.WithRetry(3, 0, time.Millisecond, time.Second),
		"no backoff base":     payments.WithRetry(3, time.Second, 0, time.Second),
		"max below base":      payments.WithRetry(3, time.Second, time.Second, time.Millisecond),
		"no ack wait":         payments.WithAckWait(0),
		"ack wait of 3ns":     payments.WithAckWait(3), // its in-progress ticker, a quarter of it, was 0 and panicked
		"ack wait over 1h":    payments.WithAckWait(payments.MaxAckWait + 1),
		"ack wait of 36y":     payments.WithAckWait(1 << 60), // a retry's lease of 15 overflowed
		"negative outage":     payments.WithOutageLimit(-time.Second),
		"nil logger":          payments.WithLogger(nil),
		"no pinned ttl":       payments.WithPinnedTTL(0),
		"no circuit trips":    payments.WithCircuit(0, time.Second),
		"no circuit cooldown": payments.WithCircuit(3, 0),
		"nil telemetry":       payments.WithTelemetry(nil, nil),
	} {
		if m, err := payments.New(t.Context(), nil, nil, nil, nil, opt); !errors.Is(err, payments.ErrInvalidOption) || m != nil {
			t.Errorf("%s: New = %v, %v; want nil, ErrInvalidOption", name, m, err)
		}
	}
}
