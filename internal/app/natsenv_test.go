package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// securedNATS starts a nats-server with JetStream on a random loopback port,
// secured by edit, and stops it when the test ends.
func securedNATS(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	edit(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return ns
}

// createAndRead runs ordersd's command and query roles against NATS as
// configured by vars, creates an order and reads it back from the read
// model, which the projection fed from the same stream.
func createAndRead(t *testing.T, orderID string, vars ...string) {
	t.Helper()
	addrs, _ := run(t, t.TempDir(), append(vars, "ROLES", "command,query")...)
	conn := dial(t, addrs.GRPC)
	created, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(t.Context(),
		&ordersv1.CreateOrderRequest{RequestId: orderID + "-create", OrderId: orderID, CustomerId: "c", Currency: "EUR"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(t.Context(), &ordersv1.GetOrderRequest{
		OrderId: orderID, Consistency: &ordersv1.Consistency{MinPosition: created.GetPosition()}})
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got.GetOrder().GetOrderId() != orderID || got.GetOrder().GetCustomerId() != "c" {
		t.Fatalf("read back %v", got.GetOrder())
	}
}

// refused runs ordersd against NATS configured by vars and expects start-up
// to fail: NATS turns the credentials away (or, for TLS, the handshake keeps
// failing until NATS_CONNECT_TIMEOUT).
func refused(t *testing.T, vars ...string) {
	t.Helper()
	all := map[string]string{"DATA_DIR": t.TempDir(), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"ROLES": "command", "NATS_CONNECT_TIMEOUT": "2s"}
	for i := 0; i+1 < len(vars); i += 2 {
		all[vars[i]] = vars[i+1]
	}
	cfg, err := config.FromMap(all)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Run(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil); err == nil {
		t.Fatalf("ordersd started with %v", vars)
	}
}

func writeSecret(t *testing.T, name string, b []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// userSeedFile makes a user nkey and writes its seed to a file, as
// `nk -gen user` would.
func userSeedFile(t *testing.T) (pub, file string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	seed, _ := kp.Seed()
	return pub, writeSecret(t, "user.nk", append(seed, '\n'))
}

// NATS_NKEY: a server that knows the user only by its public nkey.
func TestExternalNATSWithNKey(t *testing.T) {
	pub, seedFile := userSeedFile(t)
	ns := securedNATS(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	createAndRead(t, "nkey-order", "NATS_URL", ns.ClientURL(), "NATS_NKEY", seedFile)

	_, otherSeed := userSeedFile(t)
	refused(t, "NATS_URL", ns.ClientURL(), "NATS_NKEY", otherSeed)
}

// operatorSetup builds decentralized auth as nsc would: an operator signing
// a system account and an account with JetStream enabled, which signs a
// user. It returns the
// server options trusting the operator (accounts resolved from memory) and
// the user's creds file.
func operatorSetup(t *testing.T) (func(*server.Options), string) {
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

	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "ORDERS"
	// JetStream is off for an account unless its JWT grants it.
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	ajwt, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}

	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "ordersd"
	ujwt, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	// JetStream in operator mode needs a system account for its internal
	// subscriptions.
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	sc := jwt.NewAccountClaims(spub)
	sc.Name = "SYS"
	sjwt, err := sc.Encode(okp)
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

// NATS_CREDS: operator mode, the user's JWT and seed in a creds file.
func TestExternalNATSWithCreds(t *testing.T) {
	edit, creds := operatorSetup(t)
	ns := securedNATS(t, edit)
	createAndRead(t, "creds-order", "NATS_URL", ns.ClientURL(), "NATS_CREDS", creds)

	_, foreign := operatorSetup(t)
	refused(t, "NATS_URL", ns.ClientURL(), "NATS_CREDS", foreign)
}

// NATS_CA, NATS_CERT, NATS_KEY: a server that requires TLS and verifies
// client certificates.
func TestExternalNATSWithClientCertificate(t *testing.T) {
	ca, srvCert, srvKey, cliCert, cliKey := tlstest.Generate(t, t.TempDir())
	scfg, err := tlsconfig.Server(srvCert, srvKey, ca)
	if err != nil {
		t.Fatal(err)
	}
	ns := securedNATS(t, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, scfg, 5
	})
	url := fmt.Sprintf("tls://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)
	createAndRead(t, "mtls-order", "NATS_URL", url, "NATS_CA", ca, "NATS_CERT", cliCert, "NATS_KEY", cliKey)

	// Without a client certificate the handshake never succeeds.
	refused(t, "NATS_URL", url, "NATS_CA", ca)
}
