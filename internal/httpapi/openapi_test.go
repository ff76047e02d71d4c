package httpapi_test

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/api/openapi"
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

// rule is one HTTP route of the contract: its method (lower case), its
// path as the OpenAPI documents spell it (path parameters in lowerCamel),
// whether it takes a body, and the gRPC method it maps to.
type rule struct {
	selector, method, path string
	body                   bool
}

// httpRules reads the routes from the OpenAPI 2.0 document
// protoc-gen-openapiv2 generates from the HTTP rules file
// (api/orders/v1/http.yaml), the file the gateway is generated from too;
// api/openapi/gen's tests check that the document has exactly that file's
// rules, so the gateway's tests need no YAML parser.
func httpRules(t testing.TB) []rule {
	t.Helper()
	type parameter struct {
		In string `json:"in"`
	}
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string      `json:"operationId"`
			Parameters  []parameter `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openapi.SpecV2, &doc); err != nil {
		t.Fatalf("orders.swagger.json: %v", err)
	}
	var out []rule
	for path, ops := range doc.Paths {
		for method, op := range ops {
			service, name, ok := strings.Cut(op.OperationID, "_")
			if !ok {
				t.Fatalf("%s %s: operationId %q is not Service_Method", method, path, op.OperationID)
			}
			body := slices.ContainsFunc(op.Parameters, func(p parameter) bool { return p.In == "body" })
			out = append(out, rule{selector: "orders.v1." + service + "." + name, method: method, path: path, body: body})
		}
	}
	return out
}
