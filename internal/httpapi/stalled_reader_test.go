package httpapi_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
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

// floodWatch is stalled.Flood, which also answers any order.
type floodWatch struct{ stalled.Flood }

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
			ordersv1.RegisterOrderQueryServiceServer(gs, floodWatch{stalled.Flood{Ended: ended}})
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

// bigOrder answers GetOrder with a large order, as a big list page or an
// order with many long lines is.
type bigOrder struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	note string
}

func (b bigOrder) GetOrder(_ context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	return &ordersv1.GetOrderResponse{Order: &ordersv1.Order{OrderId: req.GetOrderId(), CustomerId: b.note}}, nil
}

// A client that reads a large answer steadily, more slowly than the server
// writes it, gets all of it: the write timeout bounds a write that waits on
// a client that takes nothing, not how long an answer takes. Set once per
// Write, it cut such an answer (grpc-gateway writes a unary answer in one
// Write) once it had taken longer than the timeout.
func TestLargeAnswerToASlowButReadingClientIsNotCut(t *testing.T) {
	raw := make([]byte, 900<<10)
	_, _ = rand.Read(raw)
	note := base64.StdEncoding.EncodeToString(raw) // ~1.2 MB, incompressible
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, bigOrder{note: note})
	const timeout = time.Second
	gw, err := httpapi.New(t.Context(), serve(t, gs), httpapi.WithLogger(quiet()), httpapi.WithWriteTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", stalled.Serve(t, gw))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(32 << 10)
	fmt.Fprintf(conn, "GET /v1/orders/o-1 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n")
	// The client reads all the time, 8 KiB every 10 ms (about 0.8 MB/s,
	// so the whole answer takes longer than the timeout), never waiting
	// anywhere near the timeout between two reads.
	paced := readerFunc(func(p []byte) (int, error) {
		time.Sleep(10 * time.Millisecond) // the client's pace, not a synchronisation
		return conn.Read(p[:min(len(p), 8<<10)])
	})
	res, err := http.ReadResponse(bufio.NewReaderSize(paced, 8<<10), nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	if err != nil || n < int64(len(note)) {
		t.Fatalf("status %d; read %d bytes of an answer of more than %d, then: %v", res.StatusCode, n, len(note), err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// quietWatch sends one change, then none for idle (an order nobody
// touches), then a second change, and ends.
type quietWatch struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	idle time.Duration
}

func (q quietWatch) WatchOrder(req *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	for pos := uint64(1); pos <= 2; pos++ {
		if pos == 2 {
			select { // the order is quiet for a while: the scenario, not a synchronisation
			case <-time.After(q.idle):
			case <-s.Context().Done():
				return s.Context().Err()
			}
		}
		if err := s.Send(&ordersv1.WatchOrderResponse{Order: &ordersv1.Order{OrderId: req.GetOrderId()}, Position: pos, Revision: pos, EventType: "ItemAdded"}); err != nil {
			return err
		}
	}
	return nil
}

// Over HTTP/2 (what a TLS listener speaks to browsers and most clients) a
// write deadline is a timer on the stream that resets it when it fires,
// whether or not a write waits: a newline-delimited watch (which has no
// heartbeat) quiet for longer than the write timeout was reset, its client
// reading all along, as the deadline was never lifted.
func TestQuietWatchOverHTTP2IsNotCut(t *testing.T) {
	const timeout = 200 * time.Millisecond
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, quietWatch{idle: 5 * timeout})
	gw, err := httpapi.New(t.Context(), serve(t, gs), httpapi.WithLogger(quiet()), httpapi.WithWriteTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gw)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/orders/o-1:watch", nil)
	req.Header.Set("Accept", "application/x-ndjson")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s, want HTTP/2 200", res.Proto, res.Status)
	}
	sc := bufio.NewScanner(res.Body)
	var lines int
	for sc.Scan() {
		lines++
	}
	if err := sc.Err(); err != nil || lines != 2 {
		t.Fatalf("read %d change(s) of 2, then: %v", lines, err)
	}
}
