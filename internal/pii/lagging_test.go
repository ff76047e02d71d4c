package pii_test

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/internal/pii"
)

// laggingStore is a MemStore whose Get answers as a replica that has not
// got a key created a moment ago (none, or an older version), while
// GetLatest answers as the leader.
type laggingStore struct {
	*pii.MemStore
	lagging bool
	older   []byte // what the replica still holds, if anything
	olderV  uint64
}

func (s *laggingStore) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	if s.lagging {
		if s.older != nil {
			return s.older, s.olderV, nil
		}
		return nil, 0, pii.ErrNotFound
	}
	return s.MemStore.Get(ctx, id)
}

func (s *laggingStore) GetLatest(ctx context.Context, id string) ([]byte, uint64, error) {
	return s.MemStore.Get(ctx, id)
}

// A key a lagging replica does not have yet is not taken for erased: data
// sealed with it opens, as the leader's answer decides. Erased data stays
// erased. Before, the replica's "not found" read as forgotten, and the
// projection stored the order's personal data as erased for good.
func TestKeyOnALaggingReplicaIsNotErased(t *testing.T) {
	ctx := t.Context()
	st := &laggingStore{MemStore: pii.NewMemStore()}
	writer := pii.NewKeyring(st, master(t))
	k, ct := sealFor(t, writer, "c-1", "5 Replica Road")
	st.lagging = true
	reader := pii.NewKeyring(st, master(t)) // another process: nothing cached
	rk, err := reader.Key(ctx, "c-1", k.Version)
	if err != nil {
		t.Fatalf("Key through a lagging replica: %v", err)
	}
	if pt, err := rk.Open(ct, []byte("ad")); err != nil || string(pt) != "5 Replica Road" {
		t.Fatalf("Open = %q, %v", pt, err)
	}

	// The replica holds the customer's older key, which a forget erased
	// before the new one was made: the new one still opens.
	old := pii.NewKeyring(st, master(t))
	st.lagging = false
	w1, v1, err := st.Get(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	k2, ct2 := sealFor(t, writer, "c-1", "6 Leader Lane")
	st.older, st.olderV, st.lagging = w1, v1, true
	ok2, err := old.Key(ctx, "c-1", k2.Version)
	if err != nil {
		t.Fatalf("Key at the new version through a replica holding the old one: %v", err)
	}
	if pt, err := ok2.Open(ct2, []byte("ad")); err != nil || string(pt) != "6 Leader Lane" {
		t.Fatalf("Open with the new key = %q, %v", pt, err)
	}
	st.older, st.lagging = nil, true // the replica has neither
	if _, err := pii.NewKeyring(st, master(t)).Key(ctx, "c-1", k.Version); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("Key at the erased version: %v, want ErrForgotten", err)
	}
}

// Has tells a customer with a key from one without (never had one, or
// forgotten), asking the leader rather than a lagging replica.
func TestHas(t *testing.T) {
	ctx := t.Context()
	st := &laggingStore{MemStore: pii.NewMemStore()}
	ring := pii.NewKeyring(st, master(t))
	has := func(want bool) {
		t.Helper()
		if got, err := ring.Has(ctx, "c-1"); err != nil || got != want {
			t.Fatalf("Has = %v, %v; want %v", got, err, want)
		}
	}
	has(false)
	if _, err := ring.DataKey(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	st.lagging = true // the replica has not got the new key
	has(true)
	st.lagging = false
	if err := ring.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	has(false)
}

// A key that a lagging replica still holds after the customer was forgotten
// is not taken from it: Key answers ErrForgotten, and nothing is cached
// that opens the customer's older data once the replica has caught up.
// Key used to read the replica, cache its key, then ask the leader, whose
// "none" left the erased key in the cache.
func TestErasedKeyOfALaggingReplicaIsNotCached(t *testing.T) {
	ctx := t.Context()
	st := &laggingStore{MemStore: pii.NewMemStore()}
	writer := pii.NewKeyring(st, master(t))
	_, ct1 := sealFor(t, writer, "c-1", "1 Erased Street")
	w1, v1, err := st.Get(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	k2, err := writer.DataKey(ctx, "c-1") // a new order after the forget
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Forget(ctx, "c-1"); err != nil { // forgotten again
		t.Fatal(err)
	}
	// A replica that has applied neither erasure.
	st.older, st.olderV, st.lagging = w1, v1, true
	reader := pii.NewKeyring(st, master(t))
	if _, err := reader.Key(ctx, "c-1", k2.Version); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("Key at the second erased version: %v, want ErrForgotten", err)
	}
	// The replica catches up: nobody holds any key of c-1 any more.
	st.older, st.lagging = nil, false
	k, err := reader.Key(ctx, "c-1", v1)
	if !errors.Is(err, pii.ErrForgotten) {
		pt, _ := k.Open(ct1, []byte("ad"))
		t.Fatalf("Key at the first erased version after the leader said none: %v; it opens %q", err, pt)
	}
}

// DataKey of a customer forgotten a moment ago does not hand out the
// destroyed key that a replica which has not applied the erasure still
// holds: data sealed after the erasure (a new order of the customer) with
// it was lost for every other process once the replica caught up.
func TestDataKeyAfterAForgetIsNotALaggingReplicasErasedKey(t *testing.T) {
	ctx := t.Context()
	st := &laggingStore{MemStore: pii.NewMemStore()}
	writer := pii.NewKeyring(st, master(t))
	if _, err := writer.DataKey(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	w1, v1, err := st.Get(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	st.older, st.olderV, st.lagging = w1, v1, true
	cmd := pii.NewKeyring(st, master(t)) // another command process
	k, ct := sealFor(t, cmd, "c-1", "2 New Order Road")
	st.older, st.lagging = nil, false
	if _, err := pii.NewKeyring(st, master(t)).Key(ctx, "c-1", k.Version); err != nil {
		t.Fatalf("data sealed after the erasure (key version %d, erased %d) cannot be opened: %v (ciphertext %d bytes lost)", k.Version, v1, err, len(ct))
	}
}

// sealFor seals plaintext with the customer's data key from kr (made when
// there is none) and returns the key and the ciphertext.
func sealFor(t *testing.T, kr *pii.Keyring, customerID, plaintext string) (pii.Key, []byte) {
	t.Helper()
	k, err := kr.DataKey(t.Context(), customerID)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := k.Seal([]byte(plaintext), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	return k, ct
}
