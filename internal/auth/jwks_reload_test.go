package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/internal/auth"
)

// The JWKS file is read again when it changes, so an issuer's key rotation
// needs no restart: a key added verifies tokens at once (a token whose kid
// the keys lack has the file looked at), a key removed stops verifying
// them within the recheck interval, and a file that no longer reads as a
// JWKS leaves the keys read before in use. The file was read at start-up
// only.
func TestJWKSFileIsReadAgainWhenItChanges(t *testing.T) {
	oldKey, newKey := p256(t), p256(t)
	jwks := func(keys ...jose.JSONWebKey) string { return jwksJSON(t, keys...) }
	oldPub := jose.JSONWebKey{Key: &oldKey.PublicKey, KeyID: "2026-old", Algorithm: "ES256", Use: "sig"}
	newPub := jose.JSONWebKey{Key: &newKey.PublicKey, KeyID: "2026-new", Algorithm: "ES256", Use: "sig"}
	path := write(t, "jwks.json", jwks(oldPub))
	a, err := auth.Load(auth.Config{JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	auth.SetNow(a, func() time.Time { return time.Unix(0, now.Load()) })
	c := claims{Claims: jwt.Claims{Subject: "bob"}, Roles: []string{"viewer"}}
	byOld := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: oldKey}, "2026-old", c)
	byNew := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: newKey}, "2026-new", c)
	accepted := func(tok string) bool {
		_, err := a.Authenticate(tok)
		if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("Authenticate: %v", err)
		}
		return err == nil
	}
	if !accepted(byOld) || accepted(byNew) {
		t.Fatal("before the rotation: want the old key's token only")
	}
	replace := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	replace(jwks(oldPub, newPub)) // the new key published
	if !accepted(byNew) || !accepted(byOld) {
		t.Fatal("with both keys in the file: want both tokens accepted, at once")
	}
	replace(jwks(newPub)) // the old key revoked
	now.Add(int64(11 * time.Second))
	if accepted(byOld) || !accepted(byNew) {
		t.Fatal("after the old key left the file: want the new key's token only")
	}
	replace("{not json")
	now.Add(int64(11 * time.Second))
	if !accepted(byNew) || accepted(byOld) {
		t.Fatal("with the file broken: want the keys read before still in use")
	}
}

// An issuer that sets no kid rotates by adding its new key to the file and
// signing with it: the new key's tokens are accepted at once, as for an
// issuer with kids. The keys without a kid read before matched the new
// tokens' (empty) kid too, so the file was not looked at, and the tokens
// were refused until the recheck interval had passed.
func TestJWKSKeyAddedWithoutKidVerifiesAtOnce(t *testing.T) {
	oldKey, newKey := p256(t), p256(t)
	jwks := func(keys ...*ecdsa.PrivateKey) string {
		var pub []jose.JSONWebKey
		for _, k := range keys {
			pub = append(pub, jose.JSONWebKey{Key: &k.PublicKey, Algorithm: "ES256", Use: "sig"})
		}
		return jwksJSON(t, pub...)
	}
	path := write(t, "jwks.json", jwks(oldKey))
	a, err := auth.Load(auth.Config{JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	auth.SetNow(a, func() time.Time { return at }) // the clock stands still: no recheck falls due
	c := claims{Claims: jwt.Claims{Subject: "bob"}, Roles: []string{"viewer"}}
	if _, err := a.Authenticate(sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: oldKey}, "", c)); err != nil {
		t.Fatalf("a token of the key in the file: %v", err)
	}
	byNew := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: newKey}, "", c)
	if _, err := a.Authenticate(byNew); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a token of a key not yet in the file: %v, want ErrUnauthenticated", err)
	}
	if err := os.WriteFile(path, []byte(jwks(oldKey, newKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := a.Authenticate(byNew); err != nil || p.Subject != "bob" {
		t.Fatalf("a token of the key just added to the file: %v, %v; want bob at once", p, err)
	}
}

// p256 is a new P-256 key.
func p256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksJSON is a JWKS of keys.
func jwksJSON(t *testing.T, keys ...jose.JSONWebKey) string {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
