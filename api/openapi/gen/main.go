// Command gen writes the OpenAPI 3 document of the REST API, openapi.json,
// from the OpenAPI 2.0 document protoc-gen-openapiv2 generates
// (orders.swagger.json), both in api/openapi. `make generate` runs it after
// buf, in this directory (the default paths are relative to it):
//
//	cd api/openapi/gen && go run .
//
// protoc-gen-openapiv2 knows the protos and the HTTP rules but not what the
// gateway and ordersd add around them, so gen converts the 2.0 document
// (kin-openapi's openapi2conv) and then adds, deterministically:
//
//   - the bearer security scheme, and on every operation its security: the
//     bearer token for the API, none for the probes and documents;
//   - the roles that may call each operation (internal/auth.AllowedRoles);
//   - the error responses each operation can answer, as shared responses
//     whose body is the status schema (rpcStatus), or for a server stream
//     one line {"error": rpcStatus} (streamError): 400, 401, 403, 429 and
//     503 on every API operation; 408, 413 and 415 where there is a body;
//     404 where the path names an order; 409 and 422 where Idempotency-Key
//     is taken (the commands, and ForgetCustomer); 412 where If-Match
//     applies;
//   - the ETag response header wherever the gateway sets it (a response
//     carrying the order's revision);
//   - application/x-ndjson as the media type of server streams, and
//     text/event-stream on the watch routes (whose Last-Event-ID header
//     comes from openapi.yaml);
//   - the routes ordersd serves beside the API (/healthz, /readyz,
//     /metrics, /openapi.json, /openapi-v2.json), public but for /metrics,
//     which needs an admin token when authentication is on;
//   - nullable on the protos' message fields, which the gateway emits as
//     null when unset;
//   - a server entry.
//
// The header parameters (Idempotency-Key, If-Match, X-Min-Position), title,
// description and license come from the generator options in
// api/openapi/openapi.yaml and pass through the conversion.
//
// This package is the only user of kin-openapi; its test validates the
// document with it. It is a module of its own (with a replace of the
// repository's module), so kin-openapi and the YAML parser its tests read
// http.yaml and openapi.yaml with stay out of the service's go.mod.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/orderstream/orderstream/internal/auth"
)

func main() {
	in := flag.String("in", "../orders.swagger.json", "the OpenAPI 2.0 document protoc-gen-openapiv2 generated")
	out := flag.String("out", "../openapi.json", "where to write the OpenAPI 3 document")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	v2, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	b, err := generate(v2)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return os.WriteFile(out, b, 0o644)
}

// generate converts the OpenAPI 2.0 document v2 and completes it; the same
// input always gives the same bytes.
func generate(v2 []byte) ([]byte, error) {
	var doc2 openapi2.T
	if err := json.Unmarshal(v2, &doc2); err != nil {
		return nil, err
	}
	doc, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		return nil, fmt.Errorf("converting to OpenAPI 3: %w", err)
	}
	if err := complete(doc); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const (
	bearer       = "bearerAuth"
	statusSchema = "rpcStatus"
	// streamErrorSchema is a stream's refusal before it starts: the one
	// line {"error": status} its refusals after that end it with.
	streamErrorSchema = "streamError"
	// streamResponse prefixes the names of a stream's error responses.
	streamResponse = "Stream"
	streamTitle    = "Stream result of "
	probesTag      = "Probes"
)

// Server is the server entry: ordersd with its default HTTP_ADDR.
const Server = "http://127.0.0.1:8080"

