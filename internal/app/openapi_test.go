package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// servedOnItsOwn are the routes ordersd's HTTP listener serves itself,
// beside the gateway's (which come from the contract's HTTP rules and the
// gateway's own routes: services/gateway's tests check those).
var servedOnItsOwn = []string{"get /healthz", "get /readyz", "get /metrics"}

// The OpenAPI document ordersd serves describes ordersd as it runs with
// authentication on: every operation it lists is routed, the secured ones
// answer 401 without a token, the public ones answer without one, and
// ordersd's own routes are in it.
func TestOpenAPIDocumentMatchesTheServer(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("admin-token-0123456789 root admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "AUTH_TOKENS_FILE", tokens)
	base := "http://" + addrs.HTTP
	waitStatus(t, base+"/readyz", http.StatusOK)

	res, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			OperationID string                 `json:"operationId"`
			Security    *[]map[string][]string `json:"security"`
			RequestBody any                    `json:"requestBody"`
		} `json:"paths"`
	}
	err = json.NewDecoder(res.Body).Decode(&doc)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("GET /openapi.json: %d, openapi %q, %v", res.StatusCode, doc.OpenAPI, err)
	}

	param := regexp.MustCompile(`\{[^}]+\}`)
	var routes []string
	for path, item := range doc.Paths {
		for method, op := range item {
			route := method + " " + path
			routes = append(routes, route)
			if op.Security == nil {
				t.Errorf("%s: no security requirement", route)
				continue
			}
			var body io.Reader
			if op.RequestBody != nil {
				body = strings.NewReader("{}")
			}
			req, err := http.NewRequestWithContext(t.Context(), strings.ToUpper(method), base+param.ReplaceAllString(path, "x-1"), body)
			if err != nil {
				t.Fatal(err)
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			want := http.StatusUnauthorized
			if len(*op.Security) == 0 {
				want = http.StatusOK
			}
			if res.StatusCode != want {
				t.Errorf("%s (%s) without a token: HTTP %d, want %d", route, op.OperationID, res.StatusCode, want)
			}
		}
	}
	for _, r := range servedOnItsOwn {
		if !slices.Contains(routes, r) {
			t.Errorf("%s is served but not in the OpenAPI document", r)
		}
	}
}
