package auth_test

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/internal/auth"
)

// A token of a key just added to the JWKS file, checked while another
// token's look at the file is in progress, waits for that look rather
// than being refused: the README promises that a key added verifies tokens
// at once, and a flood of tokens with unknown kids kept the file looked at
// often enough to refuse good tokens meanwhile.
func TestJWKSKeyAddedVerifiesWhileAnotherLookIsInProgress(t *testing.T) {
	oldKey, newKey, otherKey := p256(t), p256(t), p256(t)
	oldPub := jose.JSONWebKey{Key: &oldKey.PublicKey, KeyID: "old", Algorithm: "ES256", Use: "sig"}
	newPub := jose.JSONWebKey{Key: &newKey.PublicKey, KeyID: "new", Algorithm: "ES256", Use: "sig"}
	path := write(t, "jwks.json", jwksJSON(t, oldPub))
	a, err := auth.Load(auth.Config{JWKSFile: path})
	if err != nil {
		t.Fatal(err)
	}
	// The first reading of the clock, made by the look at the file, waits
	// for release: that look is in progress until then.
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	auth.SetNow(a, func() time.Time {
		once.Do(func() { close(entered); <-release })
		return time.Now()
	})
	if err := os.WriteFile(path, []byte(jwksJSON(t, oldPub, newPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"viewer"}}
	unknown := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: otherKey}, "unknown", c)
	byNew := sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: newKey}, "new", c)
	go func() { _, _ = a.Authenticate(unknown) }()
	<-entered
	answer := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(byNew)
		answer <- err
	}()
	// Answered while the look is held, the token was refused without
	// one: give it the time to be.
	select {
	case err := <-answer:
		close(release)
		t.Fatalf("a token of the key added, while another look was in progress: %v before that look ended; want it to wait", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-answer; err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatal(err)
		}
		t.Fatalf("a token of the key added, once the other look ended: %v; want it accepted", err)
	}
}
