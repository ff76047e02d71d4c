package main

import (
	"bytes"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/orderstream/orderstream/api/openapi"
)

// The committed openapi.json is what gen makes of the committed 2.0
// document, every time.
func TestGeneratedDocumentIsCommitted(t *testing.T) {
	v2, err := os.ReadFile("../orders.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	first, err := generate(v2)
	if err != nil {
		t.Fatal(err)
	}
	again, err := generate(v2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Fatal("two runs of gen on the same input differ")
	}
	if !bytes.Equal(first, openapi.Spec) {
		t.Fatal("api/openapi/openapi.json is stale: run make generate")
	}
}

func load(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Spec)
	if err != nil {
		t.Fatalf("openapi.json does not load: %v", err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	return doc
}

func TestDocumentIsValidOpenAPI3(t *testing.T) {
	doc := load(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	if doc.Info.License == nil || doc.Info.License.Name == "" {
		t.Error("no license")
	}
	if len(doc.Servers) == 0 || doc.Servers[0].URL == "" {
		t.Error("no server")
	}
	s := doc.Components.SecuritySchemes[bearer]
	if s == nil || s.Value.Type != "http" || s.Value.Scheme != "bearer" {
		t.Fatalf("security scheme %s: %+v", bearer, s)
	}
}

// hasHeader reports whether op takes the named header parameter.
func hasHeader(op *openapi3.Operation, name string) bool {
	return slices.ContainsFunc(op.Parameters, func(p *openapi3.ParameterRef) bool {
		return p.Value.In == openapi3.ParameterInHeader && p.Value.Name == name
	})
}

// TestOperations checks, operation by operation, the security, headers and
// responses the package comment promises.
func TestOperations(t *testing.T) {
	doc := load(t)
	public := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			route := method + " " + path
			if pr, ok := PublicRoutes[route]; ok {
				public++
				// /metrics alone declares the bearer token it needs
				// when authentication is on.
				if want := pr.Security != nil; op.Security == nil || (len(*op.Security) != 0) != want {
					t.Errorf("%s: security %v, want a token: %v", route, op.Security, want)
				}
				continue
			}
			if op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0][bearer] == nil {
				t.Errorf("%s: security %v, want %s", route, op.Security, bearer)
			}
			want := []int{400, 401, 403, 429, 431, 503, 504}
			if !hasHeader(op, grpcTimeout) {
				t.Errorf("%s: no %s", route, grpcTimeout)
			}
			command := strings.HasPrefix(op.OperationID, "OrderCommandService_")
			// The commands, and ForgetCustomer, whose request has a
			// request_id too, take Idempotency-Key.
			idempotent := command || op.OperationID == "OrderAdminService_ForgetCustomer"
			if idempotent != hasHeader(op, "Idempotency-Key") {
				t.Errorf("%s: Idempotency-Key: %v, want %v", route, !idempotent, idempotent)
			}
			if strings.HasPrefix(op.OperationID, "OrderQueryService_") && !hasHeader(op, "X-Min-Position") {
				t.Errorf("%s: no X-Min-Position", route)
			}
			if idempotent {
				want = append(want, 409, 422)
			}
			if hasHeader(op, "If-Match") {
				want = append(want, 412)
			}
			if op.RequestBody != nil {
				want = append(want, 408, 413, 415)
			}
			if strings.Contains(path, "{orderId}") {
				want = append(want, 404)
			}
			ok := op.Responses.Status(200)
			if ok == nil || ok.Value == nil {
				t.Errorf("%s: no 200 response", route)
				continue
			}
			// A stream's refusals are the line {"error": status}, as the
			// gateway answers them; other operations' the status.
			errorSchema := statusSchema
			if ok.Value.Content.Get("application/x-ndjson") != nil {
				errorSchema = streamErrorSchema
			}
			for _, code := range want {
				r := op.Responses.Status(code)
				if r == nil || r.Value == nil {
					t.Errorf("%s: no %d response", route, code)
					continue
				}
				mt := r.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil || mt.Schema.Ref != "#/components/schemas/"+errorSchema {
					t.Errorf("%s: %d response is not the %s JSON", route, code, errorSchema)
				}
			}
			// Every response that carries the order's revision has its
			// ETag: the commands and GetOrder.
			etag := ok.Value.Headers["ETag"] != nil
			getOrder := strings.HasPrefix(op.OperationID, "OrderQueryService_GetOrder") // and its HEAD
			if wantETag := command || getOrder; etag != wantETag {
				t.Errorf("%s: ETag header %v, want %v", route, etag, wantETag)
			}
			// If-Match is a command's expected revision, and a
			// precondition of a GET of the order (with If-None-Match,
			// and 304).
			if hasHeader(op, "If-Match") && !command && !getOrder {
				t.Errorf("%s: If-Match on an operation that is no command", route)
			}
			if conditional := hasHeader(op, "If-None-Match") && op.Responses.Status(304) != nil; conditional != getOrder {
				t.Errorf("%s: If-None-Match and 304: %v, want %v", route, conditional, getOrder)
			}
		}
	}
	if public != len(PublicRoutes) {
		t.Errorf("%d public routes in the document, want %d", public, len(PublicRoutes))
	}
}

// Server streams are declared as newline-delimited JSON, the watches also
// as Server-Sent Events.
func TestStreamsAreNDJSON(t *testing.T) {
	doc := load(t)
	for _, id := range []string{"OrderAuditService_StreamEvents", "OrderAuditService_VerifyLog", "OrderAdminService_RebuildReadModel",
		"OrderQueryService_WatchOrder", "OrderQueryService_WatchOrders"} {
		var op *openapi3.Operation
		for _, item := range doc.Paths.Map() {
			for _, o := range item.Operations() {
				if o.OperationID == id {
					op = o
				}
			}
		}
		if op == nil {
			t.Errorf("no operation %s", id)
			continue
		}
		want := []string{"application/x-ndjson"}
		if strings.HasPrefix(id, "OrderQueryService_Watch") {
			want = append(want, "text/event-stream")
			if !hasHeader(op, "Last-Event-ID") {
				t.Errorf("%s: no Last-Event-ID", id)
			}
		}
		if got := slices.Sorted(maps.Keys(op.Responses.Status(200).Value.Content)); !slices.Equal(got, want) {
			t.Errorf("%s: 200 content %v, want %v", id, got, want)
		}
	}
}

// An order as the gateway answers it, with every unset message field
// null (EmitUnpopulated), validates against its schema: clients generated
// from the document decode it. It did not: no field allowed null. An
// enum field (status) takes no null.
func TestUnsetMessageFieldsMayBeNull(t *testing.T) {
	doc := load(t)
	order := doc.Components.Schemas["v1Order"]
	if order == nil {
		t.Fatal("no v1Order schema")
	}
	body := map[string]any{"orderId": "o-1", "customerId": "c-1", "status": "ORDER_STATUS_DRAFT", "currency": "EUR", "lines": []any{},
		"shippingAddress": nil, "createdAt": "2026-12-07T08:00:00Z", "shippedAt": nil, "cancelledAt": nil}
	if err := order.Value.VisitJSON(body); err != nil {
		t.Fatalf("an order with unset message fields as the gateway answers it: %v", err)
	}
	body["status"] = nil
	if err := order.Value.VisitJSON(body); err == nil {
		t.Fatal("a null status validates")
	}
}
