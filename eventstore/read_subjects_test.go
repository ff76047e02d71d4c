package eventstore_test

import (
	"slices"
	"testing"

	"github.com/orderstream/orderstream/eventstore"
)

// Read of a stream to which other subjects were added after New skips
// their messages, as the batch reads do. It decided once, in New, whether
// to filter, and read a message on such a subject as a malformed event,
// which ended the read.
func TestReadWithSubjectsAddedAfterNew(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	mustAppend(t, e.store, "a", 0, eventstore.EventData{Type: "E"})
	st, err := e.js.Stream(ctx, e.store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = append(cfg.Subjects, "other.>")
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, "other.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, e.store, "b", 0, eventstore.EventData{Type: "E"})
	var got []uint64
	for r, err := range e.store.Read(ctx, 0) {
		if err != nil {
			t.Fatalf("Read after %v: %v", got, err)
		}
		got = append(got, r.Position)
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("Read: %v, want [1 3]", got)
	}
	var batch []uint64
	for b, err := range e.store.ReadBatches(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range b.Entries {
			batch = append(batch, en.Position)
		}
	}
	if !slices.Equal(batch, []uint64{1, 3}) {
		t.Fatalf("ReadBatches: %v, want [1 3]", batch)
	}
}
