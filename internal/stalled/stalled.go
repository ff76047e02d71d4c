// Package stalled is for tests of a server's answer to a client that keeps
// its connection open but stops reading: the server's writes block once
// the connection's buffers are full, as they do for a stuck browser tab or
// a client whose process hangs.
package stalled

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
)

// Serve serves h on a loopback listener whose connections have small kernel
// send buffers until the test ends, and returns its address.
func Serve(t *testing.T, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(smallBuffers{lis}) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// Get serves h as Serve does, sends it GET path with Accept accept from a
// client with a small receive buffer, and returns the answer's status code
// once its headers came; the client reads nothing more, and its connection
// stays open until the test ends. It fails t when the request cannot be
// made.
func Get(t *testing.T, h http.Handler, path, accept string) int {
	t.Helper()
	conn, err := net.Dial("tcp", Serve(t, h))
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: stalled\r\nAccept: %s\r\n\r\n", path, accept); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReaderSize(conn, 16), nil)
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); _ = res.Body.Close() }) // the connection first: a stream never ends by itself
	return res.StatusCode
}

// smallBuffers hands out connections whose kernel send buffer is small, so
// that a client that reads nothing fills it after a few writes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// Flood is a query service whose order watches send large changes, each of
// a new revision, as fast as their client takes them, and close Ended when
// their call has ended: what a stalled client's server is left writing.
type Flood struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	Ended chan struct{}
}

// WatchOrder sends changes of req's order until the call ends.
func (f Flood) WatchOrder(req *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	defer close(f.Ended)
	name := strings.Repeat("x", 4096)
	for rev := uint64(2); ; rev++ {
		err := s.Send(&ordersv1.WatchOrderResponse{
			Order:    &ordersv1.Order{OrderId: req.GetOrderId(), CustomerId: name, Revision: rev},
			Position: rev, Revision: rev, EventType: "ItemAdded",
		})
		if err != nil {
			return err
		}
	}
}
