package projections

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore/memstore"
	"github.com/orderstream/orderstream/internal/testlog"
)

// A read model whose background checkpoints fail (here SQLite's own
// failure: the checkpoint connection may not write the file) says so,
// and the runner logs it once after a commit, and once more when they get
// through again. Before, nothing reported it: the WAL grew for good.
func TestFailingCheckpointsAreReported(t *testing.T) {
	ctx := t.Context()
	d, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logs testlog.Buffer
	r, err := NewRunner(memstore.New(), d, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.ReadModel().Close() })
	m := r.ReadModel()
	swap := func(dsn string) {
		t.Helper()
		ck, err := openCheckpointer(m.path, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ck.close(); err != nil {
			t.Fatal(err)
		}
		m.ck = ck
	}
	pos := uint64(0)
	commit := func() {
		t.Helper()
		pos++
		if err := r.applyBatch(ctx, []Item{created(fmt.Sprint("o-", pos), "c", pos)}); err != nil {
			t.Fatal(err)
		}
		r.commitHeld()
		if c := r.Committed(); c != pos {
			t.Fatalf("committed %d, want %d", c, pos)
		}
	}
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never", what)
			}
			time.Sleep(10 * time.Millisecond) // polling the checkpointer's goroutine
		}
	}
	failing := "projection: the read model's write-ahead log cannot be checkpointed"
	swap(dsnBusy(m.path, false, checkpointBusy) + "&mode=ro")
	commit()
	until("a failed checkpoint", func() bool { return m.CheckpointErr() != nil })
	if strings.Contains(logs.String(), failing) {
		t.Fatalf("reported before a commit found it: %s", logs.String())
	}
	commit()
	commit()
	if n := strings.Count(logs.String(), failing); n != 1 {
		t.Fatalf("the failure logged %d times over two commits, want once:\n%s", n, logs.String())
	}
	swap(dsnBusy(m.path, false, checkpointBusy))
	commit()
	until("a checkpoint getting through", func() bool { return m.CheckpointErr() == nil })
	commit()
	if !strings.Contains(logs.String(), "projection: the read model's write-ahead log is checkpointed again") {
		t.Fatalf("recovery not reported:\n%s", logs.String())
	}
}
