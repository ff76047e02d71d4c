// Package natstest starts nats-servers secured the ways an operator
// secures them (nkeys, decentralized JWT authentication, TLS) and makes the
// matching client credentials, for tests of the code that connects to them,
// and ties any server to the life of a test (Run), for the event store's
// test servers too. It is for tests only.
package natstest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// StartServer starts a nats-server on a random loopback port, storing in a
// temporary directory of t, after edit (if not nil) has adjusted its
// options, and shuts it down when t ends. It fails t if the server does not
// start.
func StartServer(t testing.TB, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	if edit != nil {
		edit(opts)
	}
	return Run(t, opts, 10*time.Second)
}

// Run starts a nats-server with opts and shuts it down when t ends; a
// store directory of t's own is removed only after that. It fails t if the
// server cannot be created or does not accept connections within ready.
func Run(t testing.TB, opts *server.Options, ready time.Duration) *server.Server {
	t.Helper()
	ns, err := Start(opts, ready)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the options' TempDir, so it runs before the
	// directory is removed.
	t.Cleanup(func() { Shut(ns) })
	return ns
}

// Start starts a nats-server with opts and waits until it accepts
// connections. It returns an error, having shut the server down, when the
// server cannot be created or is not ready within ready (a port another
// process holds, say); the caller shuts down one it returns (Shut).
func Start(opts *server.Options, ready time.Duration) (*server.Server, error) {
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natstest: new nats-server %s: %w", opts.ServerName, err)
	}
	ns.Start()
	if !ns.ReadyForConnections(ready) {
		Shut(ns)
		return nil, fmt.Errorf("natstest: nats-server %s not ready for connections after %v", opts.ServerName, ready)
	}
	return ns, nil
}

// Shut shuts ns down and waits until it has.
func Shut(ns *server.Server) {
	ns.Shutdown()
	ns.WaitForShutdown()
}

// writeSecret writes b to a file called name in a temporary directory of t
// and returns its path.
func writeSecret(t testing.TB, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// UserNKey makes a user nkey and writes its seed to a file, as
// `nk -gen user` would; it returns the public key and the file's path.
func UserNKey(t testing.TB) (pub, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	seed, _ := kp.Seed()
	return pub, writeSecret(t, "user.nk", append(seed, '\n'))
}

// Operator builds decentralized authentication as nsc would: an operator
// signing a system account and an account with JetStream enabled, which
// signs a user; userEdit, if not nil, may change the user's claims. It
// returns the server options that trust the operator (accounts resolved
// from memory, resolver: MEMORY) and the user's creds file.
func Operator(t testing.TB, userEdit func(*jwt.UserClaims)) (edit func(*server.Options), credsFile string) {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "orderstream-test"
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	// account makes an account signed by the operator; JetStream is off
	// for an account unless its JWT grants it.
	account := func(name string, jetStream bool) (nkeys.KeyPair, string, string) {
		t.Helper()
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if jetStream {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		claims, err := ac.Encode(okp)
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub, claims
	}
	akp, apub, ajwt := account("ORDERS", true)
	// JetStream in operator mode needs a system account for its internal
	// subscriptions.
	_, spub, sjwt := account("SYS", false)

	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "ordersd"
	if userEdit != nil {
		userEdit(uc)
	}
	ujwt, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	for pub, claims := range map[string]string{apub: ajwt, spub: sjwt} {
		if err := resolver.Store(pub, claims); err != nil {
			t.Fatal(err)
		}
	}
	return func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opClaims}
		o.AccountResolver = resolver
		o.SystemAccount = spub
	}, writeSecret(t, "ordersd.creds", creds)
}
