package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/orderstream/orderstream/api/openapi"
)

// routes are the REST API's route templates with the methods each answers,
// read from the API's OpenAPI document, which is generated from the same
// HTTP rules the gateway registers. They exist to answer a 405 with the
// Allow header HTTP requires of it: grpc-gateway knows a path has other
// methods, but does not say which.
type routes []route

type route struct {
	segs    []string // "v1", "orders", "{orderId}"
	verb    string   // "place" of "{orderId}:place"; "" for none
	methods []string
	streams []string // the methods whose answer is a stream
}

// apiRoutes are this API's routes, read from its OpenAPI document on the
// first 405 rather than at start-up: reading the document takes about a
// millisecond, and most processes never answer a 405.
var apiRoutes = sync.OnceValues(func() (routes, error) { return routesOf(openapi.Spec) })

// methodNames are the OpenAPI operation keys that are HTTP methods.
var methodNames = map[string]string{
	"get": http.MethodGet, "post": http.MethodPost, "put": http.MethodPut,
	"patch": http.MethodPatch, "delete": http.MethodDelete,
}

// routesOf reads the /v1 routes of an OpenAPI document. It fails on a
// document that is not JSON with a paths object.
func routesOf(spec []byte) (routes, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("gateway: read the OpenAPI document's paths: %w", err)
	}
	if doc.Paths == nil {
		return nil, fmt.Errorf("gateway: the OpenAPI document has no paths")
	}
	var rs routes
	for p, ops := range doc.Paths {
		if !strings.HasPrefix(p, "/v1/") {
			continue
		}
		r := route{segs: strings.Split(strings.TrimPrefix(p, "/"), "/")}
		last := r.segs[len(r.segs)-1]
		if i := strings.LastIndex(last, ":"); i > 0 {
			r.segs[len(r.segs)-1], r.verb = last[:i], last[i+1:]
		}
		for k, raw := range ops {
			m, ok := methodNames[k]
			if !ok {
				continue
			}
			r.methods = append(r.methods, m)
			var op struct {
				Responses map[string]struct {
					Content map[string]json.RawMessage `json:"content"`
				} `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("gateway: read the OpenAPI document's %s %s: %w", k, p, err)
			}
			if _, stream := op.Responses["200"].Content[ndjson]; stream {
				r.streams = append(r.streams, m)
			}
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// allow lists the methods the routes answer on path (as routePath gives
// it), sorted, matching as grpc-gateway does: a variable is one segment,
// empty or not, and a route with a verb takes it off the last segment,
// while one without keeps the last segment whole (so "/v1/orders/x:place"
// is also order "x:place" to GET).
func (rs routes) allow(path string) []string {
	comps := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var ms []string
	for _, r := range rs {
		if r.match(comps) {
			ms = append(ms, r.methods...)
		}
	}
	if rs.answersHead(path) {
		ms = append(ms, http.MethodHead)
	}
	slices.Sort(ms)
	return slices.Compact(ms)
}

// streams reports whether the route method takes on path (as routePath
// gives it) answers a stream.
func (rs routes) streams(method, path string) bool {
	comps := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, r := range rs {
		if slices.Contains(r.streams, method) && r.match(comps) {
			return true
		}
	}
	return false
}

// routePath is the path grpc-gateway matches routes on, in the escaping
// mode the gateway sets: the path as sent when it holds escapes, so that
// a %2F stays within its segment.
func routePath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// headAsGet reports whether the route answers HEAD as its GET without
// the body (RFC 9110 requires HEAD of every resource that answers GET). A
// stream does not: its headers come once the service starts it, and a
// watch never ends by itself, so a HEAD would hold the connection.
func (r route) headAsGet() bool {
	return slices.Contains(r.methods, http.MethodGet) && !slices.Contains(r.streams, http.MethodGet)
}

// head answers HEAD on the routes that have one (headAsGet) as GET: the
// server drops what the handler writes to a HEAD request's body, and keeps
// its status and headers (ETag, Content-Type). Anything else, and every
// request when the routes cannot be read, goes to next as sent (a HEAD
// then gets the 405 naming the path's methods).
func head(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			if rs, err := apiRoutes(); err == nil && rs.answersHead(routePath(r)) {
				r = r.Clone(r.Context())
				r.Method = http.MethodGet
			}
		}
		next.ServeHTTP(w, r)
	})
}

// answersHead reports whether a route on path (as routePath gives it)
// answers HEAD. A path two routes match (GET of order "x:place" and POST
// of its place) answers HEAD when the one with the GET does, unless a
// GET there is a stream: grpc-gateway routes "/v1/orders/x:watch" to the
// watch, though GET of order "x:watch" matches it too.
func (rs routes) answersHead(path string) bool {
	if rs.streams(http.MethodGet, path) {
		return false
	}
	comps := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for _, r := range rs {
		if r.headAsGet() && r.match(comps) {
			return true
		}
	}
	return false
}

func (r route) match(comps []string) bool {
	if len(comps) != len(r.segs) {
		return false
	}
	for i, s := range r.segs {
		c := comps[i]
		if i == len(comps)-1 && r.verb != "" {
			v := ":" + r.verb
			if len(c) <= len(v) || !strings.HasSuffix(c, v) {
				return false
			}
			c = c[:len(c)-len(v)]
		}
		if !strings.HasPrefix(s, "{") && s != c {
			return false
		}
	}
	return true
}
