package console_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app/apptest"
	consolepkg "github.com/orderstream/orderstream/services/console"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// A live stream on a page where nothing changes gets heartbeat comments,
// so that a proxy's idle timeout does not cut it, and tells proxies not to
// buffer it.
func TestIdleLiveStreamsGetHeartbeats(t *testing.T) {
	addrs, _ := apptest.Start(t, nil)
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	con, err := consolepkg.New(consolepkg.Config{Command: conn, Query: conn, Audit: conn, Payments: conn, Heartbeat: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	created, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(t.Context(),
		&ordersv1.CreateOrderRequest{RequestId: "r-1", CustomerId: "c-1", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	order := created.GetOrder()
	srv := httptest.NewServer(con)
	t.Cleanup(srv.Close)
	t.Cleanup(con.Shutdown)

	at := fmt.Sprint(created.GetPosition())
	for _, path := range []string{"/console/live/orders?since=" + at,
		"/console/orders/" + order.GetOrderId() + "/events?since=" + at + "&rev=" + fmt.Sprint(order.GetRevision())} {
		ctx, cancel := context.WithTimeout(t.Context(), stepTimeout)
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+path, nil)
		res, err := srv.Client().Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", path, err)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("X-Accel-Buffering") != "no" || res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %s, X-Accel-Buffering %q, Cache-Control %q; want 200, no, no-store", path, res.Status,
				res.Header.Get("X-Accel-Buffering"), res.Header.Get("Cache-Control"))
		}
		sc := bufio.NewScanner(res.Body)
		beats := 0
		for beats < 2 && sc.Scan() {
			if strings.HasPrefix(sc.Text(), ":") {
				beats++
			}
		}
		if beats < 2 {
			t.Errorf("%s: %d heartbeats before the stream ended (%v), want 2", path, beats, sc.Err())
		}
		res.Body.Close()
		cancel()
	}
}

func TestNegativeDurationsAreRefused(t *testing.T) {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, cfg := range []consolepkg.Config{{Heartbeat: -time.Second}, {FormTimeout: -time.Second}, {CallTimeout: -time.Second}} {
		cfg.Command, cfg.Query, cfg.Audit, cfg.Payments = conn, conn, conn, conn
		if _, err := consolepkg.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a negative duration", cfg)
		}
	}
}
