package httpapi_test

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/api/openapi"
	"go.yaml.in/yaml/v4"
)

func TestEmbeddedSpecIsTheGeneratedFile(t *testing.T) {
	for file, embedded := range map[string][]byte{"openapi.json": openapi.Spec, "orders.swagger.json": openapi.SpecV2} {
		onDisk, err := os.ReadFile("../../api/openapi/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(onDisk, embedded) {
			t.Errorf("the embedded document differs from %s", file)
		}
	}
}

type rule struct{ selector, method, path, body string }

// httpRules reads the routes from the HTTP rules file the gateway and the
// OpenAPI document are generated from.
func httpRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile("../../api/orders/v1/http.yaml")
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

// openAPIPath is a rule's path as the document spells it: path parameters
// in lowerCamel, as in the JSON mapping.
func openAPIPath(p string) string {
	return snake.ReplaceAllStringFunc(p, func(m string) string { return strings.ToUpper(m[1:]) })
}

// TestOpenAPIConfigCoversConventions checks that the generator options
// document the convention headers on every command and read-your-writes
// query that has an HTTP rule.
func TestOpenAPIConfigCoversConventions(t *testing.T) {
	raw, err := os.ReadFile("../../api/openapi/openapi.yaml")
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

// TestBodyRoutesTakeTheWholeBody guards the gateway's refusal of query
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
