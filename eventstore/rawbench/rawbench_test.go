package rawbench

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// TestAppendRetriesALostRace checks that Append, like the command side,
// reloads the subject's last sequence after a lost race and appends,
// rather than counting the race as a failure of the floor.
// open starts a server and opens a Stream on it.
func open(t *testing.T) (*Stream, string) {
	t.Helper()
	url := estest.StartServer(t).ClientURL()
	w, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, url
}

func TestAppendRetriesALostRace(t *testing.T) {
	w, _ := open(t)
	ctx := t.Context()
	if err := w.Append(ctx, "o1", "r1"); err != nil {
		t.Fatalf("first append: %v", err)
	}
	// Another writer appends to the same subject: w's expectation is stale.
	other := nats.NewMsg("benchraw.o1")
	other.Header.Set("Nats-Msg-Id", "r-other")
	if _, err := w.js.PublishMsg(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, "o1", "r2"); err != nil {
		t.Fatalf("append after a lost race: %v", err)
	}
	last, err := w.stream.GetLastMsgForSubject(ctx, "benchraw.o1")
	if err != nil {
		t.Fatal(err)
	}
	if last.Header.Get("Nats-Msg-Id") != "r2" || last.Sequence != 3 {
		t.Fatalf("last message %q at %d, want r2 at 3", last.Header.Get("Nats-Msg-Id"), last.Sequence)
	}
	if v, _ := w.revs.Load("o1"); v != last.Sequence {
		t.Fatalf("remembered sequence %v, want %d", v, last.Sequence)
	}
	if seq, err := w.Last(ctx, "o1"); err != nil || seq != 3 {
		t.Fatalf("Last = %d, %v; want 3", seq, err)
	}
	if n, err := w.Newest(ctx, 20); err != nil || n != 3 {
		t.Fatalf("Newest(20) read %d, %v; want the 3 messages", n, err)
	}
}

// Log reads the stream it names: its size and a full ordered read.
func TestLog(t *testing.T) {
	w, url := open(t)
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if err := w.Append(ctx, id, id); err != nil {
			t.Fatal(err)
		}
	}
	l, err := OpenLog(url, RawStream)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if msgs, bytes, err := l.Size(ctx); err != nil || msgs != 2 || bytes == 0 {
		t.Fatalf("Size = %d messages, %d bytes, %v", msgs, bytes, err)
	}
	if rate, err := l.ReadRate(ctx, 2); err != nil || rate <= 0 {
		t.Fatalf("ReadRate = %v, %v", rate, err)
	}
}
