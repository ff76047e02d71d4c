package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/config"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// With authentication on, every RPC but health needs a valid token with the
// right role, over gRPC and REST alike; the token's subject is the actor in
// the log; and the payments manager still pays (with its own token).
func TestAuthentication(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(tokens, []byte("clerk-token-0123456789 alice clerk\nviewer-token-012345678 vera viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(secret, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "AUTH_TOKENS_FILE", tokens, "AUTH_JWT_HMAC_SECRET_FILE", secret)
	conn := dial(t, addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	with := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token, "x-actor", "mallory")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(key)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwtFor := func(sub string, exp time.Duration, roles ...string) string {
		tok, err := jwt.Signed(signer).Claims(map[string]any{"sub": sub, "exp": time.Now().Add(exp).Unix(), "roles": roles}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	create := func(ctx context.Context, id string) (*ordersv1.CreateOrderResponse, error) {
		return cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "c", Currency: "EUR",
			Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}}, ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}})
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"no token", t.Context(), codes.Unauthenticated},
		{"wrong token", with("not-a-real-token-at-all"), codes.Unauthenticated},
		{"expired JWT", with(jwtFor("carol", -time.Hour, "clerk")), codes.Unauthenticated},
		{"under-privileged", with("viewer-token-012345678"), codes.PermissionDenied},
	} {
		if _, err := create(tc.ctx, "o-"+strings.ReplaceAll(tc.name, " ", "-")); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	c, err := create(with("clerk-token-0123456789"), "o-ok")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := create(with(jwtFor("carol", time.Hour, "clerk")), "o-jwt"); err != nil {
		t.Fatalf("valid JWT: %v", err)
	}
	// The recorded actor is the token's subject, not the x-actor header.
	hist, err := ordersv1.NewOrderAuditServiceClient(conn).GetOrderHistory(with(jwtFor("aud", time.Hour, "auditor")), &ordersv1.GetOrderHistoryRequest{OrderId: "o-ok"})
	if err != nil {
		t.Fatal(err)
	}
	if a := hist.GetEvents()[0].GetActor(); a != "alice" {
		t.Fatalf("actor %q, want the token's subject alice", a)
	}
	// Payments still work: the manager authenticates with its own token.
	p, err := cmd.PlaceOrder(with("clerk-token-0123456789"), &ordersv1.PlaceOrderRequest{RequestId: "place-ok", OrderId: "o-ok"})
	if err != nil {
		t.Fatal(err)
	}
	_ = c
	stream, err := ordersv1.NewOrderAuditServiceClient(conn).StreamEvents(with(jwtFor("aud", time.Hour, "auditor")),
		&ordersv1.StreamEventsRequest{OrderIds: []string{"o-ok"}, FromPosition: p.GetPosition() + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	paid, err := stream.Recv()
	if err != nil || paid.GetEvent().GetType() != "PaymentAuthorized" || paid.GetEvent().GetActor() != "payments" {
		t.Fatalf("after placing: %v %v", paid.GetEvent(), err)
	}

	// REST: the gateway forwards Authorization.
	rest := func(token, method, path, body string) int {
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addrs.HTTP+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if code := rest("", "GET", "/v1/orders/o-ok", ""); code != http.StatusUnauthorized {
		t.Fatalf("REST without a token: %d", code)
	}
	if code := rest("viewer-token-012345678", "POST", "/v1/orders", `{"requestId":"r-1","customerId":"c","currency":"EUR"}`); code != http.StatusForbidden {
		t.Fatalf("REST under-privileged: %d", code)
	}
	if code := rest("viewer-token-012345678", "GET", "/v1/orders/o-ok", ""); code != http.StatusOK {
		t.Fatalf("REST viewer GET: %d", code)
	}
	if code := rest("", "GET", "/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz needs no token: %d", code)
	}

	// Reflection would show the API to anyone: it needs a token, of any
	// role. gRPC health checks need none.
	reflect := func(ctx context.Context) error {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		// Send reports io.EOF when the server has already ended the
		// stream; its status then comes from Recv.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		res, err := stream.Recv()
		if err == nil && len(res.GetListServicesResponse().GetService()) == 0 {
			t.Errorf("reflection listed no services: %v", res)
		}
		return err
	}
	if err := reflect(t.Context()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without a token: %v, want Unauthenticated", err)
	}
	if err := reflect(with("viewer-token-012345678")); err != nil {
		t.Errorf("reflection with a viewer token: %v", err)
	}
	// Whether it answers SERVING follows readiness (payments, read model),
	// which is not what this test is about: only that it answers.
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("gRPC health without a token: %v", err)
	}
}

// The Bearer scheme is matched in any case (RFC 7235 §2.1; OAuth servers
// issue token_type "bearer") by gRPC, REST and /metrics alike, and a 401
// from REST or /metrics carries the same Bearer challenge.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("admin-token-0123456789 ops admin\nviewer-token-012345678 vera viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "AUTH_TOKENS_FILE", tokens)
	query := ordersv1.NewOrderQueryServiceClient(dial(t, addrs.GRPC))
	// get answers the status and the WWW-Authenticate values of a GET.
	get := func(path, authorization string) (int, []string) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+addrs.HTTP+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, res.Header.Values("WWW-Authenticate")
	}
	for _, scheme := range []string{"Bearer ", "bearer ", "BEARER ", "Bearer  "} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", scheme+"viewer-token-012345678")
		if _, err := query.ListOrders(ctx, &ordersv1.ListOrdersRequest{PageSize: 1}); err != nil {
			t.Errorf("gRPC with %q<token>: %v", scheme, err)
		}
		if code, _ := get("/v1/orders?pageSize=1", scheme+"viewer-token-012345678"); code != http.StatusOK {
			t.Errorf("REST with %q<token>: %d, want 200", scheme, code)
		}
		if code, _ := get("/metrics", scheme+"admin-token-0123456789"); code != http.StatusOK {
			t.Errorf("/metrics with %q<token>: %d, want 200", scheme, code)
		}
	}
	for _, authorization := range []string{"", "Basic dmVyYTpwYXNzd29yZA==", "bearer not-a-real-token-at-all"} {
		for _, path := range []string{"/v1/orders?pageSize=1", "/metrics"} {
			if code, challenge := get(path, authorization); code != http.StatusUnauthorized || len(challenge) != 1 || challenge[0] != "Bearer" {
				t.Errorf("%s with authorization %q: %d, WWW-Authenticate %q; want 401 with Bearer", path, authorization, code, challenge)
			}
		}
	}
}

