package pii_test

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/internal/pii"
)

// downStore is a MemStore whose reads fail while down is set.
type downStore struct {
	*pii.MemStore
	down bool
}

var errDown = errors.New("keys unreachable")

func (s *downStore) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	if s.down {
		return nil, 0, errDown
	}
	return s.MemStore.Get(ctx, id)
}

// A keyring whose cache holds a key another process erased since, or the
// key of before an erasure once the customer is back, opens with it (a
// process learns of erasures through a watch that may be behind); a read
// that confirms what it had cached before it began does not: the erased
// version is forgotten, the new one opens, and a leader it cannot ask is
// an error rather than the cached key used unconfirmed.
func TestConfirmingDoesNotUseAKeyErasedSinceItWasCached(t *testing.T) {
	ctx := t.Context()
	st := &downStore{MemStore: pii.NewMemStore()}
	other := pii.NewKeyring(st, master(t)) // the process that forgets
	stale := pii.NewKeyring(st, master(t)) // one that has not heard of it
	k1, _ := sealFor(t, other, "c-1", "1 Old Road")
	if _, err := stale.Key(ctx, "c-1", k1.Version); err != nil { // cached
		t.Fatal(err)
	}
	if err := other.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := stale.Key(ctx, "c-1", k1.Version); err != nil {
		t.Fatalf("the cache without confirming: %v, want the cached key (the watch brings the erasure)", err)
	}
	erased := stale.Confirming()
	if _, err := erased.Key(ctx, "c-1", k1.Version); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("confirming a key erased since: %v, want ErrForgotten", err)
	}

	// The customer back: the old key cached again beside a newer one.
	again := pii.NewKeyring(st, master(t))
	k2, _ := sealFor(t, other, "c-3", "2 Old Road")
	if _, err := again.Key(ctx, "c-3", k2.Version); err != nil {
		t.Fatal(err)
	}
	if err := other.Forget(ctx, "c-3"); err != nil {
		t.Fatal(err)
	}
	k3, ct3 := sealFor(t, other, "c-3", "3 New Road")
	back := again.Confirming()
	if _, err := back.Key(ctx, "c-3", k2.Version); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("confirming the key of before the erasure: %v, want ErrForgotten", err)
	}
	nk, err := back.Key(ctx, "c-3", k3.Version)
	if err != nil {
		t.Fatalf("confirming the new key: %v", err)
	}
	if pt, err := nk.Open(ct3, []byte("ad")); err != nil || string(pt) != "3 New Road" {
		t.Fatalf("Open with the new key = %q, %v", pt, err)
	}

	// A key cached after the read began is current: no second read.
	st.down = true
	if _, err := back.Key(ctx, "c-3", k3.Version); err != nil {
		t.Fatalf("a key the read itself loaded, with the store down: %v", err)
	}
	// One cached before it, with the leader out of reach: an error.
	if _, err := again.Confirming().Key(ctx, "c-3", k3.Version); !errors.Is(err, errDown) {
		t.Fatalf("confirming with the store down: %v, want its error", err)
	}
}
