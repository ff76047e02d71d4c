// Package natsembed runs a nats-server with JetStream inside the process, so
// one command runs the whole system with nothing else installed.
package natsembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
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
	// Log receives the server's errors and warnings (its notices at debug
	// level); nil discards them.
	Log *slog.Logger
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

// serverLogger hands the server's log to the process's: its errors and
// warnings (JetStream out of resources, a damaged store recovered) belong
// in ordersd's log, since this server holds the orders. It also catches
// what the server reports as fatal while starting (it logs and gives up
// the listener instead of returning an error), so Start can fail at once
// rather than wait out readyTimeout.
type serverLogger struct {
	fatal   chan string
	started *atomic.Bool // Start has returned: nobody reads fatal
	log     *slog.Logger
}

func (l serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if l.started.Load() {
		l.log.Error("nats-server: "+msg, "embedded", true)
		return
	}
	select {
	case l.fatal <- msg: // Start returns it
	default:
	}
}
func (l serverLogger) Errorf(format string, v ...any) {
	l.log.Error("nats-server: "+fmt.Sprintf(format, v...), "embedded", true)
}
func (l serverLogger) Warnf(format string, v ...any) {
	l.log.Warn("nats-server: "+fmt.Sprintf(format, v...), "embedded", true)
}
func (l serverLogger) Noticef(format string, v ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("nats-server: "+fmt.Sprintf(format, v...), "embedded", true)
	}
}
func (serverLogger) Debugf(string, ...any) {}
func (serverLogger) Tracef(string, ...any) {}

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
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	started := new(atomic.Bool)
	defer started.Store(true)
	ns.SetLoggerV2(serverLogger{fatal: fatal, started: started, log: log}, false, false, false)
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
