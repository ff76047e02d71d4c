package httpapi_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/auth"
	"google.golang.org/grpc"
)

// Every 401 carries the challenge RFC 6750 defines for bearer tokens,
// whether a unary call, a newline-delimited JSON stream or a Server-Sent
// Events watch was refused, and nothing else does.
func TestUnauthenticatedAnswersABearerChallenge(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("viewer-token-012345678 vera viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.Load(auth.Config{TokensFile: tokens})
	if err != nil {
		t.Fatal(err)
	}
	// The real interceptors in front of a query service that implements
	// nothing: a call with a valid token gets through to answer 501.
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(a.Unary), grpc.ChainStreamInterceptor(a.Stream))
	ordersv1.RegisterOrderQueryServiceServer(gs, ordersv1.UnimplementedOrderQueryServiceServer{})
	base, c := gatewayOver(t, serve(t, gs))

	for _, tc := range []struct {
		name, path string
		headers    []string
	}{
		{"unary", "/v1/orders/o-1", nil},
		{"NDJSON stream", "/v1/orders/o-1:watch", nil},
		{"Server-Sent Events", "/v1/orders/o-1:watch", []string{"Accept", "text/event-stream"}},
	} {
		r := do(t, c, http.MethodGet, base+tc.path, "", tc.headers...)
		if r.code != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s without a token: HTTP %d, WWW-Authenticate %q; want 401 with Bearer", tc.name, r.code, r.header.Values("WWW-Authenticate"))
		}
		r = do(t, c, http.MethodGet, base+tc.path, "", append([]string{"Authorization", "Bearer viewer-token-012345678"}, tc.headers...)...)
		if r.code != http.StatusNotImplemented || len(r.header.Values("WWW-Authenticate")) != 0 {
			t.Errorf("%s with a token: HTTP %d, WWW-Authenticate %q; want 501 without a challenge", tc.name, r.code, r.header.Values("WWW-Authenticate"))
		}
	}
}
