package query

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/orderstream/orderstream/projections"
)

// A page token carries an order's seq only when it is a log position (1 or
// more), which every read model fed by the log gives the order alike. A
// migrated row's number (below 1) is its own file's: the token names the
// order by id instead, and the next page finds its seq where it is read,
// as for a token issued before seqs. A token that carries one anyway (from
// a build before this rule) is read the same way.
func TestPageTokenCarriesOnlyLogPositions(t *testing.T) {
	for _, c := range []struct {
		seq     int64
		carried bool
	}{{42, true}, {1, true}, {0, false}, {-3, false}} {
		tok := encodeToken(projections.Cursor{CreatedAt: 7, Seq: c.seq, HasSeq: true, ID: "o-1"}, "f")
		got, err := decodeToken(tok, "f")
		if err != nil {
			t.Fatal(err)
		}
		if got.HasSeq != c.carried || (c.carried && got.Seq != c.seq) || got.ID != "o-1" || got.CreatedAt != 7 {
			t.Errorf("seq %d: decoded %+v; carried %v", c.seq, *got, c.carried)
		}
	}
	neg := int64(-3)
	b, err := json.Marshal(pageToken{C: 7, S: &neg, I: "o-1", F: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeToken(base64.RawURLEncoding.EncodeToString(b), "f"); err != nil || got.HasSeq || got.ID != "o-1" {
		t.Errorf("an older token with seq -3: %+v, %v; want it read by id", got, err)
	}
}
