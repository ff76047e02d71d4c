package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/internal/auth"
)

// Every algorithm the README names is accepted from a key of the JWKS, or
// from the HMAC secret when it is as long as the algorithm's hash (RFC 7518
// §3.2), and an HMAC token whose algorithm the secret is too short for is
// refused.
func TestEveryDocumentedAlgorithm(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	curves := map[jose.SignatureAlgorithm]elliptic.Curve{jose.ES256: elliptic.P256(), jose.ES384: elliptic.P384(), jose.ES512: elliptic.P521()}
	ecKeys := map[jose.SignatureAlgorithm]*ecdsa.PrivateKey{}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rsaKey.PublicKey, KeyID: "rsa", Use: "sig"}}}
	for alg, curve := range curves {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ecKeys[alg] = k
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: string(alg), Use: "sig"})
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set.Keys = append(set.Keys, jose.JSONWebKey{Key: edPub, KeyID: "ed", Use: "sig"})
	jwks, _ := json.Marshal(set)
	long := strings.Repeat("s", 64)
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", long), JWKSFile: write(t, "jwks.json", string(jwks))})
	if err != nil {
		t.Fatal(err)
	}
	valid := claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"viewer"}}
	type signed struct {
		key jose.SigningKey
		kid string
	}
	tokens := map[string]signed{"EdDSA": {jose.SigningKey{Algorithm: jose.EdDSA, Key: edKey}, "ed"}}
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512} {
		tokens[string(alg)] = signed{jose.SigningKey{Algorithm: alg, Key: rsaKey}, "rsa"}
	}
	for alg, k := range ecKeys {
		tokens[string(alg)] = signed{jose.SigningKey{Algorithm: alg, Key: k}, string(alg)}
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512} {
		tokens[string(alg)] = signed{jose.SigningKey{Algorithm: alg, Key: []byte(long)}, ""}
	}
	for name, s := range tokens {
		if p, err := a.Authenticate(sign(t, s.key, s.kid, valid)); err != nil || p.Subject != "bob" {
			t.Errorf("%s token refused: %+v %v", name, p, err)
		}
	}

	short := strings.Repeat("s", 32)
	a, err = auth.Load(auth.Config{HMACSecretFile: write(t, "short", short)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte(short)}, "", valid)); err != nil {
		t.Errorf("HS256 token of a 32-byte secret refused: %v", err)
	}
	hs512 := hs512Token(t, short, valid)
	if _, err := a.Authenticate(hs512); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("HS512 token of a 32-byte secret: %v, want ErrUnauthenticated", err)
	}
}

// hs512Token signs c by hand with HMAC-SHA-512, which go-jose refuses to do
// with a key shorter than the hash, as other issuers do not.
func hs512Token(t *testing.T, secret string, c claims) string {
	t.Helper()
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS512","typ":"JWT"}`)) + "." + enc.EncodeToString(body)
	m := hmac.New(sha512.New, []byte(secret))
	m.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(m.Sum(nil))
}
