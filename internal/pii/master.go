package pii

import (
	"crypto/cipher"
	"encoding/hex"
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
