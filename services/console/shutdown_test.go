package console_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
)

// endlessAudit sends one message of each stream, then holds it open until
// its caller goes: a verify or an export of a large log, run by an audit
// node of its own.
type endlessAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
	sent chan struct{} // a value once each stream sent its message
}

func (a endlessAudit) VerifyLog(_ *ordersv1.VerifyLogRequest, s grpc.ServerStreamingServer[ordersv1.VerifyLogResponse]) error {
	if err := s.Send(&ordersv1.VerifyLogResponse{Result: &ordersv1.VerifyLogResponse_Progress{Progress: &ordersv1.VerifyLogProgress{Position: 1, Head: 1_000_000}}}); err != nil {
		return err
	}
	a.sent <- struct{}{}
	<-s.Context().Done()
	return s.Context().Err()
}

func (a endlessAudit) StreamEvents(_ *ordersv1.StreamEventsRequest, s grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	if err := s.Send(&ordersv1.StreamEventsResponse{Event: &ordersv1.RecordedEvent{Position: 1, OrderId: "o-1", Type: "OrderCreated"}}); err != nil {
		return err
	}
	a.sent <- struct{}{}
	<-s.Context().Done()
	return s.Context().Err()
}

// endlessRebuild sends one progress message of a rebuild, then holds the
// stream open until its caller goes: a rebuild of a large log, run by a
// query node of its own.
type endlessRebuild struct {
	ordersv1.UnimplementedOrderAdminServiceServer
	sent chan struct{}
}

func (a endlessRebuild) RebuildReadModel(_ *ordersv1.RebuildReadModelRequest, s grpc.ServerStreamingServer[ordersv1.RebuildReadModelResponse]) error {
	if err := s.Send(&ordersv1.RebuildReadModelResponse{EventsDone: 1, TargetPosition: 1_000_000}); err != nil {
		return err
	}
	a.sent <- struct{}{}
	<-s.Context().Done()
	return s.Context().Err()
}

// The console's shutdown ends its verify, export and rebuild streams, as
// it ends the live pages', so the HTTP server's shutdown does not wait out
// its timeout for them on a node whose audit or query role runs elsewhere.
// Before, only the live pages' streams ended.
func TestShutdownEndsTheWorkStreams(t *testing.T) {
	sent := make(chan struct{}, 1)
	conn := stubConn(t, func(gs *grpc.Server) {
		ordersv1.RegisterOrderAuditServiceServer(gs, endlessAudit{sent: sent})
		ordersv1.RegisterOrderAdminServiceServer(gs, endlessRebuild{sent: sent})
	})
	for _, path := range []string{"/console/audit/verify", "/console/audit/export?from=1", "/console/operations/rebuild"} {
		t.Run(path, func(t *testing.T) {
			con, err := consolepkg.New(consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn})
			if err != nil {
				t.Fatal(err)
			}
			hl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: con}
			srv.RegisterOnShutdown(con.Shutdown) // as ordersd does
			go func() { _ = srv.Serve(hl) }()
			t.Cleanup(func() { _ = srv.Close() })
			// The export's first line may wait in the console's buffer:
			// the request is in flight once the audit stream sent.
			base := "http://" + hl.Addr().String()
			req, err := http.NewRequest("GET", base+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			cl := newClient(t, base)
			if path == "/console/operations/rebuild" {
				// A post, with the session's CSRF token, as the
				// Operations page's script sends it.
				_, page := cl.do("GET", "/console/audit", nil, nil)
				m := csrfMeta.FindStringSubmatch(page)
				if m == nil {
					t.Fatal("no CSRF token on the page")
				}
				req, _ = http.NewRequest("POST", base+path, strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Accept", "application/x-ndjson")
				req.Header.Set("Sec-Fetch-Site", "same-origin")
			}
			go func() {
				// Read to its end, as a browser does: the stream ends
				// only when the console ends it.
				if res, err := cl.http.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}()
			select {
			case <-sent:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s never reached the service", path)
			}
			// Bounds the test's wait, not the shutdown: the stream never
			// ends by itself.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatalf("the HTTP server's shutdown still waited for the stream after 20 s: %v", err)
			}
		})
	}
}
