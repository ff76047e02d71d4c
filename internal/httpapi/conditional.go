package httpapi

import (
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// conditional serves r through next, evaluating If-None-Match, and
// If-Match on a read, against the ETag an answer carries (RFC 9110,
// section 13), without a handler made per request: a GET or HEAD whose 200
// answer has an ETag that If-None-Match names (weak comparison, or *) is
// 304 Not Modified, without a body; one whose If-Match names a revision
// the ETag is not (strong comparison) is 412. A command's If-Match is
// its expected revision (parseConventions). If-None-Match on a command is
// 412 when it is * (the order or collection a command acts on exists
// whenever the command could succeed; but on CreateOrder, which creates
// only what is absent), and 400 with entity tags: the
// revision an order will have is only known once the command has run;
// If-Match is the condition commands take. The 412 is answered in place
// of the call (conventionConn.unmet), not here: a request that no route
// takes, or that the services would refuse, gets that answer instead.
func conditional(w http.ResponseWriter, r *http.Request, conv *requestConventions, next http.Handler) {
	inm := r.Header.Values("If-None-Match")
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	star := strings.TrimSpace(strings.Join(inm, ",")) == "*"
	switch {
	case star && r.Method == http.MethodPost && routePath(r) == "/v1/orders":
		// "Create only if absent", which a create is: an order id that
		// exists is refused (409) or, retried, answered with its
		// original.
		next.ServeHTTP(w, r)
	case len(inm) > 0 && !read && star:
		conv.unmet = &runtime.HTTPStatusError{HTTPStatus: http.StatusPreconditionFailed,
			Err: status.Error(codes.FailedPrecondition, "If-None-Match: * and the resource exists")}
		next.ServeHTTP(w, r)
	case len(inm) > 0 && !read:
		writeStatus(w, r, http.StatusBadRequest, invalid("If-None-Match", "is evaluated on GET and HEAD only; a command takes If-Match"))
	case read && (len(inm) > 0 || conv.ifMatch):
		next.ServeHTTP(&conditionalWriter{ResponseWriter: w, r: r, noneMatch: inm, conv: conv}, r)
	default:
		next.ServeHTTP(w, r)
	}
}

// conditionalWriter answers a read's 200 with an ETag as its conditions
// say (see conditional); any other answer passes through.
type conditionalWriter struct {
	http.ResponseWriter
	r         *http.Request
	noneMatch []string // the If-None-Match values
	conv      *requestConventions
	wrote     bool // the status line was written
	skip      bool // the body is not sent (304, or 412 written here)
}

func (c *conditionalWriter) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote = true
	etag := c.Header().Get("ETag")
	switch {
	case code != http.StatusOK || etag == "":
	case c.conv.ifMatch && etag != c.conv.ifMatchTag:
		c.skip = true
		c.Header().Del("ETag")
		writeStatus(c.ResponseWriter, c.r, http.StatusPreconditionFailed, status.Errorf(codes.Aborted, "If-Match: the order's ETag is %s", etag))
		return
	case noneMatch(c.noneMatch, etag):
		c.skip = true
		for _, h := range []string{"Content-Type", "Content-Length"} {
			c.Header().Del(h)
		}
		c.ResponseWriter.WriteHeader(http.StatusNotModified)
		return
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *conditionalWriter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.skip {
		return len(b), nil
	}
	return c.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (c *conditionalWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// noneMatch reports whether If-None-Match values name etag by weak
// comparison (a W/ prefix ignored on either side), or are *.
func noneMatch(values []string, etag string) bool {
	opaque := strings.TrimPrefix(etag, "W/")
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || tag != "" && strings.TrimPrefix(tag, "W/") == opaque {
				return true
			}
		}
	}
	return false
}
