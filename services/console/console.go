// Package console serves the operations console: HTML pages under /console/
// for support staff, operators and auditors, rendered on the server with
// html/template and made live by a small embedded script (no build step).
//
// The console holds no data and has no path of its own into it: every page
// is made of calls to the same gRPC services every other client uses, over
// the same connections as the REST gateway, carrying the signed-in user's
// bearer token. Authentication, authorisation, limits and tracing are
// therefore the services' interceptors' business; the console only decides
// what to show from the token's roles (a clerk sees command buttons, a viewer
// does not), and a call the token's roles do not allow is refused by the
// service and answered 403 here.
//
// # Sessions
//
// The bearer token is entered once on the sign-in page and kept in an
// HttpOnly, SameSite=Strict session cookie scoped to /console/ (Secure when
// served over TLS). A cookie rather than the browser's session storage,
// because then the token is never readable by script (an injected script
// could not exfiltrate it), plain links and downloads carry it without
// script, and no server-side session state is needed, so any replica serves
// any request. The cookie holds the token base64url-encoded, since a token
// may hold bytes a cookie value cannot (';', '"', '\'); a token that is not
// printable ASCII is refused at sign-in, as no call to the services could
// carry it. The cookie has no expiry: it ends with the browser session,
// or with "Sign out". An expired JWT sends the user back to the sign-in page.
// After signing in without a page to return to, and at /console/, the user
// lands on the first page the token's roles allow: the orders, else (an
// auditor only) the audit log.
// Without authentication configured there is no sign-in; the cookie then
// holds a random value that only anchors the CSRF token.
//
// # Browser security
//
// Every response carries a Content-Security-Policy allowing scripts, styles
// and connections from the console's own origin only (no inline script or
// style), forbids framing, and is not cached. Every state-changing request
// is a POST that must carry a CSRF token (an HMAC of the session cookie
// keyed by a random value in a cookie of its own, so it needs no storage,
// cannot be forged without the cookies, and tells nothing of the bearer
// token to whoever sees a page) and pass
// net/http's cross-origin protection (Sec-Fetch-Site/Origin). Everything
// shown is escaped by html/template.
package console

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/auth"
	"github.com/orderstream/orderstream/internal/client"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

// Authenticator tells who a token speaks for; *auth.Authenticator is one.
// It only decides what the console shows: the services authorise each call
// themselves.
type Authenticator interface {
	Authenticate(token string) (auth.Principal, error)
}

// Config is what the console needs.
type Config struct {
	// Command, Query, Audit and Payments reach the services of those
	// roles, as the gateway does: the admin service over Query, the
	// payment and deadline admin services over Payments.
	Command, Query, Audit, Payments grpc.ClientConnInterface
	// QueryAdmin and PaymentsAdmin, when set, carry the admin service
	// (the projection's status, rebuilds) and the payment admin service
	// (parked jobs) instead of Query and Payments: their answers are one
	// node's, so a front end sends them all to one node of each (see
	// client.Pinned) rather than round the replicas.
	QueryAdmin, PaymentsAdmin grpc.ClientConnInterface
	// Auth verifies tokens at sign-in and on every request; nil means
	// authentication is off and everyone may see everything.
	Auth Authenticator
	// TraceUIURL links trace ids to a tracing UI: "{trace_id}" in it is
	// replaced by the id, otherwise "/trace/<id>" is appended. Empty: no
	// links.
	TraceUIURL string
	// SecureCookies marks the session cookie Secure (served over TLS).
	SecureCookies bool
	// Logger receives errors the user is not shown in detail.
	Logger *slog.Logger
	// FormTimeout bounds reading a post's form; 0 means
	// DefaultFormTimeout.
	FormTimeout time.Duration
	// Heartbeat is how often an idle live stream gets a comment line; 0
	// means DefaultHeartbeat.
	Heartbeat time.Duration
	// WriteTimeout bounds how long one write of a live stream may wait
	// on a browser that takes nothing (its connection open, its window
	// full): past it the stream ends, its watch with it. 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// CallTimeout bounds the service calls one page makes (not its live
	// streams, exports, verifications or rebuilds, which last as long as
	// their work): a service that hangs gets the user an "unavailable"
	// page instead of a browser left waiting. 0 means DefaultCallTimeout.
	CallTimeout time.Duration
}

