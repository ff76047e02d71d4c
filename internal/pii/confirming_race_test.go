package pii_test

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/internal/pii"
)

// hookStore is a MemStore that runs onGet (once) during a Get, after the
// store answered: it stands for what other goroutines do while a read of
// the leader is in flight.
type hookStore struct {
	*pii.MemStore
	onGet func()
}

func (s *hookStore) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	b, v, err := s.MemStore.Get(ctx, id)
	if f := s.onGet; f != nil {
		s.onGet = nil
		f()
	}
	return b, v, err
}

// Confirming.Key answers from what the leader said, not from the cache:
// when any Drop (of another customer: the keys' watch, or an export's own
// CustomerForgotten events) comes during its read, remember declines to
// cache the leader's key, and the cache still holds the key of before the
// erasure, which it answered from: the erased data opened in the clear.
func TestConfirmingAnswersFromTheLeaderWhenADropRaces(t *testing.T) {
	ctx := t.Context()
	st := &hookStore{MemStore: pii.NewMemStore()}
	other := pii.NewKeyring(st, master(t))
	stale := pii.NewKeyring(st, master(t))
	k1, ct1 := sealFor(t, other, "c-1", "1 Old Road")
	if _, err := stale.Key(ctx, "c-1", k1.Version); err != nil { // cached
		t.Fatal(err)
	}
	if err := other.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	sealFor(t, other, "c-1", "2 New Road") // the customer back: version 2
	conf := stale.Confirming()
	st.onGet = func() { stale.Drop("someone-else") } // an unrelated erasure seen meanwhile
	k, err := conf.Key(ctx, "c-1", k1.Version)
	if err == nil {
		pt, _ := k.Open(ct1, []byte("ad"))
		t.Fatalf("Confirming.Key of the erased version 1 returned its key (opens %q); want ErrForgotten", pt)
	}
	if !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("Confirming.Key: %v, want ErrForgotten", err)
	}
}

// A key read from the leader before Confirming() was called (the read in
// flight when a Forget completed and the audit read began) is confirmed
// though it was cached after the call: a key's place is taken when its
// read begins. It was taken when the key was cached, and the key trusted.
func TestConfirmingConfirmsAKeyReadBeforeTheCall(t *testing.T) {
	ctx := t.Context()
	st := &hookStore{MemStore: pii.NewMemStore()}
	other := pii.NewKeyring(st, master(t))
	stale := pii.NewKeyring(st, master(t))
	k1, ct1 := sealFor(t, other, "c-1", "1 Old Road")
	var conf *pii.Confirming
	st.onGet = func() {
		// The leader answered version 1; then the erasure completes and
		// an audit read begins, before this read caches the key.
		if err := other.Forget(ctx, "c-1"); err != nil {
			t.Error(err)
		}
		conf = stale.Confirming()
	}
	if _, err := stale.Key(ctx, "c-1", k1.Version); err != nil {
		t.Fatal(err)
	}
	k, err := conf.Key(ctx, "c-1", k1.Version)
	if err == nil {
		pt, _ := k.Open(ct1, []byte("ad"))
		t.Fatalf("a read begun after Forget returned opened the erased data: %q; want ErrForgotten", pt)
	}
	if !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("Confirming.Key: %v, want ErrForgotten", err)
	}
}

// A read of a key that began before another's, and ends after it, does not
// replace in the cache the key the later read found: the slow read found
// the customer's key of before an erasure, the later one the key they have
// since, and the cache then answered for the erased version with the
// destroyed key.
func TestASlowerEarlierReadDoesNotReplaceALaterOnesKey(t *testing.T) {
	ctx := t.Context()
	st := &hookStore{MemStore: pii.NewMemStore()}
	other := pii.NewKeyring(st, master(t))
	stale := pii.NewKeyring(st, master(t))
	k1, ct1 := sealFor(t, other, "c-1", "1 Old Road")
	var k2 pii.Key
	st.onGet = func() {
		// The leader answered version 1 to the first read; before it
		// caches that, the customer is forgotten and back, and a second
		// read finds version 2.
		if err := other.Forget(ctx, "c-1"); err != nil {
			t.Error(err)
		}
		k2, _ = sealFor(t, other, "c-1", "2 New Road")
		if _, err := stale.Key(ctx, "c-1", k2.Version); err != nil {
			t.Error(err)
		}
	}
	if _, err := stale.Key(ctx, "c-1", k1.Version); err != nil {
		t.Fatal(err)
	}
	k, err := stale.Key(ctx, "c-1", k1.Version)
	if err == nil {
		pt, _ := k.Open(ct1, []byte("ad"))
		t.Fatalf("the erased version 1, after a read found version 2: its key, which opens %q; want ErrForgotten", pt)
	}
	if !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("Key: %v, want ErrForgotten", err)
	}
	if _, err := stale.Key(ctx, "c-1", k2.Version); err != nil {
		t.Fatalf("version 2: %v", err)
	}
}
