package pii

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
)

// Store keeps wrapped data keys, one per customer. eventstore/keys is the
// JetStream implementation; MemStore one for tests.
type Store interface {
	// Get returns the customer's wrapped key and its version; an error
	// wrapping ErrNotFound when there is none.
	Get(ctx context.Context, customerID string) (wrapped []byte, version uint64, err error)
	// Create stores the customer's first key and returns its version,
	// greater than any version the customer had before; an
	// error wrapping ErrExists when the customer has one.
	Create(ctx context.Context, customerID string, wrapped []byte) (version uint64, err error)
	// Erase removes every stored version of the customer's key from the
	// storage medium, not only from view. No key is not an error.
	Erase(ctx context.Context, customerID string) error
}

// maxCached bounds the unwrapped keys a Keyring keeps; past it, an
// arbitrary entry makes room (it is read from the store again when needed).
const maxCached = 100_000

// Keyring hands out customers' data keys: it creates, unwraps, caches and
// forgets them. It is safe for concurrent use.
type Keyring struct {
	store Store
	// getLatest is the store's GetLatest, nil when it is no LatestStore.
	getLatest func(ctx context.Context, customerID string) ([]byte, uint64, error)
	master    *MasterKey

	mu    sync.Mutex
	cache map[string]Key
	// drops counts Drop calls. A key read from the store is cached only
	// when no Drop came between the read and the caching: a read that
	// raced a Forget (its Get answered before the erase, its caching
	// came after Forget's last Drop) would otherwise put the erased key
	// back for good.
	drops uint64
	// reads counts the reads of keys from the store begun so far: a
	// key's readAt (see Confirming).
	reads uint64
}

// NewKeyring returns a keyring over store whose keys are wrapped by master.
func NewKeyring(store Store, master *MasterKey) *Keyring {
	r := &Keyring{store: store, master: master, cache: map[string]Key{}}
	if ls, ok := store.(LatestStore); ok {
		r.getLatest = ls.GetLatest
	}
	return r
}

func (r *Keyring) cached(customerID string) (Key, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.cache[customerID]
	return k, ok
}

// readStart is what remember needs of when a read of a key began: the
// count of Drop calls, and the read's number (Key.readAt).
type readStart struct{ drops, read uint64 }

// startRead numbers a read of a key from the store as it begins.
func (r *Keyring) startRead() readStart {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	return readStart{drops: r.drops, read: r.reads}
}

// remember caches k unless a Drop came after its read began (rs), or the
// cache holds the customer's key from a read that began after it: a slow
// read of before an erasure must not replace what a later one found, nor
// a key Confirming takes as current (read after its read began) with one
// it would have to confirm.
func (r *Keyring) remember(k Key, rs readStart) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drops != rs.drops {
		return
	}
	if have, ok := r.cache[k.CustomerID]; ok && have.readAt > rs.read {
		return
	}
	if len(r.cache) >= maxCached {
		for id := range r.cache {
			delete(r.cache, id)
			break
		}
	}
	k.readAt = rs.read
	r.cache[k.CustomerID] = k
}

// DataKey returns the customer's current data key, creating it when the
// customer has none (never had one, or was forgotten). Errors are the
// store's, or ErrCorrupt for a stored key the master key does not unwrap.
func (r *Keyring) DataKey(ctx context.Context, customerID string) (Key, error) {
	if k, ok := r.cached(customerID); ok {
		return k, nil
	}
	k, err := r.load(ctx, customerID)
	if !errors.Is(err, ErrNotFound) {
		return k, err
	}
	rs := r.startRead()
	dk := make([]byte, KeySize)
	_, _ = rand.Read(dk)
	v, err := r.store.Create(ctx, customerID, r.master.wrap(customerID, dk))
	if errors.Is(err, ErrExists) {
		// Another process created it first: use the winner's, as the
		// leader has it (a replica may not have it yet).
		return r.load(ctx, customerID)
	}
	if err != nil {
		return Key{}, err
	}
	return r.keep(customerID, v, dk, rs)
}