// DefaultHeartbeat is how often an idle live stream gets a comment line
// unless Config says otherwise, as the REST gateway's streams do: often
// enough that no proxy's idle timeout cuts it.
const DefaultHeartbeat = 15 * time.Second

// DefaultFormTimeout bounds reading a post's form unless Config says
// otherwise: what the REST gateway allows a request body.
const DefaultFormTimeout = 30 * time.Second

// DefaultWriteTimeout bounds one write of a live stream unless Config
// says otherwise.
const DefaultWriteTimeout = 30 * time.Second

// DefaultCallTimeout bounds the service calls of one page unless Config
// says otherwise: shorter than the 60 s a reverse proxy commonly waits
// for an answer, so that the user is told the service is unavailable
// rather than shown the proxy's gateway timeout.
const DefaultCallTimeout = 30 * time.Second

// Console is the console's HTTP handler.
type Console struct {
	cmd     ordersv1.OrderCommandServiceClient
	query   ordersv1.OrderQueryServiceClient
	admin   ordersv1.OrderAdminServiceClient
	audit   ordersv1.OrderAuditServiceClient
	pay     ordersv1.PaymentAdminServiceClient
	dl      ordersv1.DeadlineAdminServiceClient
	health  []healthTarget
	auth    Authenticator
	traceUI string
	secure  bool
	log     *slog.Logger
	pages   *templates
	formTTL time.Duration
	// heartbeat is how often an idle live stream gets a comment line.
	heartbeat time.Duration
	// writeTimeout bounds one write of a live stream.
	writeTimeout time.Duration
	// callTimeout bounds the service calls of one page.
	callTimeout time.Duration
	handler     http.Handler
	// done is closed by Shutdown, ending the live streams.
	done     chan struct{}
	shutdown sync.Once
	// streams are the open streams of each session, by browser (its
	// CSRF token: see liveContext), which its sign-out ends.
	streams sessionStreams
}

// healthTarget is one gRPC service whose health the operations page shows.
type healthTarget struct {
	service string
	client  healthpb.HealthClient
}

