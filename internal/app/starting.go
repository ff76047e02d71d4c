package app

import (
	"errors"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// startingGRPC serves the gRPC listener while start-up runs (the wait for
// NATS, a read model's migration), as the HTTP listener is served: a
// health check is answered NOT_SERVING and every other call UNAVAILABLE
// ("starting; retry"), where a client used to connect and then hear
// nothing until its own deadline, and a pinned connection to a starting
// node stalled instead of moving on. handOver stops it and leaves the
// listener, still open, to the server of the roles.
type startingGRPC struct {
	srv    *grpc.Server
	lis    *heldListener
	served chan struct{} // closed when srv's Serve has returned
}

// startGRPCWhileStarting serves lis with a server of its own, with the
// process's transport security.
func (n *node) startGRPCWhileStarting() *startingGRPC {
	opts := append(n.baseServerOptions(),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			return status.Error(codes.Unavailable, "ordersd is starting; retry")
		}))
	s := &startingGRPC{srv: grpc.NewServer(opts...), lis: &heldListener{Listener: n.grpcLis}, served: make(chan struct{})}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.srv, hs)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(s.lis) // it ends only when stopped
	}()
	return s
}

// handOver stops the server, ending its calls and connections (their
// clients connect again, to the roles' server), and returns once it no
// longer accepts on the listener, which it leaves open. Calling it again
// does nothing.
func (s *startingGRPC) handOver() {
	s.srv.Stop()
	<-s.served
	s.lis.reopen()
}

// heldListener is a listener whose Close ends the Accept of the server
// serving it without closing it, so that another server can serve it next.
// Close also closes the connections it accepted: grpc-go's Stop waits for
// a connection still in its handshake (one that sent nothing yet: a load
// balancer's TCP check, a stuck client) for up to two minutes, and start-up
// would wait with it.
type heldListener struct {
	net.Listener
	mu     sync.Mutex
	closed bool
	conns  map[*heldConn]struct{}
}

func (l *heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		if c != nil {
			// Accepted as the server stopped: its client connects
			// again, to the next server.
			_ = c.Close()
		}
		return nil, net.ErrClosed
	}
	if err != nil {
		return nil, err
	}
	hc := &heldConn{Conn: c, l: l}
	if l.conns == nil {
		l.conns = map[*heldConn]struct{}{}
	}
	l.conns[hc] = struct{}{}
	return hc, nil
}

// Close makes Accept return net.ErrClosed, at once for one that waits (the
// listener's deadline is set to the past), and closes the connections
// Accept handed out.
func (l *heldListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	d, ok := l.Listener.(interface{ SetDeadline(time.Time) error })
	if !ok {
		return errors.New("app: the gRPC listener cannot be handed over")
	}
	return d.SetDeadline(time.Now())
}

// heldConn is a connection heldListener accepted; closed, it is forgotten.
type heldConn struct {
	net.Conn
	l *heldListener
}

func (c *heldConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// reopen lifts the deadline Close set, for the next server.
func (l *heldListener) reopen() {
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		_ = d.SetDeadline(time.Time{})
	}
}
