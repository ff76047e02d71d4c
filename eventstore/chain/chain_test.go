package chain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strings"
	"testing"
	"time"
)

// reference is the chain's definition written plainly: every stored hash
// was computed this way, so Compute must never differ from it.
func reference(prevHex string, f Fields) string {
	prev, _ := hex.DecodeString(prevHex)
	h := sha256.New()
	h.Write([]byte(Tag))
	h.Write(prev)
	put := func(h hash.Hash, b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put(h, []byte(f.OrderID))
	put(h, []byte(f.Type))
	put(h, []byte(f.OccurredAt.UTC().Format(time.RFC3339Nano)))
	put(h, []byte(f.Actor))
	put(h, []byte(f.RequestID))
	put(h, f.Payload)
	return hex.EncodeToString(h.Sum(nil))
}

func TestComputeMatchesTheDefinition(t *testing.T) {
	at := time.Date(2026, 12, 3, 21, 0, 0, 123456789, time.FixedZone("CET", 3600))
	prevs := []string{Zero, strings.Repeat("ab", 32), strings.ToUpper(strings.Repeat("9f", 32))}
	for _, f := range []Fields{
		{},
		{OrderID: "o-1", Type: "OrderCreated", OccurredAt: at, Actor: "alice", RequestID: "r-1", Payload: []byte{1, 2, 3}},
		{OrderID: strings.Repeat("x", 64), Type: "ItemAdded", OccurredAt: at.Add(-time.Hour), Payload: make([]byte, 4096)}, // beyond the stack buffer
		{OrderID: "o-2", OccurredAt: time.Unix(0, 0)},
	} {
		for _, prev := range prevs {
			got, err := Compute(prev, f)
			if err != nil {
				t.Fatal(err)
			}
			if want := reference(prev, f); got != want {
				t.Fatalf("Compute(%s, %+v) = %s, the definition says %s", prev, f, got, want)
			}
		}
	}
	for _, bad := range []string{"", "00", Zero + "00", strings.Repeat("zz", 32)} {
		if _, err := Compute(bad, Fields{}); err == nil {
			t.Errorf("previous hash %q accepted", bad)
		}
	}
}

// The append path hashes every event: Compute allocates its result and the
// buffer it hashes, not a copy of every field (the definition above takes 5).
func TestComputeAllocations(t *testing.T) {
	f := Fields{OrderID: "o-1", Type: "OrderCreated", OccurredAt: time.Now(), Actor: "alice", RequestID: "r-1", Payload: make([]byte, 200)}
	if n := testing.AllocsPerRun(100, func() { _, _ = Compute(Zero, f) }); n > 2 {
		t.Fatalf("%v allocations per hash, want at most 2", n)
	}
}
