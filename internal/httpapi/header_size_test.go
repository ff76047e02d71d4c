package httpapi_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/httpapi"
	"google.golang.org/grpc"
)

// Headers within the HTTP server's limit reach the service or are refused
// as too large (431), never 500. ordersd takes 64 KiB of gRPC metadata a
// call and half that of HTTP headers, but gRPC counts 32 bytes a field on
// top of name and value, and grpc-gateway passed every standard header on
// again as grpcgateway-<name>: 1,500 short Accept lines (17 KB) made more
// metadata than gRPC takes, and the gateway's call failed (500). Now only
// the listed headers are forwarded, and those over their bound are 431.
func TestHeadersWithinTheHTTPLimitAreNot500(t *testing.T) {
	gs := grpc.NewServer(grpc.MaxHeaderListSize(64 << 10)) // as ordersd
	ordersv1.RegisterOrderQueryServiceServer(gs, codeQuery{})
	h, err := httpapi.New(t.Context(), serve(t, gs), httpapi.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.MaxHeaderBytes = (64 << 10) / 2 // as ordersd
	srv.Start()
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		line string
		want int
	}{
		{"Accept: a", http.StatusNotFound},                     // not forwarded: order c5 answers NOT_FOUND
		{"X-Actor: a", http.StatusRequestHeaderFieldsTooLarge}, // forwarded, too many
	} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		b.WriteString("GET /v1/orders/c5 HTTP/1.1\r\nHost: x\r\n")
		for range 1500 {
			b.WriteString(c.line + "\r\n")
		}
		b.WriteString("\r\n")
		if b.Len() > (64<<10)/2 {
			t.Fatalf("headers of %d bytes exceed the HTTP limit", b.Len())
		}
		if _, err := conn.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		_ = conn.Close()
		if res.StatusCode != c.want {
			t.Errorf("1,500 lines of %q (%d bytes of headers): HTTP %d, want %d", c.line, b.Len(), res.StatusCode, c.want)
		}
	}
}
