package keys_test

import (
	"context"
	"testing"
	"time"

	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/eventstore/keys"
	"github.com/orderstream/orderstream/internal/tcpproxy"
)

// A leader read whose answer never comes ends within the JetStream
// context's default timeout when its caller set no deadline (the
// projection decodes the log without one): it is a bare request, which the
// client fails only when its connection closes, and it waited for ever.
func TestGetLatestWithoutADeadlineEnds(t *testing.T) {
	srv := estest.StartServer(t)
	proxy, err := tcpproxy.Start(tcpproxy.To(srv.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	_, js := estest.ConnectURL(t, "nats://"+proxy.Addr())
	store, err := keys.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(t.Context(), "c-1", []byte("wrapped")); err != nil {
		t.Fatal(err)
	}
	proxy.SetMode(tcpproxy.Drop) // the request goes nowhere, the connection stays
	done := make(chan error, 1)
	go func() {
		_, _, err := store.GetLatest(context.Background(), "c-1")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("GetLatest answered across a link that drops everything")
		}
	case <-time.After(20 * time.Second): // bounds the test's wait: 4× the default timeout
		t.Fatal("GetLatest without a deadline still waits for an answer that cannot come")
	}
}
