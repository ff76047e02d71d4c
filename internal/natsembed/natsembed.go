// Package natsembed runs a nats-server with JetStream inside the process, so
// one command runs the whole system with nothing else installed.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configures the embedded server.
type Options struct {
	// Listen is host:port for clients; port 0 picks a free one.
	Listen string
	// StoreDir holds JetStream's file store.
	StoreDir string
	// SyncAlways fsyncs every write instead of periodically.
	SyncAlways bool
}

// ErrNotReady reports a server that did not accept connections in time.
var ErrNotReady = errors.New("natsembed: server not ready")

// Start starts a server and waits until it accepts connections. The caller
// shuts it down with Shutdown and WaitForShutdown.
func Start(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("natsembed: listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("natsembed: listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "ordersd-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: o.SyncAlways,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, ErrNotReady
	}
	return ns, nil
}
