// Package estest starts embedded nats-servers with JetStream for tests of the
// event store and of the packages built on it, and holds the store's
// conformance suite (Run), which every implementation of the store passes:
// the JetStream store and memstore. It is for tests only.
package estest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/internal/natsconn/natstest"
)

// StartServer starts a nats-server with JetStream on a random loopback port,
// storing in a temporary directory of t, and shuts it down when t ends. It
// fails t if the server does not start.
func StartServer(t testing.TB) *server.Server {
	t.Helper()
	return natstest.StartServer(t, func(o *server.Options) { o.JetStream = true })
}

// Connect connects to srv and returns the connection and a JetStream context
// on it; the connection is closed when t ends. It fails t if the connection
// cannot be made.
func Connect(t testing.TB, srv *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return ConnectURL(t, srv.ClientURL())
}

// ConnectURL is Connect to the servers of url (comma separated), with opts.
func ConnectURL(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(t.Name())}, opts...)...)
	if err != nil {
		t.Fatalf("estest: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("estest: jetstream: %v", err)
	}
	return nc, js
}

// ReplicatedStore opens the event store with three replicas on js, on a
// cluster's servers. Until the cluster has elected its meta leader,
// creating the stream answers unavailable, so it tries for up to a minute.
func ReplicatedStore(t testing.TB, js jetstream.JetStream) *eventstore.Store {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		store, err := eventstore.New(t.Context(), js, eventstore.WithReplicas(3))
		if err == nil {
			return store
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("estest: R3 store: %v", err)
		}
	}
}

// Stop shuts srv down, as in a NATS outage, and returns a function that
// starts a new server on the same port and store directory, as an operator
// restarting NATS would; clients reconnect to it. The new server is shut
// down when t ends.
func Stop(t testing.TB, srv *server.Server) (restart func() *server.Server) {
	t.Helper()
	port := srv.Addr().(*net.TCPAddr).Port
	dir := srv.StoreDir()
	natstest.Shut(srv)
	return func() *server.Server {
		t.Helper()
		return natstest.Run(t, &server.Options{
			Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
		}, 10*time.Second)
	}
}

// Cluster is a JetStream cluster of servers routed to each other on
// loopback ports, each of which can be stopped and started again on the
// same ports and store directory, as a crashed and restarted process would.
type Cluster struct {
	tb testing.TB
	// Servers holds the servers by index; Start replaces an entry.
	Servers []*server.Server
	opts    []*server.Options
}

// StartCluster starts a cluster of n servers, named n1, n2, ..., and shuts
// them down when tb ends. A server that does not get ready (one of its
// ports taken by another process since it was picked) makes it try again
// on new ports, up to clusterAttempts times; then it fails tb. Streams
// cannot be created until the cluster has elected its meta leader, a
// moment after this returns.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		c, err := startCluster(tb, n)
		if err == nil {
			return c
		}
		if attempt == clusterAttempts {
			tb.Fatalf("estest: cluster of %d: %v", n, err)
		}
	}
}

// clusterAttempts bounds StartCluster's tries: its ports were free when
// picked, but another process may take one before the server that is to
// listen on it starts, and that server then never gets ready.
const clusterAttempts = 3

// clusterReady is how long StartCluster waits for each server of one try
// (a variable for the test of a taken port).
var clusterReady = 10 * time.Second

// pickPort picks the ports of StartCluster's servers (a variable for the
// test of a taken port).
var pickPort = freePort

// startCluster is one try of StartCluster on freshly picked ports. On
// error, the servers it started are shut down.
func startCluster(tb testing.TB, n int) (*Cluster, error) {
	tb.Helper()
	routePorts := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range routePorts {
		routePorts[i] = pickPort(tb)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", routePorts[i])}
	}
	c := &Cluster{tb: tb, Servers: make([]*server.Server, n), opts: make([]*server.Options, n)}
	for i := range c.Servers {
		c.opts[i] = &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: pickPort(tb), JetStream: true, StoreDir: tb.TempDir(),
			Cluster: server.ClusterOpts{Name: "orders", Host: "127.0.0.1", Port: routePorts[i]}, Routes: routes,
			NoLog: true, NoSigs: true,
		}
		o := *c.opts[i]
		ns, err := natstest.Start(&o, clusterReady)
		if err != nil {
			for _, s := range c.Servers[:i] {
				natstest.Shut(s)
			}
			return nil, fmt.Errorf("%w (a port taken meanwhile?)", err)
		}
		c.Servers[i] = ns
		// Registered after the options' TempDir, so it runs before the
		// directory is removed; Start replaces the entry after a Stop.
		tb.Cleanup(func() { natstest.Shut(c.Servers[i]) })
	}
	return c, nil
}

// Start starts server i again after Stop, on its ports and store
// directory, and waits until it accepts connections.
func (c *Cluster) Start(i int) *server.Server {
	c.tb.Helper()
	o := *c.opts[i]
	c.Servers[i] = natstest.Run(c.tb, &o, 20*time.Second)
	return c.Servers[i]
}

// Stop shuts server i down.
func (c *Cluster) Stop(i int) { natstest.Shut(c.Servers[i]) }

// URLs returns the client URLs of all servers, comma separated, for a
// client that fails over between them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// Index returns the index of the server called name, or -1.
func (c *Cluster) Index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	return -1
}

// freePort returns a loopback port that was free a moment ago: cluster
// routes and restarted servers need their ports known in advance.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// MutableStream creates stream name on subjects, on file storage, with
// message schedules enabled. The server never lets such a stream deny
// purges, so eventstore.New cannot make it immutable: tests use it to see
// that reported, and to purge an order's first events behind the store's
// back. It fails t if the stream cannot be created.
func MutableStream(t testing.TB, js jetstream.JetStream, name string, subjects ...string) {
	t.Helper()
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: name, Subjects: subjects, AllowMsgSchedules: true}); err != nil {
		t.Fatalf("estest: create stream %s: %v", name, err)
	}
}

// WaitDuplicateWindow returns once the server has forgotten the message ids
// published before the call, polling every window/10. It forgets them in
// the order it saw them: once a probe published after them (on subject,
// with an event type header, so that readers of the log take it for an
// event of its own order) is no longer a duplicate, neither are they. It
// fails t after 30 seconds.
func WaitDuplicateWindow(t testing.TB, js jetstream.JetStream, subject string, window time.Duration) {
	t.Helper()
	probe := func() *jetstream.PubAck {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Header.Set("Orders-Event-Type", "Probe")
		ack, err := js.PublishMsg(t.Context(), m, jetstream.WithMsgID("window-probe"))
		if err != nil {
			t.Fatalf("estest: probe the duplicate window: %v", err)
		}
		return ack
	}
	if probe().Duplicate {
		t.Fatal("estest: the first probe of the duplicate window was a duplicate")
	}
	deadline := time.Now().Add(30 * time.Second)
	for probe().Duplicate {
		if time.Now().After(deadline) {
			t.Fatal("estest: the duplicate window never passed")
		}
		time.Sleep(window / 10) // poll interval; the condition is the probe's answer
	}
}
