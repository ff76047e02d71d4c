package app_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/tlsconfig"
	"github.com/orderstream/orderstream/internal/tlsconfig/tlstest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// With TLS_CERT, TLS_KEY and TLS_CLIENT_CA, gRPC demands a client
// certificate (mTLS); HTTPS serves REST only to clients with a verified
// certificate (401 otherwise) and the probes and metrics to anyone; and
// plaintext clients are refused.
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

	// Over HTTPS the API demands a verified client certificate too (the
	// gateway's own certificate must not stand in for the caller's), while
	// probes and scrapes need none.
	post := func(c *tls.Config, id string) int {
		t.Helper()
		httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: c}}
		t.Cleanup(httpc.CloseIdleConnections)
		res, err := httpc.Post("https://"+addrs.HTTP+"/v1/orders", "application/json", strings.NewReader(`{"requestId":"`+id+`","customerId":"c","currency":"EUR"}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post(noCert, "tls-3"); code != http.StatusUnauthorized {
		t.Fatalf("REST over HTTPS without a client certificate: %d", code)
	}
	if code := post(good, "tls-4"); code != http.StatusOK {
		t.Fatalf("REST over HTTPS with a client certificate: %d", code)
	}
	// A certificate from another CA is refused in the handshake.
	_, _, _, occert, ockey := tlstest.Generate(t, t.TempDir())
	foreign, err := tlsconfig.Client(ca, occert, ockey, "")
	if err != nil {
		t.Fatal(err)
	}
	foreignc := &http.Client{Transport: &http.Transport{TLSClientConfig: foreign}}
	t.Cleanup(foreignc.CloseIdleConnections)
	if res, err := foreignc.Get("https://" + addrs.HTTP + "/v1/orders/x"); err == nil {
		res.Body.Close()
		t.Fatalf("a certificate from another CA was accepted: %d", res.StatusCode)
	}
	probes := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}
	t.Cleanup(probes.CloseIdleConnections)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		res, err := probes.Get("https://" + addrs.HTTP + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s without a client certificate: %d", path, res.StatusCode)
		}
	}
	if res, err := http.Get("http://" + addrs.HTTP + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plaintext HTTP served although TLS is on")
		}
	}
}

// A process that does not serve TLS itself still calls TLS upstreams over
// TLS when its clients' settings (TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY)
// are set: here a gateway reaches command, audit and payments roles that
// demand client certificates, while its own query role, on its own
// plaintext listener, is still called in plaintext.
func TestClientTLSWithoutServingTLS(t *testing.T) {
	ca, cert, key, ccert, ckey := tlstest.Generate(t, t.TempDir())
	ns := estest.StartServer(t)
	core, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,audit,payments",
		"TLS_CERT", cert, "TLS_KEY", key, "TLS_CLIENT_CA", ca, "TLS_CA", ca, "TLS_CLIENT_CERT", ccert, "TLS_CLIENT_KEY", ckey)
	front, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "gateway,query",
		"COMMAND_ADDR", core.GRPC, "AUDIT_ADDR", core.GRPC, "PAYMENTS_ADDR", core.GRPC,
		"TLS_CA", ca, "TLS_CLIENT_CERT", ccert, "TLS_CLIENT_KEY", ckey)
	base := "http://" + front.HTTP
	res, err := http.Post(base+"/v1/orders", "application/json",
		strings.NewReader(`{"requestId":"ctls-1","orderId":"ctls-1","customerId":"c","currency":"EUR"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("create through the gateway, to the command role over TLS: %d %s", res.StatusCode, body)
	}
	for _, path := range []string{"/v1/orders/ctls-1/history", "/v1/admin/parked-payments"} {
		if code, got := getJSON(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s, from the roles served over TLS: %d %v", path, code, got)
		}
	}
	if code := readStatus(t, base+"/v1/orders/ctls-1"); code != http.StatusOK {
		t.Fatalf("read from this process's own query role, in plaintext: %d", code)
	}
}

// A certificate for a service name only (no IP address, as a container's
// usually is), self-signed, with nothing else set: the gateway's calls to
// its own gRPC listener at 127.0.0.1 trust that certificate, whatever name
// it carries, as the healthcheck's probe does. They were verified as calls
// to any upstream (the system's roots, the dialled address as the name),
// and every REST call failed while /readyz said ready.
func TestOwnListenerTrustsItsOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := tlstest.SelfSigned(t, dir, "orders.internal")
	addrs, _ := run(t, t.TempDir(), "TLS_CERT", cert, "TLS_KEY", key, "ROLES", "command,query,audit,gateway")
	trust, err := tlsconfig.Client(cert, "", "", "orders.internal")
	if err != nil {
		t.Fatal(err)
	}
	httpc := &http.Client{Transport: &http.Transport{TLSClientConfig: trust}}
	t.Cleanup(httpc.CloseIdleConnections)
	res, err := httpc.Post("https://"+addrs.HTTP+"/v1/orders", "application/json", strings.NewReader(`{"requestId":"own-1","customerId":"c","currency":"EUR"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("REST over HTTPS with a certificate for a service name: %d %s", res.StatusCode, b)
	}
}

// With TLS_CLIENT_CA, this process's own calls (the gateway's, the
// console's, the payments manager's) present TLS_CLIENT_CERT to its own
// listener. One the listener refuses (the server's certificate reused,
// which lacks the client usage, or one of another CA) was taken: the node
// reported ready and every REST call answered 503. Start-up fails naming
// the variable.
func TestOwnCallsCertificateTheListenerRefusesFailsStartUp(t *testing.T) {
	ca, cert, key, _, _ := tlstest.Generate(t, t.TempDir())
	_, _, _, otherCert, otherKey := tlstest.Generate(t, t.TempDir())
	for name, own := range map[string][2]string{"the server's certificate": {cert, key}, "another CA's": {otherCert, otherKey}} {
		t.Run(name, func(t *testing.T) {
			vars := map[string]string{"TLS_CERT": cert, "TLS_KEY": key, "TLS_CLIENT_CA": ca,
				"TLS_CLIENT_CERT": own[0], "TLS_CLIENT_KEY": own[1], "ROLES": "command,query,audit,gateway"}
			if err := startErr(t, vars); err == nil || !strings.Contains(err.Error(), "TLS_CLIENT_CERT") {
				t.Fatalf("start-up: %v, want an error naming TLS_CLIENT_CERT", err)
			}
		})
	}
}

// With TLS_CLIENT_CA, a REST request without a client certificate is 401,
// as the served document describes every 401: with a WWW-Authenticate
// challenge (RFC 9110 requires one), and on a stream route the one line
// {"error": status}. This 401, answered before the gateway, had neither.
func TestClientCertRefusalIsTheAPIs401(t *testing.T) {
	ca, cert, key, ccert, ckey := tlstest.Generate(t, t.TempDir())
	addrs, _ := run(t, t.TempDir(), "TLS_CERT", cert, "TLS_KEY", key, "TLS_CLIENT_CA", ca,
		"TLS_CA", ca, "TLS_CLIENT_CERT", ccert, "TLS_CLIENT_KEY", ckey, "ROLES", "command,query,audit,gateway")
	noCert, err := tlsconfig.Client(ca, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: noCert}}
	t.Cleanup(c.CloseIdleConnections)
	get := func(path string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "GET", "https://"+addrs.HTTP+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header, string(b)
	}
	code, hdr, body := get("/v1/orders/x")
	if code != http.StatusUnauthorized {
		t.Fatalf("HTTP %d, want 401: %s", code, body)
	}
	if hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate: %v %s", hdr, body)
	}
	code, _, body = get("/v1/events")
	if code != http.StatusUnauthorized {
		t.Fatalf("stream: HTTP %d, want 401: %s", code, body)
	}
	var line struct {
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &line); err != nil || line.Error == nil || line.Error.Code != 16 {
		t.Errorf("a refused stream's 401 is not the line {\"error\": status}: %q", body)
	}
}