// errorResponses are the shared error responses, by status.
var errorResponses = map[string]struct{ name, description string }{
	"400": {"BadRequest", "INVALID_ARGUMENT: a malformed request (bad or unknown field, unknown query parameter, malformed header, invalid UTF-8); " +
		"FAILED_PRECONDITION: the order's status does not allow the command; OUT_OF_RANGE: a version past the order's history, or an X-Min-Position (consistency.minPosition) past the log's last position."},
	"401": {"Unauthenticated", "UNAUTHENTICATED: authentication is configured and the bearer token (or, with TLS_CLIENT_CA, the client certificate) is missing or invalid."},
	"403": {"PermissionDenied", "PERMISSION_DENIED: the token's roles do not allow this operation."},
	"404": {"NotFound", "NOT_FOUND: no such order (or, for an item, no such line in it; for a parked payment job, none of that kind is parked)."},
	"408": {"RequestTimeout", "The request body was not received in time."},
	"409": {"Conflict", "ALREADY_EXISTS: the order, or the line's SKU, exists already; ABORTED: a stale expectedRevision in the body, lasting contention, or a parked payment job that a retry or another settle is running."},
	"412": {"PreconditionFailed", "ABORTED under If-Match: the order changed since the revision named by If-Match (on a GET of the order: its ETag is not the one named), or a weak entity tag, which never matches; FAILED_PRECONDITION under If-None-Match: * on a command but CreateOrder, which acts on what exists."},
	"413": {"PayloadTooLarge", "The request body exceeds the gateway's limit (1 MiB by default)."},
	"415": {"UnsupportedMediaType", "The request body's Content-Type is missing or not JSON (application/json, UTF-8)."},
	"422": {"RequestIdReused", "ALREADY_EXISTS with reason REQUEST_ID_REUSED: the Idempotency-Key (requestId) names an earlier, different request."},
	"429": {"TooManyRequests", "RESOURCE_EXHAUSTED: the server is at MAX_IN_FLIGHT calls (MAX_STREAMS for streams); retry later."},
	"431": {"RequestHeaderFieldsTooLarge", "The ones passed on to gRPC (Authorization, traceparent, tracestate, X-Actor, X-Correlation-Id, X-Causation-Id, Idempotency-Key) make over 16 KiB of gRPC metadata. Headers over 32 KiB in all are refused by the HTTP server itself, before the API: that 431 is text/plain, not this body."},
	"503": {"Unavailable", "UNAVAILABLE: the event store or an upstream service cannot be reached, or the read model did not reach X-Min-Position (consistency.minPosition) in time; retry later."},
	"504": {"GatewayTimeout", "DEADLINE_EXCEEDED: the call's deadline (Grpc-Timeout) passed before it was answered."},
}

// grpcTimeout is the Grpc-Timeout header every API operation takes.
const grpcTimeout = "Grpc-Timeout"

// complete adds to the converted document what the gateway and ordersd do
// beyond the protos (see the package comment).
func complete(doc *openapi3.T) error {
	if doc.Info == nil || doc.Info.License == nil || doc.Info.License.Name == "" {
		return fmt.Errorf("info.license is missing: set it in api/openapi/openapi.yaml")
	}
	if doc.Components.Schemas[statusSchema] == nil {
		return fmt.Errorf("no %s schema to answer errors with", statusSchema)
	}
	markNullable(doc)
	doc.Servers = openapi3.Servers{{URL: Server, Description: "ordersd listening on its default HTTP_ADDR"}}
	doc.Components.SecuritySchemes = openapi3.SecuritySchemes{bearer: {Value: &openapi3.SecurityScheme{
		Type:         "http",
		Scheme:       "bearer",
		BearerFormat: "static token or JWT",
		Description: "Authorization: Bearer <token>, needed once ordersd has an AUTH_* token source " +
			"(AUTH_TOKENS_FILE, AUTH_JWT_HMAC_SECRET_FILE, AUTH_JWKS_FILE); without one no token is asked for. " +
			"Each operation lists the roles that may call it; admin may call every operation.",
	}}}
	doc.Components.Responses = openapi3.ResponseBodies{}
	status := &openapi3.SchemaRef{Ref: "#/components/schemas/" + statusSchema}
	doc.Components.Schemas[streamErrorSchema] = &openapi3.SchemaRef{Value: &openapi3.Schema{
		Type:        &openapi3.Types{openapi3.TypeObject},
		Description: `A stream refused before it started: one line, as a stream that fails after it started ends with its last.`,
		Properties:  openapi3.Schemas{"error": status},
		Required:    []string{"error"},
	}}
	streamError := &openapi3.SchemaRef{Ref: "#/components/schemas/" + streamErrorSchema}
	for code, r := range errorResponses {
		doc.Components.Responses[r.name] = &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription(r.description).WithContent(openapi3.NewContentWithJSONSchemaRef(status))}
		doc.Components.Responses[streamResponse+r.name] = &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription(r.description + ` The body is the line {"error": status}; to a watch asked for as Server-Sent Events, the status alone.`).
			WithContent(openapi3.NewContentWithJSONSchemaRef(streamError))}
		if code == "401" {
			// bearerChallenge: every 401 carries the challenge.
			challenge := openapi3.Headers{"WWW-Authenticate": {Value: &openapi3.Header{Parameter: openapi3.Parameter{
				Description: "Bearer: the challenge RFC 6750 defines for bearer tokens.",
				Schema:      openapi3.NewStringSchema().NewRef(),
			}}}}
			doc.Components.Responses[r.name].Value.Headers = challenge
			doc.Components.Responses[streamResponse+r.name].Value.Headers = challenge
		}
	}
	doc.Components.Parameters = openapi3.ParametersMap{grpcTimeout: {Value: openapi3.NewHeaderParameter(grpcTimeout).
		WithDescription(`The call's deadline, as gRPC spells it: an integer and a unit (H, M, S, m for milliseconds, u, n), such as "500m"; 504 once it passes (a stream that has started ends with DEADLINE_EXCEEDED), 400 when malformed.`).
		WithSchema(openapi3.NewStringSchema())}}
	doc.Components.Headers = openapi3.Headers{"ETag": {Value: &openapi3.Header{Parameter: openapi3.Parameter{
		Description: `The order's revision, quoted ("3"; "3-erased" once the order's personal data was erased, which changes the answer but not the revision): send it back as If-Match, or as If-None-Match on a GET of the order (304 while it holds).`,
		Schema:      openapi3.NewStringSchema().NewRef(),
	}}}}

	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			if err := completeOperation(doc, path, method, op); err != nil {
				return fmt.Errorf("%s %s: %w", method, path, err)
			}
		}
	}
	addPublicRoutes(doc)
	if err := pruneResponses(doc); err != nil {
		return err
	}
	return pruneSchemas(doc)
}

