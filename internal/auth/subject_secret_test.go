package auth_test

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/internal/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The subject's limit is in characters, as documented: a subject of 121
// characters outside ASCII (157 bytes) is admitted, one of 129 ASCII
// characters is not. Before, the limit counted bytes.
func TestSubjectLimitCountsCharacters(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", secret)})
	if err != nil {
		t.Fatal(err)
	}
	hs := jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}
	admit := func(sub string) error {
		tok := sign(t, hs, "", claims{Claims: jwt.Claims{Subject: sub, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"clerk"}})
		_, err := a.Admit(tok, "/orders.v1.OrderCommandService/CreateOrder")
		return err
	}
	sub := "CN=Đặng Thị Thu Hương,OU=Phòng Kế toán Tổng hợp,O=Công ty Cổ phần Thương mại Dịch vụ Sài Gòn,L=Thành phố Hồ Chí Minh,C=VN"
	if err := admit(sub); err != nil {
		t.Fatalf("subject of %d characters (%d bytes) refused: %v", utf8.RuneCountInString(sub), len(sub), err)
	}
	if err := admit(strings.Repeat("é", auth.MaxSubject)); err != nil {
		t.Fatalf("subject of %d characters refused: %v", auth.MaxSubject, err)
	}
	if err := admit(strings.Repeat("a", auth.MaxSubject+1)); err == nil {
		t.Fatalf("subject of %d characters admitted", auth.MaxSubject+1)
	}
}

// An HMAC secret file holds the secret's bytes as they are, but for one
// line end: a random secret whose bytes at either end look like
// whitespace is used whole, and a text secret followed by a newline
// without it. Before, every surrounding whitespace byte was trimmed, and
// tokens signed with the whole secret were refused.
func TestHMACSecretFileIsUsedWhole(t *testing.T) {
	random := make([]byte, 64)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	random[0], random[63] = ' ', '\t'
	text := []byte("0123456789abcdef0123456789abcdef")
	for _, c := range []struct {
		name        string
		file, chars []byte
	}{
		{"random bytes", random, random},
		{"random bytes ending in CR", append(random[:63:63], '\r'), append(random[:63:63], '\r')},
		{"text and a newline", append(text[:32:32], '\n'), text},
		{"text and a CRLF", append(text[:32:32], '\r', '\n'), text},
	} {
		file := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(file, c.file, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := auth.Load(auth.Config{HMACSecretFile: file})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		tok := sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: c.chars}, "",
			claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"viewer"}})
		if _, err := a.Authenticate(tok); err != nil {
			t.Fatalf("%s: a token signed with the secret refused: %v", c.name, err)
		}
	}
}

// A JWKS holding a key without a public part (a symmetric "oct" key, which
// verifies no token here) stops start-up rather than refusing every token
// signed with it. Before, it loaded.
func TestJWKSWithASymmetricKeyIsRefused(t *testing.T) {
	jwks := `{"keys":[{"kty":"oct","kid":"shared","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`
	if _, err := auth.Load(auth.Config{JWKSFile: write(t, "jwks.json", jwks)}); err == nil {
		t.Fatal("a JWKS of a symmetric key loaded")
	}
}

// A token whose subject cannot be recorded is invalid wherever it is
// presented: Authenticate, which /metrics and the console check tokens
// with, refuses it (ErrUnrecordableSubject, an ErrUnauthenticated), and a
// method its roles do not reach answers UNAUTHENTICATED, not
// PERMISSION_DENIED, as if the token were good and only short of a role.
// Authenticate took it, and the role was checked before the subject.
func TestUnrecordableSubjectIsInvalidEverywhere(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	long := strings.Repeat("x", auth.MaxSubject+1)
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", secret)})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}, "",
		claims{Claims: jwt.Claims{Subject: long, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"viewer"}})
	if _, err := a.Authenticate(tok); !errors.Is(err, auth.ErrUnrecordableSubject) || !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("Authenticate: %v, want ErrUnrecordableSubject", err)
	}
	for _, method := range []string{"/orders.v1.OrderQueryService/GetOrder", "/orders.v1.OrderCommandService/CreateOrder"} {
		if _, err := a.Admit(tok, method); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want UNAUTHENTICATED", method, err)
		}
	}
}

// A JWKS key published for encryption ("use": "enc") verifies no token:
// it is not the issuer's signing key. It did.
func TestJWKSKeyForEncryptionVerifiesNoToken(t *testing.T) {
	key, signing := p256(t), p256(t)
	a, err := auth.Load(auth.Config{JWKSFile: write(t, "jwks.json", jwksJSON(t, jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Use: "enc"},
		jose.JSONWebKey{Key: &signing.PublicKey, KeyID: "s", Use: "sig"}))})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: key}, "k",
		claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"viewer"}})
	if p, err := a.Authenticate(tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a token signed with an encryption key: %+v, %v; want ErrUnauthenticated", p, err)
	}
}

// Token sources that can accept no token stop start-up: authentication on,
// a node that reports ready refused every call. They loaded: a tokens file
// of comments only (a token written after a '#' among them), a JWKS of
// keys for encryption only.
func TestSourcesOfNoTokenAreRefused(t *testing.T) {
	key := p256(t)
	for name, c := range map[string]auth.Config{
		"AUTH_TOKENS_FILE": {TokensFile: write(t, "tokens", "# the clerk's token\n#clerk-token-0123456789 alice clerk\n\n")},
		"AUTH_JWKS_FILE":   {JWKSFile: write(t, "jwks.json", jwksJSON(t, jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Use: "enc"}))},
	} {
		if a, err := auth.Load(c); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s that can accept no token: %v, %v; want start-up refused naming it", name, a, err)
		}
	}
}

// A token listed twice in AUTH_TOKENS_FILE stops start-up: which of its
// subjects and roles the operator meant is not known. The last line won,
// in silence.
func TestTokenListedTwiceIsRefused(t *testing.T) {
	_, err := auth.Load(auth.Config{TokensFile: write(t, "tokens", "clerk-token-0123456789 alice clerk\nclerk-token-0123456789 bob admin\n")})
	if err == nil || !strings.Contains(err.Error(), "AUTH_TOKENS_FILE") {
		t.Fatalf("a token listed twice: %v; want start-up refused naming AUTH_TOKENS_FILE", err)
	}
}
