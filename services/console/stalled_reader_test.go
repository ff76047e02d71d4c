package console_test

import (
	"net"
	"net/http"
	"strings"
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

// floodAudit is an audit node whose export and verification streams send
// large messages as fast as their caller takes them (a big log, exported
// or verified), and say on ended when a call has ended.
type floodAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
	ended chan<- string
}

func (f floodAudit) StreamEvents(_ *ordersv1.StreamEventsRequest, s grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	defer func() { f.ended <- "export" }()
	actor := strings.Repeat("a", 8192)
	for p := uint64(1); ; p++ {
		if err := s.Send(&ordersv1.StreamEventsResponse{Event: &ordersv1.RecordedEvent{Position: p, OrderId: "o-1", Type: "OrderCreated", Actor: actor}}); err != nil {
			return err
		}
	}
}

func (f floodAudit) VerifyLog(_ *ordersv1.VerifyLogRequest, s grpc.ServerStreamingServer[ordersv1.VerifyLogResponse]) error {
	defer func() { f.ended <- "verify" }()
	detail := strings.Repeat("d", 8192)
	for p := uint64(1); ; p++ {
		if err := s.Send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Broken{Broken: &ordersv1.VerifyOrderResponse{
			OrderId: "o-1", FirstBreak: &ordersv1.ChainBreak{Position: p, Version: 1, Detail: detail}}}}); err != nil {
			return err
		}
	}
}

// An export or a verification to a browser that keeps its connection open
// but takes nothing (a stuck tab, a hung download) ends after the write
// timeout, and with it the audit call that reads the log, as the live
// pages' streams do: before, it held both for as long as the connection
// lived, and held a shutdown too.
func TestExportAndVerificationOfABrowserThatStopsReadingEnd(t *testing.T) {
	for _, path := range []string{"/console/audit/export", "/console/audit/verify"} {
		t.Run(path, func(t *testing.T) {
			ended := make(chan string, 1)
			conn := stubConn(t, func(gs *grpc.Server) { ordersv1.RegisterOrderAuditServiceServer(gs, floodAudit{ended: ended}) })
			con, err := consolepkg.New(consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn, WriteTimeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(con.Shutdown)
			if code := stalled.Get(t, con, path, "application/x-ndjson"); code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			// The browser reads nothing more; the connection stays open.
			select {
			case <-ended:
			case <-time.After(time.Minute):
				t.Fatal("the audit call did not end while its browser read nothing")
			}
		})
	}
}