// markNullable marks the message fields of the protos' schemas (a $ref to
// an object schema, or a Timestamp's date-time string) nullable: the
// gateway emits every field (EmitUnpopulated), an unset message as null
// ("shippedAt": null, "shippingAddress": null), which clients generated
// from a schema that did not allow it failed to decode. A $ref takes no
// siblings in OpenAPI 3.0, so it is wrapped in an object schema with an
// allOf of one.
func markNullable(doc *openapi3.T) {
	for _, name := range slices.Sorted(maps.Keys(doc.Components.Schemas)) {
		s := doc.Components.Schemas[name].Value
		if s == nil {
			continue
		}
		for prop, p := range s.Properties {
			switch {
			case p.Ref != "":
				target := doc.Components.Schemas[strings.TrimPrefix(p.Ref, "#/components/schemas/")]
				if target != nil && target.Value != nil && target.Value.Type.Is(openapi3.TypeObject) {
					s.Properties[prop] = &openapi3.SchemaRef{Value: &openapi3.Schema{Type: &openapi3.Types{openapi3.TypeObject}, AllOf: openapi3.SchemaRefs{p}, Nullable: true}}
				}
			case p.Value != nil && p.Value.Type.Is(openapi3.TypeString) && p.Value.Format == "date-time":
				p.Value.Nullable = true
			}
		}
	}
}

// responseRef matches a reference to a response component in the JSON
// document.
var responseRef = regexp.MustCompile(`"#/components/responses/([^"]+)"`)

// pruneResponses drops the shared responses no operation answers: not
// every status a stream's refusal could have (streamResponse) is one some
// stream answers.
func pruneResponses(doc *openapi3.T) error {
	b, err := json.Marshal(doc.Paths)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, m := range responseRef.FindAllSubmatch(b, -1) {
		used[string(m[1])] = true
	}
	maps.DeleteFunc(doc.Components.Responses, func(name string, _ *openapi3.ResponseRef) bool { return !used[name] })
	return nil
}

// schemaRef matches a reference to a schema component in the JSON document.
var schemaRef = regexp.MustCompile(`"#/components/schemas/([^"]+)"`)

