package app_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/internal/natsconn/natstest"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
)

// securedNATS starts a nats-server with JetStream on a random loopback port,
// secured by edit, and stops it when the test ends.
func securedNATS(t *testing.T, edit func(*server.Options)) *server.Server {
	t.Helper()
	return natstest.StartServer(t, func(o *server.Options) {
		o.JetStream = true
		edit(o)
	})
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

// NATS_NKEY: a server that knows the user only by its public nkey.
func TestExternalNATSWithNKey(t *testing.T) {
	pub, seedFile := natstest.UserNKey(t)
	ns := securedNATS(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
	createAndRead(t, "nkey-order", "NATS_URL", ns.ClientURL(), "NATS_NKEY", seedFile)

	_, otherSeed := natstest.UserNKey(t)
	refused(t, "NATS_URL", ns.ClientURL(), "NATS_NKEY", otherSeed)
}

// NATS_CREDS: operator mode, the user's JWT and seed in a creds file.
func TestExternalNATSWithCreds(t *testing.T) {
	edit, creds := natstest.Operator(t, nil)
	ns := securedNATS(t, edit)
	createAndRead(t, "creds-order", "NATS_URL", ns.ClientURL(), "NATS_CREDS", creds)

	_, foreign := natstest.Operator(t, nil)
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
