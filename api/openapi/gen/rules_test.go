package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/api/openapi"
	"go.yaml.in/yaml/v4"
)

type rule struct{ selector, method, path, body string }

// httpRules reads the routes from the HTTP rules file the gateway and the
// OpenAPI documents are generated from.
func httpRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile("../../orders/v1/http.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		HTTP struct {
			Rules []map[string]string `yaml:"rules"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("http.yaml: %v", err)
	}
	var out []rule
	for _, r := range cfg.HTTP.Rules {
		n := len(out)
		for _, m := range []string{"get", "post", "put", "patch", "delete"} {
			if p, ok := r[m]; ok {
				out = append(out, rule{selector: r["selector"], method: m, path: p, body: r["body"]})
			}
		}
		if len(out) != n+1 {
			t.Fatalf("rule %v: want exactly one method", r)
		}
	}
	return out
}

var snake = regexp.MustCompile(`_([a-z])`)

// openAPIPath is a rule's path as the documents spell it: path parameters
// in lowerCamel, as in the JSON mapping.
func openAPIPath(p string) string {
	return snake.ReplaceAllStringFunc(p, func(m string) string { return strings.ToUpper(m[1:]) })
}

// TestSwaggerHasExactlyTheRules checks that the 2.0 document has one
// operation per HTTP rule, with the rule's method, path and gRPC method,
// and a body parameter exactly where the rule maps a body: internal/httpapi's
// tests read the routes from this document instead of http.yaml.
func TestSwaggerHasExactlyTheRules(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Parameters  []struct {
				In string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi.SpecV2, &doc); err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, rt := range httpRules(t) {
		want = append(want, strings.Join([]string{rt.method, openAPIPath(rt.path), rt.selector, boolString(rt.body != "")}, " "))
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			body := false
			for _, p := range op.Parameters {
				body = body || p.In == "body"
			}
			selector := "orders.v1." + strings.Replace(op.OperationID, "_", ".", 1)
			got = append(got, strings.Join([]string{method, path, selector, boolString(body)}, " "))
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Errorf("orders.swagger.json's operations differ from http.yaml's rules:\n got %q\nwant %q", got, want)
	}
}

func boolString(b bool) string {
	if b {
		return "body"
	}
	return "no-body"
}

// TestOpenAPIConfigCoversConventions checks that the generator options
// document the convention headers on every command and read-your-writes
// query that has an HTTP rule.
func TestOpenAPIConfigCoversConventions(t *testing.T) {
	raw, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		OpenAPIOptions struct {
			Method []struct {
				Method string `yaml:"method"`
				Option struct {
					Parameters struct {
						Headers []struct {
							Name string `yaml:"name"`
						} `yaml:"headers"`
					} `yaml:"parameters"`
				} `yaml:"option"`
			} `yaml:"method"`
		} `yaml:"openapiOptions"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	headers := map[string]map[string]bool{}
	for _, m := range cfg.OpenAPIOptions.Method {
		headers[m.Method] = map[string]bool{}
		for _, h := range m.Option.Parameters.Headers {
			headers[m.Method][h.Name] = true
		}
	}
	for _, rt := range httpRules(t) {
		var want string
		switch {
		case strings.HasPrefix(rt.selector, "orders.v1.OrderCommandService."):
			want = "Idempotency-Key"
		case strings.HasPrefix(rt.selector, "orders.v1.OrderQueryService."):
			want = "X-Min-Position"
		default:
			continue
		}
		if !headers[rt.selector][want] {
			t.Errorf("openapi.yaml does not document %s on %s", want, rt.selector)
		}
	}
}

// TestBodyRoutesTakeTheWholeBody guards internal/httpapi's refusal of query
// parameters on POST, PUT and PATCH: it is right only while every such
// rule maps the whole body, so that grpc-gateway reads no query parameter.
func TestBodyRoutesTakeTheWholeBody(t *testing.T) {
	for _, rt := range httpRules(t) {
		switch rt.method {
		case "post", "put", "patch":
			if rt.body != "*" {
				t.Errorf("%s: %s with body %q; the gateway assumes body \"*\" for every %s", rt.selector, rt.method, rt.body, rt.method)
			}
		default:
			if rt.body != "" {
				t.Errorf("%s: %s with a body", rt.selector, rt.method)
			}
		}
	}
}
