// Package pii protects the personal data in stored events by crypto-shredding:
// each customer's personal fields are sealed with a data key of that
// customer, and forgetting the customer destroys the key, which leaves the
// sealed bytes in the immutable log unreadable forever.
//
// Keys. A data key is 32 random bytes used with AES-256-GCM (random 96-bit
// nonces). It is stored only wrapped: sealed with the master key (also
// AES-256-GCM), with the customer id as additional data, so a wrapped key
// moved to another customer does not open. The wrapped keys live in a Store
// (eventstore/keys: a JetStream KV bucket, one entry per customer); the
// version of a key is the store's revision of its entry, which only grows,
// so data sealed with an erased key stays unreadable after the customer gets
// a new one.
//
// Keyring. A Keyring hands out unwrapped keys and caches them in memory.
// DataKey creates a customer's key on first use, race-safely: of two
// processes creating it at once, one wins the store's create and the other
// reads the winner's. Forget erases the key from the store and drops it from
// this process's cache; other processes drop theirs (Drop) when they see the
// customer's CustomerForgotten event in the log.
//
// Sealing. Seal and Open bind the ciphertext to additional data chosen by
// the caller (the codec binds order id, event type, customer id and key
// version), so a sealed envelope copied into another event does not open.
//
// Errors: ErrForgotten when the key data was sealed with is gone (the
// customer was forgotten), ErrCorrupt when a sealed or wrapped value does
// not authenticate, ErrNotFound and ErrExists from a Store.
package pii

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"sync"
)

var (
	// ErrForgotten reports that the data key something was sealed with
	// has been erased: the customer was forgotten.
	ErrForgotten = errors.New("pii: personal data erased")
	// ErrCorrupt reports a sealed value or wrapped key that does not
	// authenticate under the key given.
	ErrCorrupt = errors.New("pii: sealed value does not authenticate")
	// ErrNotFound is returned by a Store that holds no key for a customer.
	ErrNotFound = errors.New("pii: no key for the customer")
	// ErrExists is returned by Store.Create when the customer has a key.
	ErrExists = errors.New("pii: the customer already has a key")
	// ErrMasterKey reports an unusable master key.
	ErrMasterKey = errors.New("pii: bad master key")
	// ErrWrongMasterKey reports a master key that is not the one the
	// stored data keys are wrapped under (CheckMasterKey).
	ErrWrongMasterKey = errors.New("pii: the master key does not open the stored data keys")
)

// KeySize is the size in bytes of master and data keys (AES-256).
const KeySize = 32

// Key is one customer's unwrapped data key at one version.
type Key struct {
	CustomerID string
	Version    uint64
	aead       cipher.AEAD
	// macs holds Digest's HMACs, under a key derived from the data key
	// (macKey), shared by the copies of the Key: a new one costs five
	// allocations and about 500 bytes, and every command with personal
	// data asks for a digest.
	macs *sync.Pool
	// readAt numbers the read from the store that gave this key, among a
	// keyring's reads (see Keyring.Confirming); 0 for a key no keyring
	// read.
	readAt uint64
}

// macKey derives Digest's key from a data key, so that no MAC input can
// ever be confused with an AEAD use of the same key.
func macKey(dk []byte) []byte {
	h := hmac.New(sha256.New, dk)
	h.Write([]byte("orderstream-pii/v1 digest"))
	return h.Sum(nil)
}

// Digest returns HMAC-SHA256 of b under a key derived from k: a digest of
// personal data that, unlike a plain hash, nobody can recompute to confirm
// a guess, and nobody at all once the key is erased. It fails only for a
// zero Key.
func (k Key) Digest(b []byte) ([]byte, error) {
	if k.macs == nil {
		return nil, fmt.Errorf("%w: no key", ErrCorrupt)
	}
	h := k.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(b)
	sum := h.Sum(nil)
	k.macs.Put(h)
	return sum, nil
}

// macPool returns a pool of HMAC-SHA256s under mac.
func macPool(mac []byte) *sync.Pool {
	return &sync.Pool{New: func() any { return hmac.New(sha256.New, mac) }}
}

// newAEAD returns AES-256-GCM under raw.
func newAEAD(raw []byte) (cipher.AEAD, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMasterKey, len(raw), KeySize)
	}
	b, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal encrypts plaintext with a fresh random nonce; the result is
// nonce || ciphertext.
func seal(a cipher.AEAD, plaintext, ad []byte) []byte {
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	_, _ = rand.Read(out) // never fails (crypto/rand)
	return a.Seal(out, out, plaintext, ad)
}

// open reverses seal; ErrCorrupt when the value does not authenticate.
func open(a cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(sealed))
	}
	n := a.NonceSize()
	p, err := a.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return p, nil
}

// Seal encrypts plaintext under k, bound to ad. The result holds its own
// nonce. It fails only for a zero Key.
func (k Key) Seal(plaintext, ad []byte) ([]byte, error) {
	if k.aead == nil {
		return nil, fmt.Errorf("%w: no key", ErrCorrupt)
	}
	return seal(k.aead, plaintext, ad), nil
}

// Open decrypts what Seal returned for the same ad; ErrCorrupt when it does
// not authenticate (altered, another key, other additional data).
func (k Key) Open(sealed, ad []byte) ([]byte, error) {
	if k.aead == nil {
		return nil, fmt.Errorf("%w: no key", ErrCorrupt)
	}
	return open(k.aead, sealed, ad)
}
