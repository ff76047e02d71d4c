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

// ErrListen reports a client address the server cannot listen on: in use,
// or not an address of this machine.
var ErrListen = errors.New("natsembed: cannot listen")

// ErrStart reports a server that failed while starting: its client
// listener could not bind (the address is in use or not this machine's),
// or JetStream could not use the store directory. The error wrapping it
// carries the server's own words.
var ErrStart = errors.New("natsembed: server failed to start")

// readyTimeout bounds how long Start waits for a server that neither
// failed nor became ready; recovering a large store can take a while.
const readyTimeout = 30 * time.Second

// fatalLogger catches what nats-server reports as fatal while starting
// (it logs and gives up the listener instead of returning an error), so
// Start can fail at once rather than wait out readyTimeout.
type fatalLogger struct{ fatal chan string }

func (l fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}

// Start starts a server and waits until it accepts connections. The caller
// shuts it down with Shutdown and WaitForShutdown. Errors: ErrListen when
// the address cannot be listened on; ErrStart, as soon as the server
// reports it cannot start (JetStream cannot use StoreDir, or the address
// was taken meanwhile);
// ErrNotReady when it is still not ready after 30 s.
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
	} else {
		// nats-server would only log a busy port; trying it first gives
		// the caller the operating system's own error.
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrListen, err)
		}
		_ = l.Close()
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
	fatal := make(chan string, 1)
	ns.SetLoggerV2(fatalLogger{fatal}, false, false, false)
	ns.Start()
	for deadline := time.Now().Add(readyTimeout); ; {
		select {
		case msg := <-fatal:
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil, fmt.Errorf("%w: %s", ErrStart, msg)
		default:
		}
		if ns.ReadyForConnections(50 * time.Millisecond) {
			return ns, nil
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, ErrNotReady
		}
	}
}
