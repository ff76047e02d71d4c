package pii

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// DevMasterKey loads the master key file at path, creating it (mode 0600)
// with a random key when it does not exist. created reports that it did:
// a key made up on the spot is for development only, as it sits beside the
// data it protects.
func DevMasterKey(path string) (k *MasterKey, created bool, err error) {
	k, err = LoadMasterKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	raw := make([]byte, KeySize)
	_, _ = rand.Read(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Created by another process since: use that one.
		k, err = LoadMasterKey(path)
		return k, false, err
	}
	if err != nil {
		return nil, false, err
	}
	_, werr := f.WriteString(hex.EncodeToString(raw) + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return nil, false, err
	}
	k, err = NewMasterKey(raw)
	return k, true, err
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
