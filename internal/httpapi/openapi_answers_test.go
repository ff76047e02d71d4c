package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/api/openapi"
)

// The published document (api/openapi/openapi.json) against what the
// gateway answers: each test makes the gateway give an answer, then finds
// it in the document.

// openAPIOperation returns the operation of the served document, its
// parameters' references resolved.
func openAPIOperation(t *testing.T, path, method string) map[string]any {
	t.Helper()
	var doc struct {
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			Parameters map[string]any `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	op := doc.Paths[path][method]
	if op == nil {
		t.Fatalf("no %s %s in the document", method, path)
	}
	ps, _ := op["parameters"].([]any)
	for i, p := range ps {
		if m, ok := p.(map[string]any); ok {
			if ref, ok := m["$ref"].(string); ok {
				ps[i] = doc.Components.Parameters[strings.TrimPrefix(ref, "#/components/parameters/")]
			}
		}
	}
	return op
}

// opParams names an operation's parameters as "in:name", lower case.
func opParams(op map[string]any) map[string]bool {
	names := map[string]bool{}
	ps, _ := op["parameters"].([]any)
	for _, p := range ps {
		if m, ok := p.(map[string]any); ok {
			in, _ := m["in"].(string)
			name, _ := m["name"].(string)
			names[strings.ToLower(in+":"+name)] = true
		}
	}
	return names
}

func opResponses(op map[string]any) map[string]any {
	rs, _ := op["responses"].(map[string]any)
	return rs
}

// GET /v1/orders/{orderId} answers 304 to an If-None-Match naming its
// ETag and 412 to an If-Match naming another revision (as the package
// documentation promises), and the published document lists the two
// request headers and the two statuses on that operation: a client
// generated from it treated 304 as an unexpected answer.
func TestOpenAPIDocumentsConditionalGet(t *testing.T) {
	e := start(t)
	c := e.draft(t, "oas-cond", "")
	id, pos := c.GetOrder().GetOrderId(), formatUint(c.GetPosition())
	got := expect(t, e.do(t, "GET", "/v1/orders/"+id, "", "X-Min-Position", pos), 200)
	tag := got.header.Get("ETag")
	expect(t, e.do(t, "GET", "/v1/orders/"+id, "", "If-None-Match", tag), http.StatusNotModified)
	expect(t, e.do(t, "GET", "/v1/orders/"+id, "", "If-Match", `"99"`), http.StatusPreconditionFailed)

	op := openAPIOperation(t, "/v1/orders/{orderId}", "get")
	params, rs := opParams(op), opResponses(op)
	for _, p := range []string{"header:if-none-match", "header:if-match"} {
		if !params[p] {
			t.Errorf("GET /v1/orders/{orderId} takes %s, but the document lists no such parameter", p)
		}
	}
	for _, s := range []string{"304", "412"} {
		if rs[s] == nil {
			t.Errorf("GET /v1/orders/{orderId} answers %s, but the document lists no %s response", s, s)
		}
	}
}

// Grpc-Timeout sets a call's deadline on every route (504 once it passes,
// 400 when malformed), as the package documentation promises, and the
// document lists the header and the 504; it listed neither.
func TestOpenAPIDocumentsGrpcTimeout(t *testing.T) {
	e := start(t)
	r := e.do(t, "GET", "/v1/orders/o-1", "", "Grpc-Timeout", "1n")
	expect(t, r, http.StatusGatewayTimeout)
	for _, route := range [][2]string{{"/v1/orders/{orderId}", "get"}, {"/v1/orders/{orderId}:watch", "get"}, {"/v1/events", "get"}} {
		op := openAPIOperation(t, route[0], route[1])
		if !opParams(op)["header:grpc-timeout"] {
			t.Errorf("%s %s: Grpc-Timeout is not a documented parameter", route[1], route[0])
		}
		if opResponses(op)["504"] == nil {
			t.Errorf("%s %s: the gateway answers 504 DEADLINE_EXCEEDED, the document lists no 504", route[1], route[0])
		}
	}
}

// A stream refused before it started with a status the operation does not
// list (504 from Grpc-Timeout here; a DATA_LOSS 500 is another) answers the
// one line {"error": status}, as the document's "default" response of the
// stream operations says; it was the bare status schema (rpcStatus), and a
// client decoding the answer as documented found no code and no message.
func TestOpenAPIStreamDefaultIsTheStreamErrorShape(t *testing.T) {
	e := start(t)
	r := e.do(t, "GET", "/v1/events?follow=true", "", "Grpc-Timeout", "1n")
	if r.code != http.StatusGatewayTimeout {
		t.Fatalf("HTTP %d %s, want 504", r.code, r.raw)
	}
	if _, ok := r.body["error"].(map[string]any); !ok || r.body["code"] != nil {
		t.Fatalf("a stream's refusal is not {\"error\": status}: %s", r.raw)
	}
	op := openAPIOperation(t, "/v1/events", "get")
	resp, _ := opResponses(op)["504"].(map[string]any)
	if resp == nil {
		resp, _ = opResponses(op)["default"].(map[string]any)
	}
	b, _ := json.Marshal(resp)
	if !strings.Contains(string(b), "streamError") && !strings.Contains(string(b), "/responses/Stream") {
		t.Errorf("GET /v1/events answers HTTP 504 with %s, but the document describes that answer (its \"default\") as %s", strings.TrimSpace(r.raw), b)
	}
}

// Forwarded headers over 16 KiB of gRPC metadata are refused 431 on every
// route, and every operation of the document lists the status.
func TestOpenAPIDocuments431(t *testing.T) {
	e := start(t)
	expect(t, e.do(t, "GET", "/v1/orders/o-1", "", "X-Actor", strings.Repeat("a", 17<<10)), http.StatusRequestHeaderFieldsTooLarge)
	if opResponses(openAPIOperation(t, "/v1/orders/{orderId}", "get"))["431"] == nil {
		t.Errorf("GET /v1/orders/{orderId} answers 431, the document lists no 431")
	}
}

// The gateway answers HEAD on every route with a GET that is not a
// stream (and names HEAD in a 405's Allow), and the document has a head
// operation beside each such GET; it had none.
func TestOpenAPIDocumentsHead(t *testing.T) {
	e := start(t)
	c := e.draft(t, "oas-head", "")
	r := expect(t, e.do(t, "HEAD", "/v1/orders/"+c.GetOrder().GetOrderId(), "", "X-Min-Position", formatUint(c.GetPosition())), 200)
	if r.header.Get("ETag") == "" {
		t.Fatalf("HEAD: no ETag")
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Paths["/v1/orders/{orderId}"]["head"] == nil {
		t.Errorf("HEAD /v1/orders/{orderId} answers 200 with its ETag; the document has no head operation for it (nor for any route)")
	}
}

// Every 401 carries WWW-Authenticate: Bearer (the gateway adds it;
// TestUnauthenticatedAnswersABearerChallenge shows it), and the document's
// 401 responses declare the header; they declared none.
func TestOpenAPIDocuments401Challenge(t *testing.T) {
	var doc struct {
		Components struct {
			Responses map[string]struct {
				Headers map[string]any `json:"headers"`
			} `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openapi.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Unauthenticated", "StreamUnauthenticated"} {
		if doc.Components.Responses[name].Headers["WWW-Authenticate"] == nil {
			t.Errorf("components.responses.%s (401) declares no WWW-Authenticate header", name)
		}
	}
}
