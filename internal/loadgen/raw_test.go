package loadgen

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestRawRetriesALostRace checks that raw mode, like the command side,
// reloads the subject's last sequence after a lost race and appends,
// rather than counting the race as a failure of the floor.
func TestRawRetriesALostRace(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	ctx := t.Context()
	w, err := NewRaw(ctx, ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	if c := w.publish(ctx, "o1", "r1"); c != "" {
		t.Fatalf("first append: %s", c)
	}
	// Another writer appends to the same subject: w's expectation is stale.
	other := nats.NewMsg("benchraw.o1")
	other.Header.Set("Nats-Msg-Id", "r-other")
	if _, err := w.js.PublishMsg(ctx, other); err != nil {
		t.Fatal(err)
	}
	if c := w.publish(ctx, "o1", "r2"); c != "" {
		t.Fatalf("append after a lost race: error class %q", c)
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
}