// New returns the console. It fails when a connection is missing,
// TraceUIURL is not an http(s) URL, or a duration is negative.
func New(cfg Config) (*Console, error) {
	if cfg.Command == nil || cfg.Query == nil || cfg.Audit == nil || cfg.Payments == nil {
		return nil, errors.New("console: the command, query, audit and payments connections are required")
	}
	if cfg.Heartbeat < 0 || cfg.FormTimeout < 0 || cfg.WriteTimeout < 0 || cfg.CallTimeout < 0 {
		return nil, errors.New("console: the heartbeat and the form, write and call timeouts must not be negative")
	}
	if cfg.TraceUIURL != "" {
		u, err := url.Parse(cfg.TraceUIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("console: trace UI URL %q is not an http or https URL", cfg.TraceUIURL)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	pages, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	queryAdmin := cmp.Or[grpc.ClientConnInterface](cfg.QueryAdmin, cfg.Query)
	paymentsAdmin := cmp.Or[grpc.ClientConnInterface](cfg.PaymentsAdmin, cfg.Payments)
	c := &Console{
		cmd:          ordersv1.NewOrderCommandServiceClient(cfg.Command),
		query:        ordersv1.NewOrderQueryServiceClient(cfg.Query),
		admin:        ordersv1.NewOrderAdminServiceClient(queryAdmin),
		audit:        ordersv1.NewOrderAuditServiceClient(cfg.Audit),
		pay:          ordersv1.NewPaymentAdminServiceClient(paymentsAdmin),
		dl:           ordersv1.NewDeadlineAdminServiceClient(cfg.Payments),
		auth:         cfg.Auth,
		traceUI:      cfg.TraceUIURL,
		secure:       cfg.SecureCookies,
		log:          log,
		pages:        pages,
		formTTL:      cmp.Or(cfg.FormTimeout, DefaultFormTimeout),
		heartbeat:    cmp.Or(cfg.Heartbeat, DefaultHeartbeat),
		writeTimeout: cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout),
		callTimeout:  cmp.Or(cfg.CallTimeout, DefaultCallTimeout),
		done:         make(chan struct{}),
	}
	for _, t := range []struct {
		desc grpc.ServiceDesc
		conn grpc.ClientConnInterface
	}{
		{ordersv1.OrderCommandService_ServiceDesc, cfg.Command},
		{ordersv1.OrderQueryService_ServiceDesc, cfg.Query},
		{ordersv1.OrderAdminService_ServiceDesc, queryAdmin},
		{ordersv1.OrderAuditService_ServiceDesc, cfg.Audit},
		{ordersv1.PaymentAdminService_ServiceDesc, paymentsAdmin},
		{ordersv1.DeadlineAdminService_ServiceDesc, cfg.Payments},
	} {
		c.health = append(c.health, healthTarget{t.desc.ServiceName, healthpb.NewHealthClient(t.conn)})
	}
	c.handler = c.routes()
	return c, nil
}

// Shutdown ends the pages' live streams (which otherwise last as long as
// the page is open), and the verify, export and rebuild streams (as long as
// the work), so that the HTTP server's shutdown need not wait for them; the
// browser reconnects to another replica or once this one is back.
func (c *Console) Shutdown() { c.shutdown.Do(func() { close(c.done) }) }

// ServeHTTP serves the console's pages, fragments and assets under Prefix.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	c.handler.ServeHTTP(w, r)
}

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", staticFiles()))
	mux.HandleFunc("GET /console/login", c.loginPage)
	mux.HandleFunc("POST /console/login", c.login)
	mux.HandleFunc("POST /console/logout", c.logout)
	in := func(need func(user) bool, h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
		return c.withSession(need, h)
	}
	mux.Handle("GET /console/{$}", in(user.signedIn, func(w http.ResponseWriter, r *http.Request, s *session) {
		http.Redirect(w, r, s.home(), http.StatusSeeOther)
	}))
	mux.Handle("GET /console/orders", in(user.canRead, c.ordersPage))
	// Not under /console/orders/: "events" is an order id as good as any.
	mux.Handle("GET /console/live/orders", in(user.canRead, c.ordersEvents))
	mux.Handle("GET /console/orders/{id}", in(user.canSeeOrder, c.orderPage))
	mux.Handle("GET /console/orders/{id}/events", in(user.canRead, c.orderEvents))
	mux.Handle("GET /console/orders/{id}/timeline", in(user.canAudit, c.orderTimeline))
	// Commands are not gated on the role here: the command service
	// refuses a token without the clerk role, and that refusal is what
	// the user sees (403).
	mux.Handle("POST /console/orders/{id}/{command}", in(user.signedIn, c.orderCommand))
	// A refused command's answer is the order's page at the command's
	// address: reloaded, reached again after signing in (the page's
	// script sends its own address as next), or checked by that script
	// for a session that ended, the address leads to the order.
	mux.Handle("GET /console/orders/{id}/{command}", in(user.canSeeOrder, func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, Prefix+"orders/"+url.PathEscape(r.PathValue("id")), http.StatusSeeOther)
	}))
	mux.Handle("GET /console/operations", in(user.canAdmin, c.opsPage))
	mux.Handle("GET /console/operations/projection", in(user.canAdmin, c.opsProjection))
	mux.Handle("POST /console/operations/rebuild", in(user.signedIn, c.rebuild))
	mux.Handle("POST /console/operations/parked/retry", in(user.signedIn, c.retryParked))
	mux.Handle("POST /console/operations/parked/settle", in(user.signedIn, c.settleParked))
	mux.Handle("GET /console/audit", in(user.canAudit, c.auditPage))
	mux.Handle("GET /console/audit/verify", in(user.canAudit, c.verifyLog))
	mux.Handle("GET /console/audit/export", in(user.canAudit, c.export))
	mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	return http.NewCrossOriginProtection().Handler(noStore(c.readForm(mux)))
}

