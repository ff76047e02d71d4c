package payments_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/testlog"
	"github.com/orderstream/orderstream/services/payments"
)

// A message on the log that is no event (published there by hand, or by
// another program) is skipped, as nothing can act on it, with an error line
// naming it: it may be a placement never charged. It was skipped in
// silence.
func TestMessageThatIsNoEventIsReported(t *testing.T) {
	e := start(t)
	var out testlog.Buffer
	subject := e.store.Subject("not-an-event")
	if _, err := e.js.Publish(t.Context(), subject, []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	e.run(t, payments.NewSimulator(payments.SimulatorConfig{}), fast(), payments.WithLogger(slog.New(slog.NewJSONHandler(&out, nil))))
	waitUntil(t, "an error line naming "+subject, func() bool {
		for l := range strings.Lines(out.String()) {
			if strings.Contains(l, `"level":"ERROR"`) && strings.Contains(l, subject) {
				return true
			}
		}
		return false
	})
}
