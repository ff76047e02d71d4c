// Package estest starts embedded nats-servers with JetStream for tests of the
// event store and of the packages built on it. It is for tests only.
package estest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartServer starts a nats-server with JetStream on a random loopback port,
// storing in a temporary directory of t, and shuts it down when t ends. It
// fails t if the server does not start.
func StartServer(t testing.TB) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("estest: new nats-server: %v", err)
	}
	srv.Start()
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("estest: nats-server not ready for connections after 10s")
	}
	return srv
}

// Connect connects to srv and returns the connection and a JetStream context
// on it; the connection is closed when t ends. It fails t if the connection
// cannot be made.
func Connect(t testing.TB, srv *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("estest: connect to %s: %v", srv.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("estest: jetstream: %v", err)
	}
	return nc, js
}

// Stop shuts srv down, as in a NATS outage, and returns a function that
// starts a new server on the same port and store directory, as an operator
// restarting NATS would; clients reconnect to it. The new server is shut
// down when t ends.
func Stop(t testing.TB, srv *server.Server) (restart func() *server.Server) {
	t.Helper()
	port := srv.Addr().(*net.TCPAddr).Port
	dir := srv.StoreDir()
	srv.Shutdown()
	srv.WaitForShutdown()
	return func() *server.Server {
		t.Helper()
		next, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
		})
		if err != nil {
			t.Fatalf("estest: restart nats-server: %v", err)
		}
		next.Start()
		t.Cleanup(func() {
			next.Shutdown()
			next.WaitForShutdown()
		})
		if !next.ReadyForConnections(10 * time.Second) {
			t.Fatal("estest: restarted nats-server not ready after 10s")
		}
		return next
	}
}
