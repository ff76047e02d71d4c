// Package tcpproxy is a TCP proxy on a loopback port whose links a test
// controls: it forwards each accepted connection to a target chosen when the
// connection arrives, and can drop every byte passing through (a network
// partition: both ends keep their sockets and hear nothing), refuse
// connections (a peer that is down), or forward again. It is for tests only.
package tcpproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with the bytes of its connections.
type Mode int32

const (
	// Forward copies bytes both ways.
	Forward Mode = iota
	// Drop keeps every connection open, accepts new ones, and discards
	// what either end sends: the ends see silence, not a reset, as across
	// a partitioned network. Leaving Drop closes the connections that
	// lost bytes, since their streams can no longer be resumed.
	Drop
	// Refuse closes every connection and closes new ones as soon as they
	// are accepted, as a peer that is down would.
	Refuse
)

func (m Mode) String() string {
	switch m {
	case Forward:
		return "forward"
	case Drop:
		return "drop"
	case Refuse:
		return "refuse"
	}
	return "unknown"
}

// dialTimeout bounds connecting to one target; targets are on loopback.
const dialTimeout = 2 * time.Second

// Proxy forwards connections accepted on its address to a target.
type Proxy struct {
	lis     net.Listener
	targets func() []string
	next    atomic.Uint64 // round-robin start among targets

	mu     sync.Mutex
	mode   Mode
	links  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup
}

// link is one accepted connection and the one dialled for it.
type link struct {
	client, server net.Conn
	dropped        atomic.Bool // bytes were discarded: cannot resume
}

// ErrClosed is returned by Start's proxy methods after Close.
var ErrClosed = errors.New("tcpproxy: closed")

// Start listens on 127.0.0.1 at a free port. Each accepted connection goes
// to the first of targets() (tried in round-robin order, starting one
// further each time) that accepts a connection; when none does, or none is
// named, the accepted connection is closed. targets is called per
// connection, so the set may change while the proxy runs.
func Start(targets func() []string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{lis: lis, targets: targets, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// To returns targets that always name addr.
func To(addr string) func() []string { return func() []string { return []string{addr} } }

// Addr is the address to connect to instead of a target.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the proxy to m for its open connections and new ones.
// Refuse closes the open connections; leaving Drop closes those that lost
// bytes.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	for l := range p.links {
		if m == Refuse || (m == Forward && l.dropped.Load()) {
			l.close()
		}
	}
}

// Conns returns the number of connections the proxy holds open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	err := p.lis.Close()
	for l := range p.links {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// dial connects to the first target that answers.
func (p *Proxy) dial() net.Conn {
	targets := p.targets()
	if len(targets) == 0 {
		return nil
	}
	start := int(p.next.Add(1) % uint64(len(targets)))
	for i := range targets {
		s, err := net.DialTimeout("tcp", targets[(start+i)%len(targets)], dialTimeout)
		if err == nil {
			return s
		}
	}
	return nil
}

func (p *Proxy) serve(c net.Conn) {
	l := &link{client: c}
	switch p.Mode() {
	case Refuse:
		_ = c.Close()
		return
	case Drop:
		// Nothing reaches the target across a partition, not even the
		// connection: hold the client's end and hear nothing.
		l.dropped.Store(true)
	default:
		if l.server = p.dial(); l.server == nil {
			_ = c.Close()
			return
		}
	}
	p.mu.Lock()
	if p.closed || p.mode == Refuse {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	if l.server == nil {
		_, _ = io.Copy(io.Discard, c)
	} else {
		var wg sync.WaitGroup
		wg.Go(func() { p.pipe(l, l.server, c) })
		wg.Go(func() { p.pipe(l, c, l.server) })
		wg.Wait()
	}
	l.close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pipe copies from src to dst until either side closes, discarding what
// it reads while the proxy drops. Ending either direction ends the link.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.Mode() == Forward && !l.dropped.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			} else {
				l.dropped.Store(true)
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *link) close() {
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}
