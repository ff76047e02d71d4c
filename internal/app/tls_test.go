package app_test

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// With TLS_CERT, TLS_KEY and TLS_CLIENT_CA, gRPC demands a client
// certificate (mTLS), HTTPS serves REST through the gateway's own TLS
// connection, and plaintext or certificate-less clients are refused.
func TestMutualTLS(t *testing.T) {
	ca, cert, key, ccert, ckey := tlstest.Generate(t, t.TempDir())
	addrs, _ := run(t, t.TempDir(), "TLS_CERT", cert, "TLS_KEY", key, "TLS_CLIENT_CA", ca,
		"TLS_CA", ca, "TLS_CLIENT_CERT", ccert, "TLS_CLIENT_KEY", ckey, "ROLES", "command,query,audit,gateway")

	good, err := tlsconfig.Client(ca, ccert, ckey, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(good)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := ordersv1.NewOrderCommandServiceClient(conn).CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "tls-1", CustomerId: "c", Currency: "EUR"}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}

	noCert, err := tlsconfig.Client(ca, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(noCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := ordersv1.NewOrderCommandServiceClient(bad).CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{RequestId: "tls-2", CustomerId: "c", Currency: "EUR"}); err == nil {
		t.Fatal("a client without a certificate was served")
	}

	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: noCert.RootCAs, MinVersion: tls.VersionTLS12}}}
	res, err := httpc.Post("https://"+addrs.HTTP+"/v1/orders", "application/json", strings.NewReader(`{"requestId":"tls-3","customerId":"c","currency":"EUR"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("REST over HTTPS: %d", res.StatusCode)
	}
	if res, err := http.Get("http://" + addrs.HTTP + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plaintext HTTP served although TLS is on")
		}
	}
}