// pruneSchemas drops the schemas nothing refers to any more: the 2.0
// document needs some (such as v1Consistency) only to describe query
// parameters, which OpenAPI 3 spells out one by one.
func pruneSchemas(doc *openapi3.T) error {
	for {
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		used := map[string]bool{}
		for _, m := range schemaRef.FindAllSubmatch(b, -1) {
			used[string(m[1])] = true
		}
		n := len(doc.Components.Schemas)
		maps.DeleteFunc(doc.Components.Schemas, func(name string, _ *openapi3.SchemaRef) bool { return !used[name] })
		if len(doc.Components.Schemas) == n {
			return nil
		}
	}
}

// answersNotFound and answersConflict find where an operation's proto
// comment says it answers NOT_FOUND (404), or ABORTED or ALREADY_EXISTS
// (409): "NOT_FOUND when …", not "not NOT_FOUND".
var (
	answersNotFound = regexp.MustCompile(`\bNOT_FOUND\s+(when|while|for|if)\b`)
	answersConflict = regexp.MustCompile(`\b(ABORTED|ALREADY_EXISTS)\s+(when|while|for|if)\b`)
)

func completeOperation(doc *openapi3.T, path, method string, op *openapi3.Operation) error {
	service, rpc, ok := strings.Cut(op.OperationID, "_")
	if !ok {
		return fmt.Errorf("operationId %q is not <service>_<method>", op.OperationID)
	}
	roles, exempt := auth.AllowedRoles("/orders.v1." + service + "/" + rpc)
	if exempt {
		return fmt.Errorf("%s needs no token, but every API route is secured", op.OperationID)
	}
	op.Security = &openapi3.SecurityRequirements{{bearer: []string{}}}
	op.Description = strings.TrimSpace(op.Description + "\n\nRoles: " + strings.Join(withAdmin(roles), ", ") + ".")

	statuses := []string{"400", "401", "403", "429", "431", "503", "504"}
	op.Parameters = append(op.Parameters, &openapi3.ParameterRef{Ref: "#/components/parameters/" + grpcTimeout})
	header := map[string]bool{}
	for _, p := range op.Parameters {
		if p.Value != nil && p.Value.In == openapi3.ParameterInHeader {
			header[p.Value.Name] = true
		}
	}
	if op.RequestBody != nil {
		statuses = append(statuses, "408", "413", "415")
	}
	if strings.Contains(path, "{orderId}") {
		statuses = append(statuses, "404")
	}
	if header["Idempotency-Key"] {
		statuses = append(statuses, "409", "422")
	}
	// Every command answers 412 to a weak If-Match (which never matches)
	// or to If-None-Match: * (what it acts on exists), whether or not it
	// takes If-Match as its expected revision (httpapi's conventions).
	if header["If-Match"] || method != http.MethodGet {
		statuses = append(statuses, "412")
	}
	// What the operation's own contract (its proto comment) says it
	// answers, where the path does not say it (an order id in the body).
	contract := op.Summary + "\n" + op.Description
	if answersNotFound.MatchString(contract) && !slices.Contains(statuses, "404") {
		statuses = append(statuses, "404")
	}
	if answersConflict.MatchString(contract) && !slices.Contains(statuses, "409") {
		statuses = append(statuses, "409")
	}
	ok200 := op.Responses.Value("200")
	if ok200 == nil || ok200.Value == nil {
		return fmt.Errorf("no 200 response")
	}
	media := ok200.Value.Content.Get("application/json")
	if media == nil || media.Schema == nil {
		return fmt.Errorf("200 response has no JSON schema")
	}
	stream := media.Schema.Value != nil && strings.HasPrefix(media.Schema.Value.Title, streamTitle)
	for _, s := range statuses {
		name := errorResponses[s].name
		if stream {
			name = streamResponse + name
		}
		op.Responses.Set(s, &openapi3.ResponseRef{Ref: "#/components/responses/" + name})
	}
	if stream {
		// A refusal with a status the operation does not list is the
		// stream's one line too.
		if def := op.Responses.Default(); def != nil {
			op.Responses.Set("default", &openapi3.ResponseRef{Value: openapi3.NewResponse().
				WithDescription(`An error not listed above: the line {"error": status}; to a watch asked for as Server-Sent Events, the status alone.`).
				WithContent(openapi3.NewContentWithJSONSchemaRef(&openapi3.SchemaRef{Ref: "#/components/schemas/" + streamErrorSchema}))})
		}
		// A server stream: one {"result": …} (or a last {"error": …}) per
		// line, flushed as produced.
		ok200.Value.Content = openapi3.Content{"application/x-ndjson": media}
		ok200.Value.Description = ptr("A stream of newline-delimited JSON objects: {\"result\": …} per message; an error after the first message arrives as a last line {\"error\": …}.")
		if strings.HasSuffix(path, ":watch") {
			// The gateway's Server-Sent Events, for a client that accepts
			// them.
			ok200.Value.Content["text/event-stream"] = &openapi3.MediaType{Schema: openapi3.NewStringSchema().NewRef()}
			*ok200.Value.Description += " With Accept: text/event-stream, Server-Sent Events instead: one event per message (id: its log position, data: its JSON), \": heartbeat\" comments while idle, and a last \"error\" event if the stream fails."
		}
		return nil
	}
	if setsETag(doc, op, media.Schema) {
		ok200.Value.Headers = openapi3.Headers{"ETag": {Ref: "#/components/headers/ETag"}}
	}
	if op.OperationID == "OrderQueryService_GetOrder" {
		conditionalGet(op)
	}
	if method == "GET" {
		doc.Paths.Value(path).Head = headOf(op)
	}
	return nil
}

