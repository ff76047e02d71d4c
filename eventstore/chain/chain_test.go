package chain

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore"
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

// chained returns an order's events with the given versions, each linked
// to the one before; events whose hashed flag is false carry no hash, as
// those written before hashes were recorded, and the next one starts the
// chain afresh, as the append does after them.
func chained(t *testing.T, versions []uint64, hashed []bool) []eventstore.Recorded {
	t.Helper()
	prev := Zero
	recs := make([]eventstore.Recorded, len(versions))
	for i, ver := range versions {
		r := eventstore.Recorded{OrderID: "o-1", Position: uint64(i + 1), Version: ver, Type: "E", Data: []byte{byte(i)}}
		if hashed[i] {
			h, err := Compute(prev, FieldsOf(r))
			if err != nil {
				t.Fatal(err)
			}
			r.Meta.PrevHash, r.Meta.Hash = prev, h
			prev = h
		} else {
			prev = Zero
		}
		recs[i] = r
	}
	return recs
}

// An event whose recorded version is not its place in the order's history
// breaks the chain as missing events, even when its links hold: the first
// event removed from a history whose first event had no hash, or the last
// event replaced by one claiming another version. Events without a
// version are not held to one.
func TestVerifyHoldsEventsToTheirVersions(t *testing.T) {
	all := []bool{true, true, true}
	if b := Verify(chained(t, []uint64{1, 2, 3}, all)); b != nil {
		t.Fatalf("intact history: %+v", b)
	}
	if b := Verify(chained(t, []uint64{0, 0, 0}, all)); b != nil {
		t.Fatalf("history without versions: %+v", b)
	}
	legacyFirst := chained(t, []uint64{1, 2, 3}, []bool{false, true, true})
	if b := Verify(legacyFirst); b == nil || b.Kind != OutOfChain || b.Version != 1 {
		t.Fatalf("a first event without hash: %+v, want out of chain at version 1", b)
	}
	if b := Verify(legacyFirst[1:]); b == nil || b.Kind != Missing || b.Version != 1 {
		t.Fatalf("that first event removed: %+v, want missing at the first event found", b)
	}
	replaced := chained(t, []uint64{1, 2, 42}, all)
	if b := Verify(replaced); b == nil || b.Kind != Missing || b.Version != 3 {
		t.Fatalf("last event claiming version 42: %+v, want missing at event 3", b)
	}
}
