package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/httpapi"
	"github.com/orderstream/orderstream/internal/stalled"
	"google.golang.org/grpc"
)

// floodWatch is a query service whose watches send large changes as fast
// as their client takes them, and say when their call has ended.
type floodWatch struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	ended chan struct{}
}

func (f floodWatch) WatchOrder(req *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	defer close(f.ended)
	note := strings.Repeat("x", 4096)
	for pos := uint64(1); ; pos++ {
		err := s.Send(&ordersv1.WatchOrderResponse{
			Order:    &ordersv1.Order{OrderId: req.GetOrderId(), CustomerId: note},
			Position: pos, Revision: pos, EventType: "ItemAdded",
		})
		if err != nil {
			return err
		}
	}
}

// A watch whose client keeps its connection open but stops reading ends
// once a write has waited WithWriteTimeout, and its call with it, as
// newline-delimited JSON and as Server-Sent Events. It held its handler,
// its goroutines and the service's watch until the connection died, which
// for a client that is alive but stuck (TCP keepalives answered) is never,
// and held a graceful shutdown until its limit.
func TestWatchOfAClientThatStopsReadingEnds(t *testing.T) {
	for _, accept := range []string{"application/x-ndjson", "text/event-stream"} {
		t.Run(strings.ReplaceAll(accept, "/", "-"), func(t *testing.T) {
			ended := make(chan struct{})
			gs := grpc.NewServer()
			ordersv1.RegisterOrderQueryServiceServer(gs, floodWatch{ended: ended})
			gw, err := httpapi.New(t.Context(), serve(t, gs), httpapi.WithLogger(quiet()), httpapi.WithWriteTimeout(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if code := stalled.Get(t, gw, "/v1/orders/o-1:watch", accept); code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			// The client reads nothing more; the connection stays open.
			select {
			case <-ended:
			case <-time.After(time.Minute):
				t.Fatal("the watch's call did not end while its client read nothing")
			}
		})
	}
}

// GetOrder answers any order, as its service has it.
func (floodWatch) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	return &ordersv1.GetOrderResponse{Order: &ordersv1.Order{OrderId: req.GetOrderId()}}, nil
}

// A connection kept alive past the write timeout serves its next request:
// the deadline set for one answer's writes does not outlive it (net/http
// lifts it once the answer is finished).
func TestKeptAliveConnectionOutlivesTheWriteTimeout(t *testing.T) {
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, floodWatch{})
	const timeout = 50 * time.Millisecond
	gw, err := httpapi.New(t.Context(), serve(t, gs), httpapi.WithLogger(quiet()), httpapi.WithWriteTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	var conns []string
	for i := range 2 {
		if i > 0 {
			time.Sleep(3 * timeout) // idle past the deadline the first answer's writes had
		}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { conns = append(conns, info.Conn.LocalAddr().String()) },
		}), http.MethodGet, srv.URL+"/v1/orders/o-1", nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i+1, res.StatusCode)
		}
	}
	if len(conns) != 2 || conns[0] != conns[1] {
		t.Fatalf("requests went over connections %v, want one kept alive", conns)
	}
}