// conditionalGet adds to GetOrder the preconditions the gateway evaluates
// against the order's ETag (internal/httpapi, conditional).
func conditionalGet(op *openapi3.Operation) {
	for _, p := range []struct{ name, description string }{
		{"If-None-Match", "ETags (or *): 304 Not Modified, without a body, when one names the order's ETag (weak comparison)."},
		{"If-Match", "One ETag: 412 when it is not the order's ETag (strong comparison)."},
	} {
		op.Parameters = append(op.Parameters, &openapi3.ParameterRef{Value: openapi3.NewHeaderParameter(p.name).
			WithDescription(p.description).WithSchema(openapi3.NewStringSchema())})
	}
	notModified := openapi3.NewResponse().WithDescription("Not Modified: If-None-Match names the order's ETag; no body.")
	notModified.Headers = openapi3.Headers{"ETag": {Ref: "#/components/headers/ETag"}}
	op.Responses.Set("304", &openapi3.ResponseRef{Value: notModified})
	op.Responses.Set("412", &openapi3.ResponseRef{Ref: "#/components/responses/" + errorResponses["412"].name})
}

// headOf is the HEAD operation the gateway answers beside a GET that is no
// stream: the GET's status and headers, without the body.
func headOf(get *openapi3.Operation) *openapi3.Operation {
	head := *get
	head.OperationID = get.OperationID + "_Head"
	head.Summary = "As GET, without the body: " + get.Summary
	head.Responses = openapi3.NewResponses()
	for code, r := range get.Responses.Map() {
		if code != "200" {
			head.Responses.Set(code, r)
			continue
		}
		ok := openapi3.NewResponse().WithDescription("As GET's 200, without the body.")
		if r.Value != nil {
			ok.Headers = r.Value.Headers
		}
		head.Responses.Set(code, &openapi3.ResponseRef{Value: ok})
	}
	return &head
}

// setsETag mirrors the gateway's setETag: a response carrying the order's
// revision at its top level (the commands), and GetOrder's, whose order
// carries it.
func setsETag(doc *openapi3.T, op *openapi3.Operation, ref *openapi3.SchemaRef) bool {
	if op.OperationID == "OrderQueryService_GetOrder" {
		return true
	}
	s := resolve(doc, ref)
	if s == nil {
		return false
	}
	_, ok := s.Properties["revision"]
	return ok
}

func resolve(doc *openapi3.T, ref *openapi3.SchemaRef) *openapi3.Schema {
	switch {
	case ref == nil:
		return nil
	case ref.Ref != "":
		if r := doc.Components.Schemas[strings.TrimPrefix(ref.Ref, "#/components/schemas/")]; r != nil {
			return r.Value
		}
		return nil
	}
	return ref.Value
}

// withAdmin is roles plus admin, which may call everything.
func withAdmin(roles []string) []string {
	out := slices.Clone(roles)
	if !slices.Contains(out, auth.Admin) {
		out = append(out, auth.Admin)
	}
	return out
}

