package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/internal/auth"
)

// readBytes is the bytes this process has read through read(2) so far.
func readBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip("no /proc/self/io:", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Skip("no rchar")
	return 0
}

// Once AUTH_JWKS_FILE no longer reads as a JWKS (left broken, or
// being written), load fails without recording the file's size and
// modification time, so every token whose kid the keys lack (anyone can
// forge one) reads and parses the whole file again: a flood of forged
// tokens is a flood of file reads.
func TestForgedTokensDoNotReadABrokenJWKSFileEachTime(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	path := write(t, "jwks.json", string(b))
	a, err := auth.Load(auth.Config{JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	if err := os.WriteFile(path, []byte("{not json"+strings.Repeat(" ", size)), 0o600); err != nil {
		t.Fatal(err)
	}
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: attacker}, "forged", claims{Claims: jwt.Claims{Subject: "eve"}})
	_, _ = a.Authenticate(forged) // the change seen once
	before := readBytes(t)
	const tokens = 50
	for range tokens {
		if _, err := a.Authenticate(forged); err == nil {
			t.Fatal("forged token accepted")
		}
	}
	if read := readBytes(t) - before; read > 2*size {
		t.Fatalf("%d forged tokens read %d bytes (%d reads of the %d-byte JWKS file); want the unchanged broken file not read again", tokens, read, read/size, size)
	}
}