// Key returns the customer's data key at version, for opening what was
// sealed with it. It returns ErrForgotten when that key is gone: the
// customer was forgotten (and may have a newer key since); ErrCorrupt when
// the customer's key is older than version, which no key ever had (versions
// only grow): the envelope naming it was altered.
func (r *Keyring) Key(ctx context.Context, customerID string, version uint64) (Key, error) {
	k, ok := r.cached(customerID)
	return r.keyAt(ctx, k, ok, customerID, version)
}

// keyAt is Key, given what the cache held of the customer (k, when ok).
func (r *Keyring) keyAt(ctx context.Context, k Key, ok bool, customerID string, version uint64) (Key, error) {
	if ok && k.Version == version {
		return k, nil
	} else if ok && version < k.Version {
		// Versions only grow: an older one was erased before this one
		// was created.
		return Key{}, ErrForgotten
	}
	// Not cached, or cached at another version: a process that has not
	// yet learnt of a forget may hold the old key while the data is
	// sealed with the new one. The store decides.
	k, err := r.load(ctx, customerID)
	switch {
	case errors.Is(err, ErrNotFound):
		return Key{}, ErrForgotten
	case err != nil:
		return Key{}, err
	}
	return atVersion(k, customerID, version)
}

// atVersion returns k, the customer's key as the store holds it now, if it
// is the key at version: ErrForgotten when version is older (erased since),
// ErrCorrupt when it is newer than any key of theirs yet.
func atVersion(k Key, customerID string, version uint64) (Key, error) {
	switch {
	case k.Version < version:
		return Key{}, fmt.Errorf("%w: customer %s has key version %d, not %d, which no key of theirs had yet", ErrCorrupt, customerID, k.Version, version)
	case k.Version != version:
		return Key{}, ErrForgotten
	}
	return k, nil
}

// LatestStore is a Store whose Get may be answered by a replica that lags
// (a replicated bucket) and that can be asked its leader instead: the
// keyring reads every key it uses through GetLatest (see load).
type LatestStore interface {
	Store
	// GetLatest is Get as the store's leader answers it.
	GetLatest(ctx context.Context, customerID string) (wrapped []byte, version uint64, err error)
}

// leaderGet returns the store's read as its leader answers it
// (LatestStore.GetLatest) when it has one, else its plain Get.
func (r *Keyring) leaderGet() func(context.Context, string) ([]byte, uint64, error) {
	if r.getLatest != nil {
		return r.getLatest
	}
	return r.store.Get
}

// load reads and unwraps the customer's stored key, as the store's leader
// has it when the store can say (LatestStore), and caches it (see
// remember). Not a replica's: one that lags may not have a key created a
// moment ago, which Key would take for erased, or may still have one
// erased a moment ago, which DataKey would seal new data with (lost when
// the replica catches up) and the cache would keep opening erased data
// with, after the watch's Drop had come and gone.
func (r *Keyring) load(ctx context.Context, customerID string) (Key, error) {
	rs := r.startRead()
	wrapped, v, err := r.leaderGet()(ctx, customerID)
	if err != nil {
		return Key{}, err
	}
	dk, err := r.master.unwrap(customerID, wrapped)
	if err != nil {
		return Key{}, fmt.Errorf("customer %s key version %d: %w", customerID, v, err)
	}
	return r.keep(customerID, v, dk, rs)
}

// keep makes a Key of dk, clears dk, and caches the key (see remember).
func (r *Keyring) keep(customerID string, version uint64, dk []byte, rs readStart) (Key, error) {
	a, err := newAEAD(dk)
	mac := macKey(dk)
	clear(dk)
	if err != nil {
		return Key{}, err
	}
	k := Key{CustomerID: customerID, Version: version, aead: a, macs: macPool(mac)}
	r.remember(k, rs)
	return k, nil
}

