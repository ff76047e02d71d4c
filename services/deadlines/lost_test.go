package deadlines_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/testlog"
	"github.com/orderstream/orderstream/services/deadlines"
)

// The DEADLINES stream is lost while the manager runs (deleted by an
// operator, or lost by the server): the manager sets it up again, and an
// order placed afterwards still gets its payment timeout. Before, the
// stream stayed missing until the process restarted, and no deadline was
// set or enforced.
func TestDeadlinesStreamLostIsSetUpAgain(t *testing.T) {
	e := start(t)
	e.run(t, 2*time.Second, time.Hour)
	cancelledOnce(t, e.waitEvent(t, e.place(t, "before-the-loss"), "OrderCancelled"))
	if err := e.js.DeleteStream(t.Context(), deadlines.StreamName); err != nil {
		t.Fatal(err)
	}
	cancelledOnce(t, e.waitEvent(t, e.place(t, "after-the-loss"), "OrderCancelled"))
}

// A consumer lost after it consumed is subscribed again after the
// shortest wait, however many times that happened before: the backoff
// grows only across failures in a row. Before, it doubled at every loss
// in the process's life, up to 30 s, during which deadlines went
// unenforced.
func TestRetryWaitStartsOverAfterAConsumerConsumed(t *testing.T) {
	e := start(t)
	var logs testlog.Buffer
	e.run(t, time.Hour, time.Hour, deadlines.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	pulling := func() {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			c, err := e.js.Consumer(t.Context(), deadlines.StreamName, deadlines.FiredConsumer)
			if err == nil {
				if info, err := c.Info(t.Context()); err == nil && info.NumWaiting > 0 {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the firings' consumer is not pulled from")
			}
			time.Sleep(20 * time.Millisecond) // polling the server
		}
	}
	const losses = 3
	for range losses {
		pulling()
		if err := e.js.DeleteConsumer(t.Context(), deadlines.StreamName, deadlines.FiredConsumer); err != nil {
			t.Fatal(err)
		}
	}
	pulling()
	stopped := 0
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "deadlines: consumer stopped") && strings.Contains(l, deadlines.FiredConsumer) {
			stopped++
			if !strings.Contains(l, "retry_in=1s") {
				t.Errorf("a consumer lost after it consumed retried after more than the shortest wait: %s", l)
			}
		}
	}
	if stopped != losses {
		t.Fatalf("%d losses logged, want %d:\n%s", stopped, losses, logs.String())
	}
}

// A firing that is no deadline of this build (written by hand, or by
// another build) cannot be enforced: it is dropped with an error line
// naming its subject, not in silence, and the deadlines after it are
// enforced as before. (A firing of a kind this build does not know is
// delivered to no consumer of it, and left to a build that knows it.)
func TestUndecodableFiringIsReported(t *testing.T) {
	e := start(t)
	var logs testlog.Buffer
	e.run(t, 2*time.Second, time.Hour, deadlines.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	subject := deadlines.SubjectRoot + ".fired.payment_timeout.not-json"
	if _, err := e.js.Publish(t.Context(), subject, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	cancelledOnce(t, e.waitEvent(t, e.place(t, "after-the-bad-firing"), "OrderCancelled"))
	errorNames(t, &logs, subject)
}

// errorNames waits until logs hold an error line naming subject.
func errorNames(t *testing.T, logs *testlog.Buffer, subject string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if l := logs.String(); strings.Contains(l, "level=ERROR") && strings.Contains(l, subject) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error line names %s:\n%s", subject, logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log
	}
}

// A message on the log that is no event (published there by hand, or by
// another program) is skipped with an error line naming it: it may be a
// placement whose payment timeout is never set. It was skipped in silence.
func TestLogMessageThatIsNoEventIsReported(t *testing.T) {
	e := start(t)
	var logs testlog.Buffer
	e.run(t, time.Hour, time.Hour, deadlines.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	subject := e.store.Load().Subject("not-an-event")
	if _, err := e.js.Publish(t.Context(), subject, []byte("{garbage")); err != nil {
		t.Fatal(err)
	}
	errorNames(t, &logs, subject)
}