// PublicRoutes are the routes ordersd serves beside the API's, by "METHOD
// /path": they need no token, except /metrics, which needs an admin's when
// authentication is on.
var PublicRoutes = map[string]*openapi3.Operation{
	"GET /healthz": {
		OperationID: "Healthz",
		Summary:     "Liveness: 200 while the process runs, whatever its dependencies do.",
		Responses: openapi3.NewResponses(openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("Alive.").WithJSONSchemaRef(&openapi3.SchemaRef{Ref: "#/components/schemas/Health"})})),
	},
	"GET /readyz": {
		OperationID: "Readyz",
		Summary:     "Readiness: 200 when every required check passes, 503 otherwise, naming each check.",
		Responses: openapi3.NewResponses(
			openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
				WithDescription("Ready.").WithJSONSchemaRef(&openapi3.SchemaRef{Ref: "#/components/schemas/Readiness"})}),
			openapi3.WithStatus(503, &openapi3.ResponseRef{Value: openapi3.NewResponse().
				WithDescription("Not ready: the failing checks say why.").WithJSONSchemaRef(&openapi3.SchemaRef{Ref: "#/components/schemas/Readiness"})}),
		),
	},
	"GET /metrics": {
		OperationID: "Metrics",
		Summary:     "Prometheus metrics, in the text exposition format.",
		Description: "With authentication configured, a bearer token with the admin role is needed.\n\nRoles: admin.",
		// Metrics name the system's internals and load: with
		// authentication on, only admins may scrape them.
		Security: &openapi3.SecurityRequirements{{bearer: []string{}}},
		Responses: openapi3.NewResponses(
			openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
				WithDescription("The metrics.").WithContent(openapi3.NewContentWithSchema(openapi3.NewStringSchema(), []string{"text/plain"}))}),
			openapi3.WithStatus(401, &openapi3.ResponseRef{Ref: "#/components/responses/Unauthenticated"}),
			openapi3.WithStatus(403, &openapi3.ResponseRef{Ref: "#/components/responses/PermissionDenied"}),
		),
	},
	"GET /openapi.json": {
		OperationID: "OpenAPI",
		Summary:     "This document: OpenAPI 3.",
		Responses: openapi3.NewResponses(openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("The OpenAPI 3 document.").WithJSONSchema(openapi3.NewObjectSchema())})),
	},
	"GET /openapi-v2.json": {
		OperationID: "OpenAPIv2",
		Summary:     "The same API as OpenAPI 2.0 (Swagger), as protoc-gen-openapiv2 generates it.",
		Responses: openapi3.NewResponses(openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("The OpenAPI 2.0 document.").WithJSONSchema(openapi3.NewObjectSchema())})),
	},
}

func addPublicRoutes(doc *openapi3.T) {
	doc.Tags = append(doc.Tags, &openapi3.Tag{Name: probesTag, Description: "Health, readiness, metrics and this document; no token needed, except for metrics with authentication on."})
	doc.Components.Schemas["Health"] = openapi3.NewObjectSchema().
		WithProperty("status", openapi3.NewStringSchema().WithEnum("ok")).NewRef()
	checks := openapi3.NewObjectSchema().WithAdditionalProperties(openapi3.NewStringSchema())
	checks.Description = `Each check's name and "ok", or why it failed.`
	info := openapi3.NewObjectSchema().WithAdditionalProperties(openapi3.NewStringSchema())
	info.Description = "Advisory checks: reported, never changing the status."
	doc.Components.Schemas["Readiness"] = openapi3.NewObjectSchema().
		WithProperty("status", openapi3.NewStringSchema().WithEnum("ready", "not ready", "starting")).
		WithProperty("checks", checks).
		WithProperty("info", info).NewRef()
	for _, route := range slices.Sorted(maps.Keys(PublicRoutes)) {
		method, path, _ := strings.Cut(route, " ")
		op := *PublicRoutes[route]
		op.Tags = []string{probesTag}
		if op.Security == nil {
			op.Security = &openapi3.SecurityRequirements{}
		}
		item := doc.Paths.Value(path)
		if item == nil {
			item = &openapi3.PathItem{}
			doc.Paths.Set(path, item)
		}
		item.SetOperation(method, &op)
	}
}

func ptr[T any](v T) *T { return &v }
