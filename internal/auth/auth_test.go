package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/auth"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sign(t *testing.T, key jose.SigningKey, kid string, c any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type claims struct {
	jwt.Claims
	Roles []string `json:"roles,omitempty"`
}

func TestTokens(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ec.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	a, err := auth.Load(auth.Config{
		TokensFile:     write(t, "tokens", "# static tokens\nclerk-token-0123456789 alice clerk\nboss-token-0123456789 root admin\n"),
		HMACSecretFile: write(t, "secret", secret),
		JWKSFile:       write(t, "jwks.json", string(jwks)),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(now.Add(time.Hour))}, Roles: []string{"viewer"}}
	expired := claims{Claims: jwt.Claims{Subject: "bob", Expiry: jwt.NewNumericDate(now.Add(-time.Hour))}, Roles: []string{"viewer"}}
	hs := jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}
	es := jose.SigningKey{Algorithm: jose.ES256, Key: ec}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	cases := []struct {
		name    string
		token   string
		subject string
		role    string
	}{
		{"static", "clerk-token-0123456789", "alice", "clerk"},
		{"static admin has every role", "boss-token-0123456789", "root", "auditor"},
		{"HMAC JWT", sign(t, hs, "", valid), "bob", "viewer"},
		{"JWKS JWT", sign(t, es, "k1", valid), "bob", "viewer"},
		{"expired", sign(t, hs, "", expired), "", ""},
		{"wrong HMAC secret", sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte("another-secret-another-secret-xx")}, "", valid), "", ""},
		{"unknown signing key", sign(t, jose.SigningKey{Algorithm: jose.ES256, Key: other}, "k1", valid), "", ""},
		{"no subject", sign(t, hs, "", claims{Claims: jwt.Claims{Expiry: jwt.NewNumericDate(now.Add(time.Hour))}}), "", ""},
		{"garbage", "not-a-token", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(tc.token)
			if tc.subject == "" {
				if !errors.Is(err, auth.ErrUnauthenticated) {
					t.Fatalf("accepted: %+v %v", p, err)
				}
				return
			}
			if err != nil || p.Subject != tc.subject || !p.Has(tc.role) {
				t.Fatalf("%+v %v", p, err)
			}
		})
	}
}

// With an issuer and an audience configured, a JWT signed with the right
// key is good only when it names both: a key shared with other services
// does not make their tokens good here.
func TestIssuerAndAudience(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", secret), Issuer: "https://id.example", Audience: "orderstream"})
	if err != nil {
		t.Fatal(err)
	}
	hs := jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}
	exp := jwt.NewNumericDate(time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		c    jwt.Claims
		good bool
	}{
		{"both", jwt.Claims{Issuer: "https://id.example", Audience: jwt.Audience{"billing", "orderstream"}}, true},
		{"another audience", jwt.Claims{Issuer: "https://id.example", Audience: jwt.Audience{"billing"}}, false},
		{"no audience", jwt.Claims{Issuer: "https://id.example"}, false},
		{"another issuer", jwt.Claims{Issuer: "https://other.example", Audience: jwt.Audience{"orderstream"}}, false},
		{"no issuer", jwt.Claims{Audience: jwt.Audience{"orderstream"}}, false},
	} {
		tc.c.Subject, tc.c.Expiry = "bob", exp
		p, err := a.Authenticate(sign(t, hs, "", claims{Claims: tc.c, Roles: []string{"viewer"}}))
		if tc.good && (err != nil || p.Subject != "bob") {
			t.Errorf("%s: %+v, %v; want bob", tc.name, p, err)
		}
		if !tc.good && !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: accepted as %+v, %v", tc.name, p, err)
		}
	}
	for name, c := range map[string]auth.Config{
		"AUTH_JWT_ISSUER":   {TokensFile: write(t, "t", "clerk-token-0123456789 alice clerk\n"), Issuer: "https://id.example"},
		"AUTH_JWT_AUDIENCE": {Audience: "orderstream"},
	} {
		if _, err := auth.Load(c); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s without a JWT source: %v; want an error naming it", name, err)
		}
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	for name, c := range map[string]auth.Config{
		"AUTH_TOKENS_FILE":          {TokensFile: write(t, "t", "short alice clerk\n")},
		"AUTH_JWT_HMAC_SECRET_FILE": {HMACSecretFile: write(t, "s", "too-short")},
		"AUTH_JWKS_FILE":            {JWKSFile: write(t, "j", "{}")},
	} {
		if _, err := auth.Load(c); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if a, err := auth.Load(auth.Config{}); a != nil || err != nil {
		t.Fatalf("no sources: %v %v", a, err)
	}
}

