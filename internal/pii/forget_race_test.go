package pii_test

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/internal/pii"
)

// pausingStore is a MemStore whose Get, once armed, reads the key and then
// waits (as a Get whose answer is in flight when another caller erases the
// key does) until released.
type pausingStore struct {
	*pii.MemStore
	read, release chan struct{}
}

func (s *pausingStore) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	w, v, err := s.MemStore.Get(ctx, id)
	if s.read != nil {
		close(s.read)
		<-s.release
	}
	return w, v, err
}

// A Key call that read the wrapped key from the store before Forget erased
// it, and would cache it after Forget's last Drop, does not: the key would
// otherwise keep opening the forgotten customer's data from this keyring's
// cache (audit, command and query reads) until something dropped it again.
func TestKeyReadRacingForgetIsNotCachedAfterIt(t *testing.T) {
	ctx := t.Context()
	st := &pausingStore{MemStore: pii.NewMemStore()}
	ring := pii.NewKeyring(st, master(t))
	k, err := ring.DataKey(ctx, "c-1")
	if err != nil {
		t.Fatal(err)
	}
	ct, err := k.Seal([]byte("17 Forgetmenot Lane"), []byte("ad"))
	if err != nil {
		t.Fatal(err)
	}
	ring.Drop("c-1") // as after eviction or a restart: not cached
	st.read, st.release = make(chan struct{}), make(chan struct{})
	got := make(chan error, 1)
	go func() {
		_, err := ring.Key(ctx, "c-1", k.Version)
		got <- err
	}()
	<-st.read
	st.read = nil
	if err := ring.Forget(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	close(st.release)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// The customer is forgotten; its key is gone from the store.
	k2, err := ring.Key(ctx, "c-1", k.Version)
	if !errors.Is(err, pii.ErrForgotten) {
		pt, _ := k2.Open(ct, []byte("ad"))
		t.Errorf("Key after Forget returned: %v; it opens the forgotten data: %q", err, pt)
	}
}
