package console_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/stalled"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// An order page's live stream whose browser keeps the connection open but
// takes nothing ends once a write has waited Config.WriteTimeout, and its
// watch with it. It held the handler, its heartbeat and the watch until the
// connection died: for a browser tab that is alive but stuck, never.
func TestLiveStreamOfABrowserThatStopsReadingEnds(t *testing.T) {
	ended := make(chan struct{})
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, stalled.Flood{Ended: ended})
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(glis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	con, err := consolepkg.New(consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn, WriteTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Shutdown)
	if code := stalled.Get(t, con, "/console/orders/o-1/events?since=1&rev=1", "text/event-stream"); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	// The browser reads nothing more; the connection stays open.
	select {
	case <-ended:
	case <-time.After(time.Minute):
		t.Fatal("the page's watch did not end while its browser read nothing")
	}
}