// readForm reads a post's form before any handler does: at most maxForm
// bytes, within the form timeout, so that a client trickling a body cannot
// hold a handler and its connection for as long as it likes. A body not
// received in time is answered 408, one too large 413, and the connection
// closes: after a failed read the deadline is left past, or net/http would
// wait for the rest of the body before closing it. A body of another type
// is read (and dropped) under the same bounds. A form that is read but
// does not parse is the handler's to refuse.
func (c *Console) readForm(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(c.formTTL))
		perr := r.ParseForm()
		// What ParseForm leaves (a body of another type than a
		// urlencoded form, which no console form is) is read here under
		// the same bounds, or net/http would read it after the answer
		// without them.
		_, rerr := io.Copy(io.Discard, r.Body)
		var tooLarge *http.MaxBytesError
		code, msg := 0, ""
		switch {
		case errors.Is(perr, os.ErrDeadlineExceeded) || errors.Is(rerr, os.ErrDeadlineExceeded):
			code, msg = http.StatusRequestTimeout, "The form was not received in time: try again."
		case errors.As(perr, &tooLarge) || errors.As(rerr, &tooLarge):
			code, msg = http.StatusRequestEntityTooLarge, "The form is too large."
		case rerr != nil:
			code, msg = http.StatusBadRequest, "The form could not be read: try again."
		}
		if code != 0 {
			_ = rc.SetReadDeadline(time.Now()) // nothing more of the body is read
			c.errorPage(w, r, nil, code, msg)
			return
		}
		_ = rc.SetReadDeadline(time.Time{})
		next.ServeHTTP(w, r)
	})
}

// noStore keeps pages, which hold personal data, out of caches; the
// embedded assets may be cached.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/console/static/") {
			w.Header().Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// cookieName is the session cookie; it holds the bearer token.
const cookieName = "orderstream_console"

// csrfCookieName is the cookie that keys the session's CSRF token: a
// random value, set at sign-in (and whenever a request comes without it),
// HttpOnly like the session's. A token keyed by the session cookie alone
// would let whoever sees one page (its CSRF token is in every form, in
// saved pages and HAR files) test guesses of the bearer token offline.
const csrfCookieName = "orderstream_console_csrf"

// user is who is signed in, as far as the console's display goes.
type user struct {
	Subject string
	// AuthOff: authentication is not configured; there is no sign-in.
	AuthOff bool
	p       auth.Principal
}

func (u user) signedIn() bool    { return true }
func (u user) has(r string) bool { return u.AuthOff || u.p.Has(r) }

// CanCommand reports whether the user's roles allow commands.
func (u user) CanCommand() bool { return u.has(auth.Clerk) }

// CanRead reports whether the user's roles allow queries of the read model.
func (u user) CanRead() bool { return u.has(auth.Viewer) || u.has(auth.Clerk) }

// CanAudit reports whether the user's roles allow the audit log.
func (u user) CanAudit() bool { return u.has(auth.Auditor) }

// CanAdmin reports whether the user's roles allow operations.
func (u user) CanAdmin() bool { return u.has(auth.Admin) }

// Roles lists the user's roles for display.
func (u user) Roles() string {
	if u.AuthOff {
		return "authentication off"
	}
	return strings.Join(u.p.Roles, ", ")
}

// home is the first page the user's roles allow: the orders (viewer,
// clerk, admin), else the audit log (auditor). A user with none of those
// roles is sent to the orders, which refuses them (403) saying why.
func (u user) home() string {
	if !u.CanRead() && u.CanAudit() {
		return Prefix + "audit"
	}
	return Prefix + "orders"
}