func TestAllowedRoles(t *testing.T) {
	for method, want := range map[string]string{
		"/orders.v1.OrderCommandService/PlaceOrder":                      "clerk",
		"/orders.v1.OrderQueryService/GetOrder":                          "viewer,clerk",
		"/orders.v1.OrderQueryService/ListOrders":                        "viewer,clerk",
		"/orders.v1.OrderAuditService/VerifyLog":                         "auditor",
		"/orders.v1.OrderAdminService/RebuildReadModel":                  "admin",
		"/orders.v1.PaymentAdminService/RetryParkedPayment":              "admin",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      "viewer,clerk,auditor,admin",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "viewer,clerk,auditor,admin",
		// It lists every service, as reflection does, which anonymous
		// callers may not.
		"/grpc.health.v1.Health/List": "viewer,clerk,auditor,admin",
	} {
		if got, exempt := auth.AllowedRoles(method); strings.Join(got, ",") != want || exempt {
			t.Errorf("%s: %v %v", method, got, exempt)
		}
	}
	for _, probe := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"} {
		if _, exempt := auth.AllowedRoles(probe); !exempt {
			t.Errorf("%s needs a token", probe)
		}
	}
}

// The interceptor admits a call when the token holds any allowed role: a
// clerk reads orders as well as changing them, but cannot read the audit.
func TestInterceptorRoles(t *testing.T) {
	a, err := auth.Load(auth.Config{TokensFile: write(t, "tokens",
		"clerk-token-0123456789 alice clerk\nviewer-token-012345678 vera viewer\naudit-token-0123456789 ann auditor\n")})
	if err != nil {
		t.Fatal(err)
	}
	handler := func(ctx context.Context, _ any) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		return md.Get("x-actor"), nil
	}
	for _, tc := range []struct {
		token, method string
		want          codes.Code
	}{
		{"clerk-token-0123456789", "/orders.v1.OrderCommandService/AddItem", codes.OK},
		{"clerk-token-0123456789", "/orders.v1.OrderQueryService/GetOrder", codes.OK},
		{"clerk-token-0123456789", "/orders.v1.OrderAuditService/GetOrderHistory", codes.PermissionDenied},
		{"viewer-token-012345678", "/orders.v1.OrderQueryService/ListOrders", codes.OK},
		{"viewer-token-012345678", "/orders.v1.OrderCommandService/AddItem", codes.PermissionDenied},
		{"audit-token-0123456789", "/orders.v1.OrderQueryService/GetOrder", codes.PermissionDenied},
		{"audit-token-0123456789", "/orders.v1.OrderAuditService/GetOrderHistory", codes.OK},
	} {
		ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", "Bearer "+tc.token))
		_, err := a.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, handler)
		if status.Code(err) != tc.want {
			t.Errorf("%s calling %s: %v, want %v", tc.token, tc.method, err, tc.want)
		}
	}
}

// Reflection, a stream, needs a token of any role; health checks need none.
func TestStreamInterceptorReflectionAndHealth(t *testing.T) {
	a, err := auth.Load(auth.Config{TokensFile: write(t, "tokens", "viewer-token-012345678 vera viewer\n")})
	if err != nil {
		t.Fatal(err)
	}
	handler := func(any, grpc.ServerStream) error { return nil }
	for _, tc := range []struct {
		token, method string
		want          codes.Code
	}{
		{"", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.Unauthenticated},
		{"not-a-real-token-at-all", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", codes.Unauthenticated},
		{"viewer-token-012345678", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", codes.OK},
		{"", "/grpc.health.v1.Health/Watch", codes.OK},
	} {
		md := metadata.MD{}
		if tc.token != "" {
			md = metadata.Pairs("authorization", "Bearer "+tc.token)
		}
		ss := &stream{ctx: metadata.NewIncomingContext(t.Context(), md)}
		err := a.Stream(nil, ss, &grpc.StreamServerInfo{FullMethod: tc.method, IsServerStream: true}, handler)
		if status.Code(err) != tc.want {
			t.Errorf("token %q calling %s: %v, want %v", tc.token, tc.method, err, tc.want)
		}
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// The auth scheme is case-insensitive (RFC 7235 §2.1), and OAuth servers
// issue token_type "bearer", which clients send back as is.
func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		value, token string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"bEaReR abc", "abc", true},
		{"Bearer   abc", "abc", true},
		{" \tBearer\tabc \t", "abc", true},
		{"Bearer", "", false},
		{"Bearer  \t ", "", false},
		{"Bearerabc", "", false},
		{"Basic YWJjOmRlZg==", "", false},
		{"", "", false},
	} {
		token, ok := auth.BearerToken(tc.value)
		if token != tc.token || ok != tc.ok {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.value, token, ok, tc.token, tc.ok)
		}
	}
}

