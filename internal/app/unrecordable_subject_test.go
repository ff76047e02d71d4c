package app_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A token whose subject cannot be recorded (README: "refused as invalid")
// is refused by /metrics (401) and at the console's sign-in, as by the
// API. Both checked tokens with Authenticate alone, which did not look at
// the subject: /metrics served it, and the console signed it in, only for
// its first page to send the user back to sign in as if the token had
// expired.
func TestTokenInvalidForTheAPIIsInvalidOnHTTP(t *testing.T) {
	// A JWT's: a static token's stops start-up (AUTH_TOKENS_FILE).
	secret, sign := hmacIssuer(t)
	token := sign(strings.Repeat("s", 129), "admin")
	addrs, _ := run(t, t.TempDir(), "AUTH_JWT_HMAC_SECRET_FILE", secret)

	// The API refuses it as invalid.
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
	if _, err := ordersv1.NewOrderQueryServiceClient(dial(t, addrs.GRPC)).ListOrders(ctx, &ordersv1.ListOrdersRequest{PageSize: 1}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC: %v, want UNAUTHENTICATED", err)
	}

	t.Run("metrics", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+addrs.HTTP+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("/metrics with a token the API refuses as invalid: %d, want 401", res.StatusCode)
		}
	})

	t.Run("console", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		cl := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		// do answers the status and the Location header.
		do := func(method, path string, form url.Values) (int, string) {
			var body io.Reader
			if form != nil {
				body = strings.NewReader(form.Encode())
			}
			req, _ := http.NewRequestWithContext(t.Context(), method, "http://"+addrs.HTTP+path, body)
			if form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			res, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			return res.StatusCode, res.Header.Get("Location")
		}
		code, next := do("POST", "/console/login", url.Values{"token": {token}})
		if code != http.StatusSeeOther {
			return // refused at sign-in: what the console should do
		}
		if code, loc := do("GET", next, nil); code == http.StatusSeeOther && strings.HasPrefix(loc, "/console/login") {
			t.Errorf("sign-in accepted the token (303 to %s), then %s sent the user back to sign in (%s): the token is refused by every call, and should be refused at sign-in", next, next, loc)
		}
	})
}