func (u user) canRead() bool     { return u.CanRead() }
func (u user) canAudit() bool    { return u.CanAudit() }
func (u user) canAdmin() bool    { return u.CanAdmin() }
func (u user) canSeeOrder() bool { return u.CanRead() || u.CanAudit() }

// session is one request's signed-in user, with the contexts its gRPC
// calls use (carrying the token) and its CSRF token.
type session struct {
	user
	// ctx is the page's calls': the request's, ended after the
	// console's call timeout.
	ctx context.Context
	// streamCtx is the request's, for calls that last as long as their
	// work (liveContext).
	streamCtx context.Context
	csrf      string
	// csrfBefore: the browser came without a CSRF cookie (see csrfOK).
	csrfBefore bool
	key        string // the session cookie's value
}

// staleForm is what a post without the session's CSRF token is told.
const staleForm = "The form was stale or did not come from this console: reload the page and try again."

// csrfOK reports whether a post carries want, the CSRF token of the
// session whose cookie holds cookie (csrfToken; "" for none), in the X-CSRF-Token
// header (the live pages' scripts) or the form's csrf field (read by
// readForm). With before, from a browser that has no CSRF cookie yet, the
// token a console from before the cookie made from the session cookie
// alone is taken too: a cross-site page cannot make it either, and a
// browser signed in before an upgrade keeps its open pages until its
// first post sets the cookie (after which, as after a sign-out, no such
// token is taken).
func csrfOK(r *http.Request, want, cookie string, before bool) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return want != "" && hmac.Equal([]byte(got), []byte(want)) ||
		before && hmac.Equal([]byte(got), []byte(csrfTokenBefore(cookie)))
}

// withSession resolves the session cookie into a session, or sends the
// browser to sign in; it checks the CSRF token of every POST, and refuses
// (403) a page the user's roles cannot use.
func (c *Console) withSession(need func(user) bool, h func(http.ResponseWriter, *http.Request, *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.session(w, r)
		if !ok {
			c.toLogin(w, r, "")
			return
		}
		if r.Method == http.MethodPost && !csrfOK(r, s.csrf, s.key, s.csrfBefore) {
			c.errorPage(w, r, s, http.StatusForbidden, staleForm)
			return
		}
		if !need(s.user) {
			c.errorPage(w, r, s, http.StatusForbidden, "Your roles do not allow this page.")
			return
		}
		if !utf8Request(r) {
			c.errorPage(w, r, s, http.StatusBadRequest, "Not accepted: the address or the form is not valid UTF-8.")
			return
		}
		ctx, cancel := context.WithTimeout(s.streamCtx, c.callTimeout)
		defer cancel()
		s.ctx = ctx
		h(w, r, s)
	})
}

