package projections

import (
	"database/sql"
	"path/filepath"
	"testing"
)

// A page token carries the cursor order's number from the node that issued
// it to any other. A node that still holds the rows it stored before schema
// 4 numbers them below every log position, where a node built from the log
// numbers them by their creation position: given the latter's number, the
// former pages on from its own number for that order, and repeats none.
// Before, it took the token's number, above all of its own, and listed the
// cursor's order (and every older order created at the same instant) again.
func TestTokenOfARebuiltNodePagesOnAtAMigratedOne(t *testing.T) {
	ctx := t.Context()
	items := histories()
	want := fold(items)
	pathA := filepath.Join(t.TempDir(), "a.db") // node A: upgraded from schema 2
	db, err := sql.Open("sqlite", dsn(pathA, false))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if err := migrate(ctx, db, 2); err != nil {
		t.Fatal(err)
	}
	writeLegacy(t, db, want, items[len(items)-1].Rec.Position)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	a := openModel(t, pathA)
	b := openModel(t, filepath.Join(t.TempDir(), "b.db")) // node B: built from the log
	if _, _, err := b.Apply(ctx, items); err != nil {
		t.Fatal(err)
	}
	_, first, _, err := b.ListOrderWire(ctx, ListFilter{}, nil, 3) // page 1, of 2, from B
	if err != nil {
		t.Fatal(err)
	}
	last := first[1]
	if !last.HasSeq || last.Seq <= 0 {
		t.Fatalf("B's cursor %+v: want its creation position", last)
	}
	_, next, _, err := a.ListOrderWire(ctx, ListFilter{}, &last, 3) // page 2, from A
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range next {
		ids = append(ids, c.ID)
		if c.ID == first[0].ID || c.ID == first[1].ID {
			t.Errorf("page 2 from node A repeats %s of page 1 from node B", c.ID)
		}
	}
	if len(next) != len(want)-2 {
		t.Errorf("page 2 holds %v, want the other %d orders", ids, len(want)-2)
	}
}
