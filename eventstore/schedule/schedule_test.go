package schedule_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/schedule"
)

func newStream(t *testing.T) *schedule.Stream {
	t.Helper()
	_, js := estest.Connect(t, estest.StartServer(t))
	s, err := schedule.New(js, "TIMERS", "timers", schedule.WithMemoryStorage(), schedule.WithFiredTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A schedule fires once on its target, a cancelled one never, and the
// firing is delivered until acknowledged.
func TestScheduleFires(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	at := time.Now().Add(time.Second)
	if err := s.Schedule(ctx, "timers.schedule.a", "timers.fired.a", at, []byte("a"), "a:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Schedule(ctx, "timers.schedule.b", "timers.fired.b", at, []byte("b"), "b:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, "timers.schedule.b"); err != nil {
		t.Fatal(err)
	}
	pending, err := read(ctx, s, "timers.schedule.>")
	if err != nil || len(pending) != 1 || string(pending[0]) != "a" {
		t.Fatalf("pending timers %q, %v; want [a]", pending, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var got []string
	err = s.Subscribe(sctx, "fired", "timers.fired.>", func(m schedule.Msg) {
		got = append(got, m.Subject+"="+string(m.Data))
		if m.NumDelivered == 1 {
			_ = m.Nak() // delivered again
			return
		}
		_ = m.Ack()
		cancel()
	}, eventstore.WithDescription("test"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"timers.fired.a=a", "timers.fired.a=a"}; !slices.Equal(got, want) {
		t.Fatalf("firings %q, want %q", got, want)
	}
	if pending, err := read(ctx, s, "timers.schedule.>"); err != nil || len(pending) != 0 {
		t.Fatalf("pending timers after firing: %q, %v", pending, err)
	}
}

// A time the server's timers cannot hold (after 2262, which wraps into the
// past) is refused rather than fired at once; the last one it can is
// taken.
func TestScheduleRefusesATimeTheServerCannotHold(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	late := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Schedule(ctx, "timers.schedule.a", "timers.fired.a", late, []byte("a"), "a:1"); !errors.Is(err, schedule.ErrTooLate) {
		t.Fatalf("Schedule at %v: %v, want ErrTooLate", late, err)
	}
	if pending, err := read(ctx, s, "timers.schedule.>"); err != nil || len(pending) != 0 {
		t.Fatalf("pending timers after a refused schedule: %q, %v", pending, err)
	}
	last := time.Unix(0, math.MaxInt64).Add(-time.Second)
	if err := s.Schedule(ctx, "timers.schedule.b", "timers.fired.b", last, []byte("b"), "b:1"); err != nil {
		t.Fatalf("Schedule at %v: %v", last, err)
	}
}

// fireOne sets a timer due now under root, waits for its firing on
// root.fired.a, acknowledges it and returns its sequence.
func fireOne(t *testing.T, s *schedule.Stream, root string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Schedule(ctx, root+".schedule.a", root+".fired.a", time.Now(), []byte("a"), "a:1"); err != nil {
		t.Fatal(err)
	}
	var seq uint64
	err := s.Subscribe(ctx, "fired", root+".fired.>", func(m schedule.Msg) {
		seq = m.Sequence
		_ = m.Ack()
		cancel()
	}, eventstore.WithDescription("test"))
	if err != nil {
		t.Fatal(err)
	}
	if seq == 0 {
		t.Fatalf("no firing on %s.fired.a", root)
	}
	return seq
}

// A firing handled and deleted leaves its subject; deleting it again, once
// it is gone, is no error.
func TestDeleteTakesAFiringAway(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	seq := fireOne(t, s, "timers")
	if fired, err := read(ctx, s, "timers.fired.>"); err != nil || len(fired) != 1 {
		t.Fatalf("firings kept after their ack: %q, %v; want [a]", fired, err)
	}
	for range 2 {
		if err := s.Delete(ctx, seq); err != nil {
			t.Fatalf("Delete(%d): %v", seq, err)
		}
		if fired, err := read(ctx, s, "timers.fired.>"); err != nil || len(fired) != 0 {
			t.Fatalf("firings after Delete(%d): %q, %v; want none", seq, fired, err)
		}
	}
}

// A delete the server refuses, of a firing it still holds, is an error:
// the firing would otherwise be listed as waiting though it was handled,
// and its handler would not try again. (Here the stream was made to deny
// deletes; a stream without a leader for a moment refuses alike.)
func TestRefusedDeleteIsAnError(t *testing.T) {
	ctx := t.Context()
	_, js := estest.Connect(t, estest.StartServer(t))
	s, err := schedule.New(js, "TIMERS", "timers", schedule.WithMemoryStorage(), schedule.WithFiredTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	seq := fireOne(t, s, "timers")
	st, err := js.Stream(ctx, "TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.DenyDelete = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, seq); err == nil {
		t.Fatalf("Delete(%d) refused by the server: no error", seq)
	}
	if err := s.Delete(ctx, seq+1000); err != nil {
		t.Fatalf("Delete of a message that never was: %v", err)
	}
}

// Put keeps one record per subject; CountSubjects and Read see them, Purge
// removes them.
func TestPutCountRead(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	for _, p := range [][2]string{{"timers.late.x", "1"}, {"timers.late.x", "2"}, {"timers.late.y", "3"}} {
		if err := s.Put(ctx, p[0], []byte(p[1])); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.CountSubjects(ctx, "timers.late.>"); err != nil || n != 2 {
		t.Fatalf("CountSubjects = %d, %v; want 2", n, err)
	}
	if got, err := read(ctx, s, "timers.late.>"); err != nil || len(got) != 2 || string(got[0]) != "2" || string(got[1]) != "3" {
		t.Fatalf("Read = %q, %v; want [2 3]", got, err)
	}
	if err := s.Purge(ctx, "timers.late.x"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountSubjects(ctx, "timers.late.>"); err != nil || n != 1 {
		t.Fatalf("CountSubjects after a purge = %d, %v; want 1", n, err)
	}
}

func TestSubjectsOutsideTheRoot(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	for name, err := range map[string]error{
		"Put":      s.Put(ctx, "other.x", nil),
		"Schedule": s.Schedule(ctx, "timers.schedule.x", "other.x", time.Now(), nil, "x"),
		"Purge":    s.Purge(ctx, "timers."),
		"Each":     s.Each(ctx, func(string, []byte) {}, "timersx.>"),
	} {
		if !errors.Is(err, schedule.ErrSubject) {
			t.Errorf("%s outside the root: %v, want ErrSubject", name, err)
		}
	}
	if _, err := schedule.New(nil, "A.B", "r"); err == nil {
		t.Error("New accepted the stream name A.B")
	}
	if _, err := schedule.New(nil, "A", "r.*"); err == nil {
		t.Error("New accepted the root r.*")
	}
}

// read collects the data Each hands out.
func read(ctx context.Context, s *schedule.Stream, filters ...string) ([][]byte, error) {
	var out [][]byte
	err := s.Each(ctx, func(_ string, data []byte) { out = append(out, data) }, filters...)
	return out, err
}

// A read deletes its consumer when it ends, as the event store's reads do:
// the server allows 1,000 consumers a stream, and each deadlines list
// reads. Before, each read's consumer stayed for minutes.
func TestEachLeavesNoConsumer(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	s, err := schedule.New(js, "TIMERS", "timers", schedule.WithMemoryStorage())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "timers.late.1", []byte("1")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got, err := read(ctx, s, "timers.late.>"); err != nil || len(got) != 1 {
			t.Fatalf("read = %q, %v", got, err)
		}
	}
	st, err := js.Stream(ctx, "TIMERS")
	if err != nil {
		t.Fatal(err)
	}
	// Each deletes its consumer as it ends; nats.go deletes the one an
	// ordered consumer's fetch replaced from a goroutine of its own, a
	// moment later. Left behind, they stayed until the server's
	// inactivity threshold, and a list a second made a thousand.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := st.Info(ctx)
		if err == nil && info.State.Consumers == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers left on the stream after three reads: %+v, %v", info.State.Consumers, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// "at at, the server publishes data on target": a timer never fires before
// at. at's fraction of a second was dropped on the way to the server
// (jetstream.WithScheduleAt formats RFC 3339 without fractional seconds),
// so a timer due at hh:mm:ss.9 fired at hh:mm:ss, nearly a second early.
func TestScheduleNeverFiresEarly(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	at := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(900 * time.Millisecond)
	if err := s.Schedule(ctx, "timers.schedule.early", "timers.fired.early", at, []byte("x"), "early:1"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var fired time.Time
	if err := s.Subscribe(sctx, "early", "timers.fired.>", func(m schedule.Msg) {
		fired = time.Now()
		_ = m.Ack()
		cancel()
	}); err != nil {
		t.Fatal(err)
	}
	if fired.IsZero() {
		t.Fatal("the timer never fired")
	}
	if fired.Before(at) {
		t.Fatalf("the timer due at %s fired at %s, %v early", at.Format(time.RFC3339Nano), fired.Format(time.RFC3339Nano), at.Sub(fired))
	}
}

// A firing of a stream WithFiredKept never expires; otherwise it expires
// after the fired TTL. The server marks each firing with its TTL.
func TestFiredKeptNeverExpires(t *testing.T) {
	_, js := estest.Connect(t, estest.StartServer(t))
	for _, tc := range []struct {
		name string
		opt  schedule.Option
		want string
	}{
		{"KEPT", schedule.WithFiredKept(), "never"},
		{"TTL", schedule.WithFiredTTL(time.Hour), "1h0m0s"},
	} {
		s, err := schedule.New(js, tc.name, "t"+strings.ToLower(tc.name), schedule.WithMemoryStorage(), tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		seq := fireOne(t, s, "t"+strings.ToLower(tc.name))
		st, err := js.Stream(t.Context(), tc.name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(jetstream.MsgTTLHeader); got != tc.want {
			t.Errorf("%s: the firing's TTL is %q, want %q", tc.name, got, tc.want)
		}
	}
}

// PurgeAcked removes the firings a subscription acknowledged, and leaves
// the one it has not: that one is still owed.
func TestPurgeAckedLeavesWhatIsOwed(t *testing.T) {
	s := newStream(t)
	ctx := t.Context()
	if err := s.PurgeAcked(ctx, "fired", "timers.fired.>"); err != nil {
		t.Fatalf("PurgeAcked before the subscription exists: %v", err)
	}
	// a fires first, so that its acknowledgement moves the floor.
	now := time.Now()
	for name, at := range map[string]time.Time{"a": now, "b": now.Add(time.Second)} {
		if err := s.Schedule(ctx, "timers.schedule."+name, "timers.fired."+name, at, []byte(name), name+":1"); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := s.Subscribe(sctx, "fired", "timers.fired.>", func(m schedule.Msg) {
		if m.Subject == "timers.fired.a" {
			_ = m.Ack()
			return
		}
		_ = m.NakWithDelay(time.Hour) // not handled: owed
		cancel()
	}, eventstore.WithDescription("test"))
	if err != nil {
		t.Fatal(err)
	}
	// The acknowledgement reaches the server on its own time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.PurgeAcked(ctx, "fired", "timers.fired.>"); err != nil {
			t.Fatal(err)
		}
		fired, err := read(ctx, s, "timers.fired.>")
		if err != nil {
			t.Fatal(err)
		}
		if len(fired) == 1 && string(fired[0]) == "b" {
			return
		}
		if len(fired) == 0 || time.Now().After(deadline) {
			t.Fatalf("firings after PurgeAcked: %q; want [b]", fired)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Subscribe consumes until its context ends, then returns nil, as
// eventstore.Store.Subscribe does, even when the context ended before the
// stream was set up: it failed with the set-up's context error, which a
// caller that subscribes again on an error takes for an outage.
func TestSubscribeWithAnEndedContextReturnsNil(t *testing.T) {
	s := newStream(t)
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Subscribe(ended, "ended", "timers.>", func(m schedule.Msg) {
		t.Errorf("delivered %d to a subscription whose context had ended", m.Sequence)
	}); err != nil {
		t.Fatalf("Subscribe with a context that has ended: %v, want nil", err)
	}
	// A name the server would refuse is refused first, as the event
	// store's Subscribe refuses it, whatever the context.
	if err := s.Subscribe(ended, "bad.name", "timers.>", func(schedule.Msg) {}); !errors.Is(err, eventstore.ErrInvalidOption) {
		t.Fatalf(`Subscribe named "bad.name": %v, want ErrInvalidOption`, err)
	}
}