// Has reports whether the customer has a data key now, as the store's
// leader has it when the store can say: false when the customer never had
// one or was forgotten since. Errors are the store's.
func (r *Keyring) Has(ctx context.Context, customerID string) (bool, error) {
	_, _, err := r.leaderGet()(ctx, customerID)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// Forget erases the customer's key from the store and drops it from the
// cache. Data sealed with it can never be opened again. Forgetting a
// customer without a key succeeds.
func (r *Keyring) Forget(ctx context.Context, customerID string) error {
	r.Drop(customerID)
	if err := r.store.Erase(ctx, customerID); err != nil {
		return err
	}
	// A read that began before the first Drop and cached the key since;
	// one still in flight will not cache it (see remember).
	r.Drop(customerID)
	return nil
}

// Drop removes the customer's key from this keyring's cache, as a process
// does on learning that another one forgot the customer; customer id ""
// (which no customer has) removes every key, as a process does when it
// cannot say which were forgotten (its watch of the keys was lost). A read
// of a key that began before Drop does not cache what it read.
func (r *Keyring) Drop(customerID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if customerID == "" {
		clear(r.cache)
	} else {
		delete(r.cache, customerID)
	}
	r.drops++
}

// Confirming returns the keyring as a read that begins now uses it to open
// what was sealed: a key whose read from the store began before the call
// is read again from the store's leader when the read asks for it (once,
// unless a Drop meanwhile keeps the answer from the cache), and the
// leader's answer decides. A process learns of
// another's erasure through a watch that may be behind (or lost for a
// while), and until then its cache holds the destroyed key, or, if the
// customer is back since, the key of before the erasure beside a newer
// one: a read that opened with it would show what the erasure destroyed.
// One read of the leader per customer cached before the call; a key whose
// read began after it is current already.
func (r *Keyring) Confirming() *Confirming {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &Confirming{r: r, mark: r.reads}
}

// Confirming is a Keyring for one read (see Keyring.Confirming).
type Confirming struct {
	r    *Keyring
	mark uint64 // keys whose read began at or before it are confirmed before use
}

// DataKey is Keyring.DataKey.
func (c *Confirming) DataKey(ctx context.Context, customerID string) (Key, error) {
	return c.r.DataKey(ctx, customerID)
}

// Key is Keyring.Key, with a key read before the read began read again
// from the store's leader, whose answer decides. Errors are Keyring.Key's,
// and the store's when the leader cannot be read: the cached key is not
// used unconfirmed.
func (c *Confirming) Key(ctx context.Context, customerID string, version uint64) (Key, error) {
	if k, ok := c.r.cached(customerID); ok && k.readAt > c.mark {
		// The key looked at, not the cache again: a read that began
		// before this one may have cached the key it found since.
		return c.r.keyAt(ctx, k, true, customerID, version)
	}
	// Not cached, or read before the read began: the leader decides.
	// Not cached, Keyring.Key would look in the cache again, where a
	// read that began before an erasure may have put the destroyed key
	// meanwhile. load caches what the leader holds unless a Drop came
	// meanwhile; its answer stands either way. A key the leader has not
	// is dropped.
	fresh, err := c.r.load(ctx, customerID)
	switch {
	case errors.Is(err, ErrNotFound):
		c.r.Drop(customerID)
		return Key{}, ErrForgotten
	case err != nil:
		return Key{}, err
	}
	return atVersion(fresh, customerID, version)
}

// Drop is Keyring.Drop.
func (c *Confirming) Drop(customerID string) { c.r.Drop(customerID) }

// MemStore is a Store in memory, for tests.
type MemStore struct {
	mu   sync.Mutex
	next uint64
	keys map[string]memEntry
}

type memEntry struct {
	wrapped []byte
	version uint64
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{keys: map[string]memEntry{}} }

// Get implements Store.
func (s *MemStore) Get(_ context.Context, customerID string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[customerID]
	if !ok {
		return nil, 0, ErrNotFound
	}
	return e.wrapped, e.version, nil
}

// Create implements Store.
func (s *MemStore) Create(_ context.Context, customerID string, wrapped []byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[customerID]; ok {
		return 0, ErrExists
	}
	s.next++
	s.keys[customerID] = memEntry{wrapped: wrapped, version: s.next}
	return s.next, nil
}

// Erase implements Store.
func (s *MemStore) Erase(_ context.Context, customerID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, customerID)
	return nil
}
