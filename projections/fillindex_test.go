package projections

import (
	"errors"
	"hash/maphash"
	"testing"
)

// The fill index finds every id it was told of, whether its hash is its
// own or shared, forgets what a rolled-back batch wrote when the row is
// written again, and passes idAt's errors on.
func TestFillIndex(t *testing.T) {
	rows := map[int64]string{} // the table: seq → id
	idAt := func(seq int64) (string, bool, error) {
		id, ok := rows[seq]
		return id, ok, nil
	}
	x := newFillIndex()
	// Ids of one length share a hash.
	x.hash = func(_ maphash.Seed, id string) uint64 { return uint64(len(id)) }
	write := func(id string, seq int64) {
		t.Helper()
		rows[seq] = id
		if err := x.add(id, seq, idAt); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 1)
	write("bb", 2)
	write("c", 3)
	// bb's batch rolled back; a later batch writes it again.
	delete(rows, 2)
	write("bb", 4)
	// ddd's batch rolled back; eee, sharing its hash, finds its row gone.
	write("ddd", 5)
	delete(rows, 5)
	write("eee", 6)
	for id, want := range map[string]int64{"a": 1, "c": 3, "bb": 4, "eee": 6} {
		if seq, ok := x.find(id); !ok || seq != want {
			t.Errorf("find(%q) = %d, %v; want %d", id, seq, ok, want)
		}
	}
	// An id never written has no candidate when its hash is new or
	// shared, and the one row of its hash when that is another id's.
	for _, id := range []string{"z", "ffff"} {
		if seq, ok := x.find(id); ok {
			t.Errorf("find(%q) = %d, want none", id, seq)
		}
	}
	if seq, ok := x.find("yy"); !ok || seq != 4 || rows[seq] == "yy" {
		t.Errorf(`find("yy") = %d, %v; want bb's row, 4`, seq, ok)
	}
	boom := errors.New("read failed")
	if err := x.add("hh", 7, func(int64) (string, bool, error) { return "", false, boom }); !errors.Is(err, boom) {
		t.Fatalf("add with a failing read: %v", err)
	}
}