// The interceptor takes the scheme in any case, and only the Bearer
// scheme.
func TestInterceptorBearerSchemeCase(t *testing.T) {
	a, err := auth.Load(auth.Config{TokensFile: write(t, "tokens", "viewer-token-012345678 vera viewer\n")})
	if err != nil {
		t.Fatal(err)
	}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for value, want := range map[string]codes.Code{
		"Bearer viewer-token-012345678":  codes.OK,
		"bearer viewer-token-012345678":  codes.OK,
		"BEARER viewer-token-012345678":  codes.OK,
		"Bearer  viewer-token-012345678": codes.OK,
		"Basic viewer-token-012345678":   codes.Unauthenticated,
	} {
		ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", value))
		_, err := a.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/orders.v1.OrderQueryService/GetOrder"}, handler)
		if status.Code(err) != want {
			t.Errorf("authorization %q: %v, want %v", value, err, want)
		}
	}
}

// A token whose subject the event store cannot record as the actor (too
// long, or with characters free text refuses: control characters, a bidi
// override) is refused: its changes would be recorded as "anonymous".
// Before, it was admitted and its changes lost who made them. A subject of
// the longest recordable length is admitted. (A static token's is refused
// at start-up: TestTokensFileWithUnrecordableSubjectStopsStartUp.)
func TestUnrecordableSubjectIsRefused(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", secret)})
	if err != nil {
		t.Fatal(err)
	}
	token := func(sub string) string {
		return sign(t, jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}, "",
			claims{Claims: jwt.Claims{Subject: sub, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"clerk"}})
	}
	handler := func(ctx context.Context, _ any) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		return md.Get("x-actor"), nil
	}
	fits := strings.Repeat("y", 128)
	for sub, want := range map[string]codes.Code{"CN=" + strings.Repeat("x", 128) + ",OU=clerks": codes.Unauthenticated, fits: codes.OK, "alice\u202egnp.exe": codes.Unauthenticated} {
		ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", "Bearer "+token(sub)))
		actor, err := a.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/orders.v1.OrderCommandService/AddItem"}, handler)
		if status.Code(err) != want {
			t.Errorf("subject %q: %v, want %v", sub, err, want)
		}
		if want == codes.OK && !slices.Equal(actor.([]string), []string{fits}) {
			t.Errorf("subject %q: the handler saw actor %q, want the subject", sub, actor)
		}
	}
}

// A static token whose subject cannot be recorded stops start-up, naming
// AUTH_TOKENS_FILE: every call with it would be refused. It loaded, and
// each client learnt of it as UNAUTHENTICATED. One of the longest
// recordable length loads.
func TestTokensFileWithUnrecordableSubjectStopsStartUp(t *testing.T) {
	for name, sub := range map[string]string{"long": strings.Repeat("x", auth.MaxSubject+1), "bidi": "alice\u202egnp.exe", "zero width": "al\u200bice", "control": "al\x01ice"} {
		_, err := auth.Load(auth.Config{TokensFile: write(t, "tokens", "fits-token-0123456789 "+strings.Repeat("y", auth.MaxSubject)+" clerk\nbad-token-0123456789 "+sub+" clerk\n")})
		if err == nil || !strings.HasPrefix(err.Error(), "AUTH_TOKENS_FILE: line 2:") {
			t.Errorf("%s subject: %v; want start-up refused naming AUTH_TOKENS_FILE's line 2", name, err)
		}
	}
	if _, err := auth.Load(auth.Config{TokensFile: write(t, "tokens", "fits-token-0123456789 "+strings.Repeat("é", auth.MaxSubject)+" clerk\n")}); err != nil {
		t.Errorf("a subject of %d characters: %v", auth.MaxSubject, err)
	}
}

