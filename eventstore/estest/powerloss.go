package estest

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/orderstream/orderstream/eventstore"
)

// PowerLoss is a nats-server on file storage whose log can go back to what
// its files held at a moment, as after a power loss under
// NATS_SYNC=interval: Save keeps the files as the disk will hold them,
// Lose restarts the server from them. Each stops the server and starts a
// new one on the same port and store directory, as an operator restarting
// NATS would, and returns once the connection JS is on has reconnected.
type PowerLoss struct {
	t           testing.TB
	srv         *server.Server
	saved       string
	reconnected chan struct{}
	// URL is the server's client URL, the same across restarts.
	URL string
	// JS is a connection to the server that reconnects across restarts.
	JS jetstream.JetStream
}

// StartPowerLoss starts the server and connects to it; both end when t
// does.
func StartPowerLoss(t testing.TB) *PowerLoss {
	t.Helper()
	p := &PowerLoss{t: t, srv: StartServer(t), saved: t.TempDir(), reconnected: make(chan struct{}, 8)}
	p.URL = p.srv.ClientURL()
	_, p.JS = ConnectURL(t, p.URL, nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case p.reconnected <- struct{}{}:
		default:
		}
	}))
	return p
}

// Store opens the event store on p's connection, on file storage, with
// opts.
func (p *PowerLoss) Store(opts ...eventstore.Option) *eventstore.Store {
	p.t.Helper()
	store, err := eventstore.New(p.t.Context(), p.JS, append([]eventstore.Option{eventstore.WithStorage(jetstream.FileStorage)}, opts...)...)
	if err != nil {
		p.t.Fatal(err)
	}
	return store
}

// Save keeps the server's files as they are now: what the disk will hold
// after the power loss.
func (p *PowerLoss) Save() {
	p.t.Helper()
	p.restart(func(files string) error { return os.CopyFS(p.saved, os.DirFS(files)) })
}

// Lose restarts the server from the files Save kept.
func (p *PowerLoss) Lose() {
	p.t.Helper()
	p.restart(func(files string) error {
		if err := os.RemoveAll(files); err != nil {
			return err
		}
		return os.CopyFS(files, os.DirFS(p.saved))
	})
}

// restart stops the server, does what to its files, and starts it again.
func (p *PowerLoss) restart(what func(files string) error) {
	p.t.Helper()
	files := p.srv.StoreDir() // its JetStream directory
	start := Stop(p.t, p.srv)
	if err := what(files); err != nil {
		p.t.Fatal(err)
	}
	p.srv = start()
	<-p.reconnected
}

// AppendRetried appends e as order id's first event, retried under its
// request id while the store answers unavailable (a server still
// recovering its streams), as a client retries a command; it returns the
// event's position.
func AppendRetried(t testing.TB, store *eventstore.Store, id string, e eventstore.EventData) uint64 {
	t.Helper()
	for attempt := 0; ; attempt++ {
		res, err := store.Append(t.Context(), id, 0, []eventstore.EventData{e})
		if err == nil {
			return res.Position
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || attempt == 50 {
			t.Fatal(err)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
