package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/internal/auth"
)

// A JWKS may hold several keys under one kid (RFC 7517 §4.5: keys of
// different kty offered as alternatives; or, during a rotation by an
// issuer that sets no kid, the old and the new key): a token signed by any
// of them is good, not only one signed by the first listed.
func TestJWKSKeysSharingAKidAreAllTried(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecOld, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecNew, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &rsaKey.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"},
		{Key: &ecOld.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"},
		{Key: &ecOld.PublicKey, Use: "sig"},
		{Key: &ecNew.PublicKey, Use: "sig"},
	}})
	a, err := auth.Load(auth.Config{JWKSFile: write(t, "jwks.json", string(jwks))})
	if err != nil {
		t.Fatal(err)
	}
	valid := claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"viewer"}}
	for _, tc := range []struct {
		name, tok string
	}{
		{"RS256, first key of kid k1", sign(t, jose.SigningKey{Algorithm: jose.RS256, Key: rsaKey}, "k1", valid)},
		{"ES256, second key of kid k1", sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: ecOld}, "k1", valid)},
		{"no kid, old key (first without kid)", sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: ecOld}, "", valid)},
		{"no kid, new key (second without kid)", sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: ecNew}, "", valid)},
	} {
		if p, err := a.Authenticate(tc.tok); err != nil || p.Subject != "bob" {
			t.Errorf("%s: %+v, %v; want bob's token accepted", tc.name, p, err)
		}
	}
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"k1", ""} {
		forged := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: stranger}, kid, valid)
		if p, err := a.Authenticate(forged); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("a token of kid %q signed by a key the JWKS lacks: %+v, %v; want ErrUnauthenticated", kid, p, err)
		}
	}
}