// The subject is recorded as the actor of every change the token makes, and
// the command service trims it: a blank one would be recorded as
// "anonymous", and " alice " as alice. Neither is admitted.
func TestSubjectRecordedAsItIsOrRefused(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", secret)})
	if err != nil {
		t.Fatal(err)
	}
	hs := jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}
	for _, sub := range []string{"   ", "\t", " alice", "alice ", " alice "} {
		tok := sign(t, hs, "", claims{Claims: jwt.Claims{Subject: sub, Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"clerk"}})
		if p, err := a.Admit(tok, "/orders.v1.OrderCommandService/CreateOrder"); status.Code(err) != codes.Unauthenticated {
			t.Errorf("subject %q: admitted as %+v (err %v); want UNAUTHENTICATED", sub, p, err)
		}
	}
	tok := sign(t, hs, "", claims{Claims: jwt.Claims{Subject: "alice smith", Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}, Roles: []string{"clerk"}})
	if p, err := a.Admit(tok, "/orders.v1.OrderCommandService/CreateOrder"); err != nil || p.Subject != "alice smith" {
		t.Errorf("subject with an inner space: %+v, %v; want admitted as it is", p, err)
	}
}

// A stream that carries orders ends with UNAUTHENTICATED when its token
// expires, though its handler would go on (a watch has no end of its own)
// and answers nothing wrong; one whose token does not expire has no such
// end, nor has a rebuild, which ends on its own.
func TestStreamEndsWhenItsTokenExpires(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	a, err := auth.Load(auth.Config{HMACSecretFile: write(t, "secret", secret), TokensFile: write(t, "tokens", "viewer-token-012345678 vera viewer\n")})
	if err != nil {
		t.Fatal(err)
	}
	hs := jose.SigningKey{Algorithm: jose.HS256, Key: []byte(secret)}
	// Expired 28 s ago: still accepted, within the leeway, for 1 to 2 s
	// ("exp" is in whole seconds).
	expiring := sign(t, hs, "", claims{Claims: jwt.Claims{Subject: "vic", Expiry: jwt.NewNumericDate(time.Now().Add(2*time.Second - auth.Leeway))}, Roles: []string{"admin"}})
	open := func(token, method string, handler grpc.StreamHandler) error {
		ss := &stream{ctx: metadata.NewIncomingContext(t.Context(), metadata.Pairs("authorization", "Bearer "+token))}
		return a.Stream(nil, ss, &grpc.StreamServerInfo{FullMethod: method, IsServerStream: true}, handler)
	}
	// Until its context ends, then without an error, as a watch whose
	// client left does.
	entered := false
	untilDone := func(_ any, ss grpc.ServerStream) error {
		entered = true
		<-ss.Context().Done()
		return nil
	}
	noEnd := func(_ any, ss grpc.ServerStream) error {
		if d, ok := ss.Context().Deadline(); ok {
			return fmt.Errorf("the stream ends at %v", d)
		}
		return nil
	}
	if err := open("viewer-token-012345678", "/orders.v1.OrderQueryService/WatchOrders", noEnd); err != nil {
		t.Errorf("a watch with a static token: %v", err)
	}
	for _, method := range []string{ordersv1.OrderAdminService_RebuildReadModel_FullMethodName, ordersv1.OrderAuditService_VerifyLog_FullMethodName} {
		if err := open(expiring, method, noEnd); err != nil {
			t.Errorf("%s with an expiring token: %v", method, err)
		}
	}
	// Last: the token is expired after it.
	if err := open(expiring, "/orders.v1.OrderQueryService/WatchOrders", untilDone); status.Code(err) != codes.Unauthenticated || !entered {
		t.Fatalf("a watch whose token expired: %v (the watch ran: %v), want UNAUTHENTICATED after it ran", err, entered)
	}
}

// A token added at run time with a subject that cannot be recorded is a
// mistake in the code that adds it: AddToken panics, as every call with
// the token would be refused (only the file's tokens were checked, at
// load, and Authenticate no longer checks a static token's subject).
func TestAddTokenRefusesAnUnrecordableSubject(t *testing.T) {
	a, err := auth.Load(auth.Config{TokensFile: write(t, "tokens", "clerk-token-0123456789 alice clerk\n")})
	if err != nil {
		t.Fatal(err)
	}
	a.AddToken("system-token-0123456789", auth.Principal{Subject: "payments", Roles: []string{auth.Clerk}})
	if p, err := a.Authenticate("system-token-0123456789"); err != nil || p.Subject != "payments" {
		t.Fatalf("an added token: %+v, %v", p, err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("AddToken took a subject with a bidi override")
		}
	}()
	a.AddToken("bidi-token-0123456789", auth.Principal{Subject: "alice\u202egnp.exe", Roles: []string{auth.Clerk}})
}
