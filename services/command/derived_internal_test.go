package command

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// An order id derived from a request id never changes from one build to
// the next: a retry after an upgrade must name the same order. It is
// uuid.NewHash's SHA-256 name-based UUID of the request id, whatever its
// length.
func TestDerivedOrderIDIsTheNameBasedUUID(t *testing.T) {
	for _, rid := range []string{"", "a", "bench-1", "7d3f0c2a-5c0d-4d74-b6c6-456a4ad4d667", strings.Repeat("r", 127), strings.Repeat("q", 128), strings.Repeat("x", 129), strings.Repeat("é", 200)} {
		want := uuid.NewHash(sha256.New(), orderIDSpace, []byte(rid), 8).String()
		if got := derivedOrderID(rid); got != want {
			t.Errorf("derivedOrderID(%q) = %s; want %s", rid, got, want)
		}
	}
}
