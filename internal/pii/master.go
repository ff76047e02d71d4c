package pii

import (
	"context"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MasterKey wraps and unwraps data keys. It never leaves the process.
type MasterKey struct {
	aead cipher.AEAD
}

// wrapAD binds a wrapped key to its customer.
func wrapAD(customerID string) []byte {
	return []byte("orderstream-pii/v1 data key\x00" + customerID)
}

// NewMasterKey returns a master key from KeySize raw bytes; ErrMasterKey
// for another length.
func NewMasterKey(raw []byte) (*MasterKey, error) {
	a, err := newAEAD(raw)
	if err != nil {
		return nil, err
	}
	return &MasterKey{aead: a}, nil
}

// LoadMasterKey reads a master key file: 64 hexadecimal digits (32 bytes),
// surrounding whitespace ignored. Errors wrap ErrMasterKey for content that
// is not such a key, or are the file's read error.
func LoadMasterKey(path string) (*MasterKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %s must hold %d hexadecimal digits", ErrMasterKey, path, 2*KeySize)
	}
	return NewMasterKey(raw)
}

// wrap seals a data key for customerID.
func (m *MasterKey) wrap(customerID string, dk []byte) []byte {
	return seal(m.aead, dk, wrapAD(customerID))
}

// unwrap opens a wrapped data key of customerID; ErrCorrupt when it was
// not wrapped by this master key for this customer.
func (m *MasterKey) unwrap(customerID string, wrapped []byte) ([]byte, error) {
	dk, err := open(m.aead, wrapped, wrapAD(customerID))
	if err != nil {
		return nil, err
	}
	if len(dk) != KeySize {
		return nil, fmt.Errorf("%w: data key of %d bytes", ErrCorrupt, len(dk))
	}
	return dk, nil
}

// checkAD is the additional data of a master key's check value: no data
// key is wrapped under it.
const checkAD = "orderstream-pii/v1 master key check"

// check returns a value sealed under m that only m opens: kept beside the
// data keys, it tells a master key that is not theirs.
func (m *MasterKey) check() []byte {
	return seal(m.aead, make([]byte, KeySize), []byte(checkAD))
}

// opensCheck reports whether check was made by m.
func (m *MasterKey) opensCheck(check []byte) bool {
	_, err := open(m.aead, check, []byte(checkAD))
	return err == nil
}

// CheckStore is where CheckMasterKey finds what to check a master key
// against: the check value kept beside the data keys, or, where none is
// kept yet (keys wrapped before it was), one of those keys.
type CheckStore interface {
	// MasterCheck returns the check value, found false when none is kept.
	MasterCheck(ctx context.Context) (check []byte, found bool, err error)
	// CreateMasterCheck keeps check unless one is kept already: an error
	// wrapping ErrExists then.
	CreateMasterCheck(ctx context.Context, check []byte) error
	// SomeKeys returns up to n customers' wrapped data keys (none when
	// none is stored).
	SomeKeys(ctx context.Context, n int) ([]WrappedKey, error)
}

// WrappedKey is a customer's data key as stored: wrapped under the master
// key.
type WrappedKey struct {
	CustomerID string
	Wrapped    []byte
}

// checkSample is how many stored keys CheckMasterKey tries before a check
// value is kept: one stray key (wrapped under another master key by a
// process that had the wrong one) must not decide for all.
const checkSample = 16

// CheckMasterKey checks that m is the master key the data keys in s are
// wrapped under, and keeps a check value of it in s when there is none:
// against that value, or, before there is one, against up to checkSample
// stored data keys, of which one must open (a store with none takes m).
// A node started with another master key (another PII_MASTER_KEY_FILE,
// or none) would take every sealed event for altered: its reads answered
// DATA_LOSS and its projection dead-lettered every order with personal
// data, for good. It returns an error wrapping ErrWrongMasterKey then, or
// the store's error.
func CheckMasterKey(ctx context.Context, s CheckStore, m *MasterKey) error {
	for {
		check, found, err := s.MasterCheck(ctx)
		if err != nil {
			return err
		}
		if found {
			if !m.opensCheck(check) {
				return fmt.Errorf("%w: it does not open the check value kept beside them", ErrWrongMasterKey)
			}
			return nil
		}
		sample, err := s.SomeKeys(ctx, checkSample)
		if err != nil {
			return err
		}
		opens := len(sample) == 0
		for _, k := range sample {
			if _, err := m.unwrap(k.CustomerID, k.Wrapped); err == nil {
				opens = true
				break
			}
		}
		if !opens {
			return fmt.Errorf("%w: it opens none of the %d data keys tried", ErrWrongMasterKey, len(sample))
		}
		err = s.CreateMasterCheck(ctx, m.check())
		if !errors.Is(err, ErrExists) {
			return err
		}
		// Another process kept one meanwhile: checked against it.
	}
}