// utf8Request reports whether the request's path and its form (query and
// body) are valid UTF-8. What the console takes from them goes into gRPC
// requests, whose strings must be: the client refuses to encode one that is
// not, with INTERNAL, which would read as the server's fault. A post's
// body was read, bounded, by readForm.
func utf8Request(r *http.Request) bool {
	if !utf8.ValidString(r.URL.Path) {
		return false
	}
	_ = r.ParseForm() // a form that does not parse is the handler's to refuse
	for k, vs := range r.Form {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// maxForm bounds a form body: the largest form (ship) holds two short
// fields.
const maxForm = 64 << 10

// session returns the request's session; false when the user must sign in.
func (c *Console) session(w http.ResponseWriter, r *http.Request) (*session, bool) {
	ck, err := r.Cookie(cookieName)
	if c.auth == nil {
		if err != nil || ck.Value == "" {
			// Only the CSRF token hangs on this value.
			ck = &http.Cookie{Value: rand.Text()}
			c.setCookie(w, ck.Value)
		}
		return c.newSession(w, r, user{Subject: "anonymous", AuthOff: true}, r.Context(), ck.Value), true
	}
	if err != nil || ck.Value == "" {
		return nil, false
	}
	token := cookieToken(ck.Value)
	p, err := c.auth.Authenticate(token)
	if err != nil {
		return nil, false
	}
	ctx := metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+token)
	return c.newSession(w, r, user{Subject: p.Subject, p: p}, ctx, ck.Value), true
}

// newSession is the session of u, whose cookie holds cookie, with its CSRF
// token.
func (c *Console) newSession(w http.ResponseWriter, r *http.Request, u user, ctx context.Context, cookie string) *session {
	before := !hasCookie(r, csrfCookieName)
	key := c.csrfKey(w, r)
	csrf := csrfToken(key, cookie)
	return &session{user: u, streamCtx: ctx, csrf: csrf, csrfBefore: before, key: cookie}
}

// csrfToken derives the CSRF token from the CSRF cookie's key and the
// session cookie: a cross-site page can neither read the cookies nor
// compute this from anything it sees, and one who sees the token learns
// nothing of the session cookie's bearer token without the key.
func csrfToken(key, cookie string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfTokenBefore is the CSRF token of a console from before the CSRF
// cookie, made from the session cookie alone (see csrfOK).
func csrfTokenBefore(cookie string) string { return csrfToken(cookie, "orderstream console csrf") }

// csrfKey returns the request's CSRF cookie, setting a new one on w when
// the request has none: a post without it carries no token that can match,
// and is refused as a stale form, whose answer sets it.
func (c *Console) csrfKey(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookieName); err == nil && ck.Value != "" {
		return ck.Value
	}
	key := rand.Text()
	c.setNamedCookie(w, csrfCookieName, key)
	// Later calls for the same request (a stale form's page) see it.
	r.AddCookie(&http.Cookie{Name: csrfCookieName, Value: key})
	return key
}

// encodedCookie starts a session cookie that holds the token
// base64url-encoded (cookieValue); a cookie without it is of a console from
// before tokens were encoded, and holds the token itself.
const encodedCookie = "b64."

// cookieValue is the session cookie's value for token: the token itself
// when a cookie value may hold each of its bytes (a JWT, a token of letters
// and digits), else encoded, since a token may hold bytes a cookie value
// cannot (';', '"', '\', non-ASCII), which http.SetCookie would silently
// drop, leaving a cookie that no longer signs in. Not encoding what needs
// none keeps a JWT's cookie a third shorter: browsers keep no cookie over
// maxCookie bytes, and encoded, a JWT of 3 KB (an identity provider's, with
// groups) was dropped, and every page sent its user back to sign in.
func cookieValue(token string) string {
	if !strings.HasPrefix(token, encodedCookie) && !strings.ContainsFunc(token, func(r rune) bool { return !cookieOctet(r) }) {
		return token
	}
	return encodedCookie + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// cookieOctet reports whether a cookie value may hold r (RFC 6265's
// cookie-octet).
func cookieOctet(r rune) bool {
	return r > ' ' && r < 0x7f && r != '"' && r != ',' && r != ';' && r != '\\'
}

// maxCookie is the most bytes of a cookie's name and value browsers keep
// (RFC 6265 asks them for at least 4,096; that is what they keep).
const maxCookie = 4096

// cookieToken is the token a session cookie's value holds.
func cookieToken(value string) string {
	if enc, ok := strings.CutPrefix(value, encodedCookie); ok {
		if b, err := base64.RawURLEncoding.DecodeString(enc); err == nil {
			return string(b)
		}
	}
	return value
}

// hasCookie reports whether r carries a cookie name with a value.
func hasCookie(r *http.Request, name string) bool {
	ck, err := r.Cookie(name)
	return err == nil && ck.Value != ""
}

// setCookie sets the session cookie to value as it is ("": clears it).
func (c *Console) setCookie(w http.ResponseWriter, value string) {
	c.setNamedCookie(w, cookieName, value)
}

// setNamedCookie sets the console's cookie name to value ("": clears it).
func (c *Console) setNamedCookie(w http.ResponseWriter, name, value string) {
	ck := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode}
	if value == "" {
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

// toLogin sends a page request to the sign-in page and answers 401 to the
// script's requests (X-Console), which then do the same. A form post comes
// back to the page it was sent from (its same-origin Referer), or to the
// console's first page: the post itself cannot be followed.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, reason string) {
	if r.Header.Get("X-Console") != "" {
		http.Error(w, "sign in again", http.StatusUnauthorized)
		return
	}
	next := r.URL.RequestURI()
	if r.Method != http.MethodGet {
		next = Prefix
		if ref, err := url.Parse(r.Referer()); err == nil && ref.Host == r.Host {
			next = safeNext(ref.RequestURI())
		}
	}
	q := url.Values{"next": {next}}
	if reason != "" {
		q.Set("reason", reason)
	}
	http.Redirect(w, r, Prefix+"login?"+q.Encode(), http.StatusSeeOther)
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.auth == nil {
		http.Redirect(w, r, Prefix+"orders", http.StatusSeeOther)
		return
	}
	msg := ""
	if r.URL.Query().Get("reason") == "expired" {
		msg = "Your token was refused (expired or revoked): sign in again."
	}
	c.render(w, http.StatusOK, "login", &view{Title: "Sign in", Flash: flashError(msg), Data: loginData{Next: safeNext(r.URL.Query().Get("next"))}})
}

type loginData struct{ Next string }

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if c.auth == nil {
		http.Redirect(w, r, Prefix+"orders", http.StatusSeeOther)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	p, err := c.auth.Authenticate(token)
	if token == "" || err != nil {
		c.render(w, http.StatusUnauthorized, "login", &view{Title: "Sign in", Flash: flashError("That token is not valid."), Data: loginData{Next: next}})
		return
	}
	if !client.Sendable(token) { // the Authorization header of every call
		c.render(w, http.StatusBadRequest, "login", &view{Title: "Sign in", Data: loginData{Next: next},
			Flash: flashError("That token holds characters other than printable ASCII, which no call to the services can carry: ask for another token.")})
		return
	}
	value := cookieValue(token)
	if len(cookieName)+1+len(value) > maxCookie {
		c.render(w, http.StatusBadRequest, "login", &view{Title: "Sign in", Data: loginData{Next: next},
			Flash: flashError(fmt.Sprintf("That token is too long for a browser to keep (%d bytes, a browser keeps a cookie of at most %d): ask for a shorter one, or call the API with it.", len(token), maxCookie))})
		return
	}
	c.setCookie(w, value)
	// A new key at a sign-in with another token (the CSRF token of the
	// session before is good for nothing after), but not with the same
	// one: each tab of a browser whose token expired signs in again, and
	// the pages of those that did first keep their forms.
	if old, err := r.Cookie(cookieName); err != nil || old.Value != value || !hasCookie(r, csrfCookieName) {
		c.setNamedCookie(w, csrfCookieName, rand.Text())
	}
	if next == Prefix {
		next = user{Subject: p.Subject, p: p}.home()
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session. Like every other form post it needs the
// session's CSRF token, though not a session that still authenticates: a
// user whose token expired signs out all the same.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(cookieName)
	key, kerr := r.Cookie(csrfCookieName)
	if err == nil && ck.Value != "" {
		want := "" // without a key, only an older console's page's token can match
		if kerr == nil && key.Value != "" {
			want = csrfToken(key.Value, ck.Value)
		}
		if !csrfOK(r, want, ck.Value, kerr != nil) {
			http.Error(w, staleForm, http.StatusForbidden)
			return
		}
		// The session's pages in other tabs stop receiving (their live
		// updates, an export): their streams carry the token. Those of
		// another browser signed in with the same token go on: they
		// are keyed by that browser's CSRF token (liveContext).
		if want != "" {
			c.streams.end(want)
		}
	}
	c.setCookie(w, "")
	c.setNamedCookie(w, csrfCookieName, "")
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// safeNext keeps a post-sign-in redirect inside the console; anything
// else becomes the console's root, which sign-in turns into the user's
// first page (user.home).
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}
