package eventstore_test

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
)

// holdingProxy forwards one loopback NATS connection to the server, and
// once armed holds everything the server sends until the client has
// published a second time on the armed subject: the server stores a
// publish, its answer comes only after the client gave up on it and tried
// again.
type holdingProxy struct {
	ln net.Listener

	mu      sync.Mutex
	subject []byte        // armed: count the client's publishes on it
	pubs    int           // publishes on subject seen since arming
	release chan struct{} // closed at the second publish
}

func startHoldingProxy(t *testing.T, server string) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdingProxy{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		p.disarm()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", server)
			if err != nil {
				_ = c.Close()
				return
			}
			wg.Go(func() { relay(s, c, p.sent) })
			wg.Go(func() { relay(c, s, p.hold) })
		}
	})
	return p
}

// arm holds the server's answers from now until the client's second
// publish on subject.
func (p *holdingProxy) arm(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.subject, p.pubs, p.release = []byte("PUB "+subject+" "), 0, make(chan struct{})
}

func (p *holdingProxy) disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subject != nil {
		close(p.release)
		p.subject = nil
	}
}

// sent counts the client's publishes on the armed subject in b, and
// releases what the server said once the second one has gone.
func (p *holdingProxy) sent(b []byte) {
	p.mu.Lock()
	armed := p.subject != nil
	if armed {
		p.pubs += bytes.Count(b, p.subject)
	}
	second := armed && p.pubs >= 2
	p.mu.Unlock()
	if second {
		p.disarm()
	}
}

// hold waits, while the proxy is armed, before the server's bytes go on.
func (p *holdingProxy) hold([]byte) {
	p.mu.Lock()
	release, held := p.release, p.subject != nil
	p.mu.Unlock()
	if held {
		<-release
	}
}

// relay copies src to dst until either fails, showing each chunk to
// before it is written.
func relay(dst, src net.Conn, before func([]byte)) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			before(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// An append whose first try the server stored but answered only after the
// store had tried again (its answer later than a try's time limit) is not
// reported as a conflict, which would tell the caller that someone else
// appended and have it decide, and append, again. Without a request id the
// store cannot tell its own events from another writer's, and answers
// ErrUnavailable (maybe appended); with one it finds its request in the
// history and answers with it. Either way the order holds the events once.
func TestAppendWhoseFirstTryWasAnsweredLateIsNoConflict(t *testing.T) {
	srv := estest.StartServer(t)
	p := startHoldingProxy(t, srv.Addr().String())
	_, js := estest.ConnectURL(t, "nats://"+p.ln.Addr().String())
	s, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	for _, rid := range []string{"", "late-request"} {
		t.Run("request id "+rid, func(t *testing.T) {
			id := "late-" + rid
			estest.MustAppend(t, s, id, 0, estest.Event("OrderCreated", "", ""))
			p.arm(s.Subject(id))
			res, err := s.Append(t.Context(), id, 1, []eventstore.EventData{estest.Event("ItemAdded", "", rid)})
			p.disarm()
			recs := estest.MustLoad(t, s, id)
			if len(recs) != 2 {
				t.Fatalf("the order holds %d events, want 2", len(recs))
			}
			if rid == "" {
				if !errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, eventstore.ErrConflict) {
					t.Fatalf("Append = %+v, %v; want ErrUnavailable and no ErrConflict", res, err)
				}
				return
			}
			if err != nil || res.Position != recs[1].Position || res.Version != 2 {
				t.Fatalf("Append = %+v, %v; want the event at %d, version 2", res, err, recs[1].Position)
			}
		})
	}
}