// A payments role beside a command role but calling the command service of
// another process (COMMAND_ADDR set) presents PAYMENTS_TOKEN there, as the
// deadlines do: a token made by this process is known only to its own
// listener, and the remote command service would refuse the outcome of a
// charge already made. Without PAYMENTS_TOKEN such a process does not start
// (config.Validate refuses it, and Run too when handed it), naming it.
func TestPaymentsCallingRemoteCommandPresentPaymentsToken(t *testing.T) {
	ns := estest.StartServer(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("clerk-token-0123456789 alice clerk,auditor\npayments-token-0123456 pay clerk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	core, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,query,audit", "AUTH_TOKENS_FILE", tokens)

	vars := map[string]string{"NATS_URL": ns.ClientURL(), "ROLES": "command,payments", "AUTH_TOKENS_FILE": tokens}
	cfg := apptest.Config(t, vars)
	cfg.CommandAddr, vars["COMMAND_ADDR"] = core.GRPC, core.GRPC
	if err := runErr(t, cfg, vars); !errors.Is(err, config.ErrPaymentsTokenRequired) {
		t.Fatalf("payments calling COMMAND_ADDR without PAYMENTS_TOKEN: %v, want ErrPaymentsTokenRequired", err)
	}

	run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,payments", "COMMAND_ADDR", core.GRPC,
		"AUTH_TOKENS_FILE", tokens, "PAYMENTS_TOKEN", "payments-token-0123456")
	conn := dial(t, core.GRPC)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer clerk-token-0123456789")
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: "rp-1", OrderId: "rp-1", CustomerId: "c", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}}, ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}}); err != nil {
		t.Fatal(err)
	}
	p, err := cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: "rp-2", OrderId: "rp-1"})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := ordersv1.NewOrderAuditServiceClient(conn).StreamEvents(ctx,
		&ordersv1.StreamEventsRequest{OrderIds: []string{"rp-1"}, FromPosition: p.GetPosition() + 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	paid, err := stream.Recv()
	if err != nil || paid.GetEvent().GetType() != "PaymentAuthorized" || paid.GetEvent().GetActor() != "pay" {
		t.Fatalf("after placing: %v %v, want PaymentAuthorized by PAYMENTS_TOKEN's subject pay", paid.GetEvent(), err)
	}
}

// A PAYMENTS_TOKEN that this process's own command service would refuse
// (no clerk role, unknown to its token sources, or a subject it cannot
// record) stops start-up, naming
// it: the payments manager would otherwise charge customers and then fail
// to record every payment.
func TestPaymentsTokenTheLocalCommandRefusesStopsStartup(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("viewer-token-012345678 vera viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret, sign := hmacIssuer(t)
	// A JWT's subject: a static token's that cannot be recorded stops
	// start-up as AUTH_TOKENS_FILE's.
	longSubject := sign(strings.Repeat("p", 129), "clerk")
	for _, token := range []string{"viewer-token-012345678", "unknown-token-01234567", longSubject} {
		vars := map[string]string{"ROLES": "command,query,audit,payments", "AUTH_TOKENS_FILE": tokens, "AUTH_JWT_HMAC_SECRET_FILE": secret, "PAYMENTS_TOKEN": token}
		if err := runErr(t, apptest.Config(t, vars), vars); err == nil || !strings.HasPrefix(err.Error(), "PAYMENTS_TOKEN:") {
			t.Errorf("PAYMENTS_TOKEN %s: %v, want an error naming PAYMENTS_TOKEN", token, err)
		}
	}
}

// A command whose precondition fails whatever the order's state (a weak
// If-Match, If-None-Match: *) is answered 401 without a token and 403
// with one lacking the role, as without the condition (RFC 9110, section
// 13.2.1), and 412 only to a caller the service admits; a stream's too.
// Each was 412 whoever asked.
func TestRESTFailedPreconditionAfterAuthentication(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("clerk-token-0123456789 alice clerk\nviewer-token-012345678 vera viewer\nauditor-token-01234567 ada auditor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "AUTH_TOKENS_FILE", tokens)
	rest := func(token, method, path, body string, header ...string) (int, string) {
		if token != "" {
			header = append(header, "Authorization", "Bearer "+token)
		}
		code, h, _ := doFull(t, method, "http://"+addrs.HTTP+path, body, header...)
		return code, h.Get("WWW-Authenticate")
	}
	create := `{"requestId":"r-pre","orderId":"o-pre","customerId":"c","currency":"EUR"}`
	if code, _ := rest("clerk-token-0123456789", "POST", "/v1/orders", create); code != http.StatusOK {
		t.Fatalf("create: HTTP %d", code)
	}
	put := `{"shippingAddress":{"name":"Eve","line1":"2 Other St","city":"Paris","country":"FR"}}`
	n := 0
	for _, cond := range [][]string{{"If-Match", `W/"1"`}, {"If-None-Match", "*"}} {
		for _, c := range []struct {
			token, method, path, body string
			want                      int
		}{
			{"", "PUT", "/v1/orders/o-pre/shipping-address", put, http.StatusUnauthorized},
			{"viewer-token-012345678", "PUT", "/v1/orders/o-pre/shipping-address", put, http.StatusForbidden},
			{"clerk-token-0123456789", "PUT", "/v1/orders/o-pre/shipping-address", put, http.StatusPreconditionFailed},
			{"", "POST", "/v1/events:verify", `{}`, http.StatusUnauthorized},
			{"clerk-token-0123456789", "POST", "/v1/events:verify", `{}`, http.StatusForbidden},
			{"auditor-token-01234567", "POST", "/v1/events:verify", `{}`, http.StatusPreconditionFailed},
		} {
			// A key of its own: without one the command is malformed
			// (400), which the service tells before the condition.
			code, challenge := rest(c.token, c.method, c.path, c.body, cond[0], cond[1], "Idempotency-Key", fmt.Sprintf("k-pre-%d", n))
			n++
			if code != c.want {
				t.Errorf("%s %s with %s: %s, token %q: HTTP %d, want %d", c.method, c.path, cond[0], cond[1], c.token, code, c.want)
			}
			if code == http.StatusUnauthorized && challenge != "Bearer" {
				t.Errorf("%s %s with %s: %s: 401 with WWW-Authenticate %q, want Bearer", c.method, c.path, cond[0], cond[1], challenge)
			}
		}
	}
}

// hmacIssuer writes a secret for AUTH_JWT_HMAC_SECRET_FILE and returns its
// file, with a function that signs an HS256 JWT of a subject and roles,
// valid for an hour.
func hmacIssuer(t *testing.T) (secretFile string, sign func(sub string, roles ...string) string) {
	t.Helper()
	key := "0123456789abcdef0123456789abcdef"
	secretFile = filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(key)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return secretFile, func(sub string, roles ...string) string {
		tok, err := jwt.Signed(signer).Claims(map[string]any{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "roles": roles}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}
