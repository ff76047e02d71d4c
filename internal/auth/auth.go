// Package auth authenticates bearer tokens on gRPC calls and authorises
// them by role.
//
// Tokens are either static (a file of "<token> <subject> <role>[,<role>…]"
// lines, '#' starts a comment) or JWTs signed with an HMAC secret (HS256,
// HS384, HS512, each only with a secret as long as its hash) or by a key of
// a JWKS file (RS, PS and ES 256/384/512, EdDSA, chosen by the token's
// "kid"; the file is read again when it changes, see jwksRecheck). A JWT must carry "sub" and may carry "exp"/"nbf", which are
// enforced with Leeway, and "roles" (a list of role names). A stream that
// carries orders (a watch, an export) is held to its token's "exp" too: it
// ends with UNAUTHENTICATED once the token expires, as its calls would be
// refused. A rebuild of the read model and a verification of the whole log,
// operations that end on their own and carry no order's data, run to their
// end.
//
// Roles: clerk (OrderCommandService, and OrderQueryService so that a clerk
// can see the orders they change), viewer (OrderQueryService), auditor
// (OrderAuditService), admin (OrderAdminService, PaymentAdminService,
// DeadlineAdminService, and
// everything else). Reflection needs a valid token of any role, so that
// anonymous callers cannot list the API; health checks need no token.
//
// The authenticated subject replaces any x-actor metadata, so the actor
// recorded in events is who the token says, not what a client claims.
package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Roles.
const (
	Clerk   = "clerk"
	Viewer  = "viewer"
	Auditor = "auditor"
	Admin   = "admin"
)

// ErrUnauthenticated reports a missing, unknown, malformed or expired token.
var ErrUnauthenticated = errors.New("auth: invalid token")

// ErrUnrecordableSubject reports a token otherwise valid whose subject
// cannot be recorded as the actor of the changes it makes (see
// Recordable; nor blank, nor with surrounding whitespace). It wraps
// ErrUnauthenticated: such a token is invalid wherever it is presented.
var ErrUnrecordableSubject = fmt.Errorf("%w: its subject cannot be recorded as the actor", ErrUnauthenticated)

// Principal is who a token speaks for.
type Principal struct {
	Subject string
	Roles   []string
	// Expires is when the token stops being accepted (its "exp" plus
	// Leeway); zero for a token that does not expire (a static one, a JWT
	// without "exp").
	Expires time.Time
}

// Leeway is how far past its "exp" (and before its "nbf") a JWT is still
// accepted, for clocks that differ between the issuer and this server.
const Leeway = 30 * time.Second

// Has reports whether p holds role (admin holds every role).
func (p Principal) Has(role string) bool {
	return slices.Contains(p.Roles, role) || slices.Contains(p.Roles, Admin)
}

// Authenticator verifies tokens.
type Authenticator struct {
	// static is keyed by the tokens' SHA-256: a look-up compares
	// digests, which tell a caller timing it nothing of a token.
	static map[[sha256.Size]byte]Principal
	hmac   []byte
	jwks   *jwksFile
	// expected holds the issuer and audience a JWT must name, when set.
	expected jwt.Expected
	now      func() time.Time
}

// Config names the token sources; empty fields are unused.
type Config struct {
	TokensFile     string // AUTH_TOKENS_FILE
	HMACSecretFile string // AUTH_JWT_HMAC_SECRET_FILE
	JWKSFile       string // AUTH_JWKS_FILE
	// Issuer and Audience, when set, are what a JWT's iss must equal and
	// its aud must contain: a signing key or JWKS shared with other
	// services then does not make their tokens good here.
	Issuer   string // AUTH_JWT_ISSUER
	Audience string // AUTH_JWT_AUDIENCE
}

// Load builds an Authenticator, or returns nil when no source is
// configured (authentication off). Errors name the variable; an issuer or
// audience without a JWT source is one, since it would check nothing.
func Load(c Config) (*Authenticator, error) {
	if c == (Config{}) {
		return nil, nil
	}
	if noJWT := c.HMACSecretFile == "" && c.JWKSFile == ""; noJWT && c.Issuer != "" {
		return nil, errors.New("AUTH_JWT_ISSUER: set without AUTH_JWT_HMAC_SECRET_FILE or AUTH_JWKS_FILE, no JWT is accepted for it to check")
	} else if noJWT && c.Audience != "" {
		return nil, errors.New("AUTH_JWT_AUDIENCE: set without AUTH_JWT_HMAC_SECRET_FILE or AUTH_JWKS_FILE, no JWT is accepted for it to check")
	}
	a := &Authenticator{static: map[[sha256.Size]byte]Principal{}, now: time.Now, expected: jwt.Expected{Issuer: c.Issuer}}
	if c.Audience != "" {
		a.expected.AnyAudience = jwt.Audience{c.Audience}
	}
	if c.TokensFile != "" {
		if err := a.loadTokens(c.TokensFile); err != nil {
			return nil, fmt.Errorf("AUTH_TOKENS_FILE: %w", err)
		}
	}
	if c.HMACSecretFile != "" {
		b, err := os.ReadFile(c.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("AUTH_JWT_HMAC_SECRET_FILE: %w", err)
		}
		// The file's bytes are the secret, but for a text file's line
		// end: a secret of random bytes may begin or end with bytes
		// that look like whitespace, and trimmed, tokens signed with
		// the whole secret were refused.
		a.hmac = lineEndTrimmed(b)
		if len(a.hmac) < 32 {
			return nil, errors.New("AUTH_JWT_HMAC_SECRET_FILE: the secret must be at least 32 bytes")
		}
	}
	if c.JWKSFile != "" {
		a.jwks = &jwksFile{path: c.JWKSFile, now: a.clock}
		if err := a.jwks.load(); err != nil {
			return nil, fmt.Errorf("AUTH_JWKS_FILE: %w", err)
		}
	}
	return a, nil
}

// clock is a.now, read at each call, so that a test may set it after Load.
func (a *Authenticator) clock() time.Time { return a.now() }

// jwksRecheck is how often the JWKS file is looked at again (its size and
// modification time; read again when they changed): a key the issuer
// removed (revoked) stops verifying tokens within it, without a restart.
// A token whose kid the keys lack looks at once, so a key added for a
// rotation verifies tokens as soon as the file holds it.
const jwksRecheck = 10 * time.Second

// jwksFile is the JWKS of AUTH_JWKS_FILE, read again when the file
// changes (see jwksRecheck). A file that no longer reads as a JWKS of
// public keys (one being written, or broken) leaves the keys read before
// in use, and is read again once it changes.
type jwksFile struct {
	path string
	now  func() time.Time
	keys atomic.Pointer[jose.JSONWebKeySet]
	mu   sync.Mutex // one look at the file at a time; the others go on
	// checked, size and mtime (guarded by mu) are when the file was last
	// looked at and what it was then.
	checked time.Time
	size    int64
	mtime   time.Time
}

// load reads the file, refusing what is no JWKS of public keys. The size
// and modification time it records, of the file it read (one open file,
// so a file replaced meanwhile is not taken for the one read), are
// recorded whether or not it read as a JWKS: a broken file is read again
// only once it changes, not for every token whose kid the keys lack.
func (f *jwksFile) load() error {
	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	f.checked, f.size, f.mtime = f.now(), fi.Size(), fi.ModTime()
	b, err := io.ReadAll(file)
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := jsonUnmarshal(b, &set); err != nil || len(set.Keys) == 0 {
		return fmt.Errorf("not a JWKS with keys: %v", err)
	}
	// A key without a public part (a symmetric "oct" key) verifies no
	// token here, whose every use it would refuse.
	signs := false
	for i, k := range set.Keys {
		if k.Public().Key == nil {
			return fmt.Errorf("key %d (kid %q) is not a public key: a shared secret goes in AUTH_JWT_HMAC_SECRET_FILE", i, k.KeyID)
		}
		signs = signs || k.Use != "enc"
	}
	if !signs {
		// Every token would be refused, by a node that reports ready.
		return errors.New(`no key for signatures: every key is "use": "enc"`)
	}
	f.keys.Store(&set)
	return nil
}

// key returns the keys of kid, looking at the file again first when the
// last look is jwksRecheck old, the keys have none of kid, or look is set.
// While another call looks, a call with keys of kid goes on with them; one
// without waits its turn to look, as the file may hold the key it needs.
func (f *jwksFile) key(kid string, look bool) []jose.JSONWebKey {
	keys := f.keys.Load().Key(kid)
	if !f.mu.TryLock() {
		if len(keys) > 0 {
			return keys
		}
		f.mu.Lock()
		keys = f.keys.Load().Key(kid) // as the look before left them
	}
	defer f.mu.Unlock()
	if look || len(keys) == 0 || f.now().Sub(f.checked) >= jwksRecheck {
		f.checked = f.now()
		if fi, err := os.Stat(f.path); err == nil && (fi.Size() != f.size || !fi.ModTime().Equal(f.mtime)) && f.load() == nil {
			keys = f.keys.Load().Key(kid)
		}
	}
	return keys
}

// AddToken registers a static token at run time (ordersd's own internal
// callers use one). Its subject must be recordable, as AUTH_TOKENS_FILE's
// are (checked once here, not at every call); AddToken panics otherwise,
// since the callers name their subjects in code.
func (a *Authenticator) AddToken(token string, p Principal) {
	if !recordableSubject(p.Subject) {
		panic(fmt.Sprintf("auth: AddToken: subject %q cannot be recorded", p.Subject))
	}
	a.static[sha256.Sum256([]byte(token))] = p
}

func (a *Authenticator) loadTokens(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 || len(fields[0]) < 16 {
			return fmt.Errorf("line %d: want \"<token of 16+ characters> <subject> <role>[,<role>...]\"", n)
		}
		roles := strings.Split(fields[2], ",")
		for _, r := range roles {
			if !slices.Contains([]string{Clerk, Viewer, Auditor, Admin}, r) {
				return fmt.Errorf("line %d: unknown role %q", n, r)
			}
		}
		if !recordableSubject(fields[1]) {
			// Its changes would be recorded as no one's: the token is
			// refused here, once, and Authenticate takes a static
			// token's subject as checked.
			return fmt.Errorf("line %d: the subject cannot be recorded as the actor of changes: at most %d characters, none of them a control, format (bidi, zero-width) or line separator character", n, MaxSubject)
		}
		key := sha256.Sum256([]byte(fields[0]))
		if _, ok := a.static[key]; ok {
			// Two subjects or role sets for one token: which the
			// operator meant is not known, and the last would win.
			return fmt.Errorf("line %d: a token listed before", n)
		}
		a.static[key] = Principal{Subject: fields[1], Roles: roles}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(a.static) == 0 {
		// Authentication on, listening beyond loopback allowed, and every
		// call refused: a file of comments only, or a token written with
		// the comment's '#' before it.
		return errors.New("no token in the file (a line starting with # is a comment)")
	}
	return nil
}

type claims struct {
	jwt.Claims
	Roles []string `json:"roles"`
}

// algorithms are the JWT signature algorithms accepted (README,
// "Authentication"): an HMAC one only with a secret as long as its hash,
// which go-jose checks when it verifies.
var algorithms = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// Authenticate returns the principal of token, or ErrUnauthenticated
// (ErrUnrecordableSubject for a token whose subject cannot be recorded:
// the gRPC interceptor, /metrics and the console refuse the same tokens).
func (a *Authenticator) Authenticate(token string) (Principal, error) {
	if p, ok := a.static[sha256.Sum256([]byte(token))]; ok {
		return p, nil // its subject was checked as it was added
	}
	if strings.Count(token, ".") != 2 || (a.hmac == nil && a.jwks == nil) {
		return Principal{}, ErrUnauthenticated
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil || len(tok.Headers) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	h := tok.Headers[0]
	var c claims
	switch {
	case strings.HasPrefix(h.Algorithm, "HS"):
		if a.hmac == nil || tok.Claims(a.hmac, &c) != nil {
			return Principal{}, ErrUnauthenticated
		}
	default:
		if a.jwks == nil || !a.jwksClaims(tok, h, &c) {
			return Principal{}, ErrUnauthenticated
		}
	}
	return a.principal(c)
}

// maxKeysTried bounds the keys of one kid a token's signature is checked
// against: a JWKS padded with keys under one kid would otherwise multiply
// the cost of refusing a forged token.
const maxKeysTried = 8

// jwksClaims verifies tok against the JWKS keys its header's kid selects
// and decodes its claims into c: against each of them (up to
// maxKeysTried), as a JWKS may hold several under one kid (keys of other
// types offered as alternatives, RFC 7517 §4.5; an issuer that sets no kid
// and rotates keys), skipping a key whose own alg is not the token's or
// that is for encryption.
//
// When none verifies, the file is looked at again (its size and
// modification time), and the token tried against the keys it holds now if
// it changed: an issuer that sets no kid signs with its new key as soon
// as it has added it, and the keys of the empty kid read before match its
// tokens all the same, so waiting for jwksRecheck refused them meanwhile.
func (a *Authenticator) jwksClaims(tok *jwt.JSONWebToken, h jose.Header, c *claims) bool {
	before := a.jwks.keys.Load()
	if verifyClaims(tok, h, c, a.jwks.key(h.KeyID, false)) {
		return true
	}
	keys := a.jwks.key(h.KeyID, true)
	return a.jwks.keys.Load() != before && verifyClaims(tok, h, c, keys)
}

// verifyClaims verifies tok against keys (see jwksClaims) and decodes its
// claims into c.
func verifyClaims(tok *jwt.JSONWebToken, h jose.Header, c *claims, keys []jose.JSONWebKey) bool {
	tried := 0
	for _, k := range keys {
		// A key published for encryption only ("use": "enc", RFC 7517
		// §4.2) is not the issuer's signing key.
		if k.Algorithm != "" && k.Algorithm != h.Algorithm || k.Use == "enc" {
			continue
		}
		if tried++; tried > maxKeysTried {
			return false
		}
		if tok.Claims(k.Public().Key, c) == nil {
			return true
		}
	}
	return false
}

// principal checks c's subject and times and returns who it names.
func (a *Authenticator) principal(c claims) (Principal, error) {
	want := a.expected
	want.Time = a.now()
	if c.Subject == "" || c.ValidateWithLeeway(want, Leeway) != nil {
		return Principal{}, ErrUnauthenticated
	}
	if !recordableSubject(c.Subject) {
		return Principal{}, ErrUnrecordableSubject
	}
	p := Principal{Subject: c.Subject, Roles: c.Roles}
	if c.Expiry != nil {
		p.Expires = c.Expiry.Time().Add(Leeway)
	}
	return p, nil
}

// BearerToken returns the token of an Authorization value of the Bearer
// scheme ("Bearer <token>"), or false for another scheme or no token. The
// scheme is matched in any case, as RFC 7235 makes auth schemes
// case-insensitive: OAuth servers issue token_type "bearer", and clients
// send it back as they got it. Spaces and tabs around the scheme and the
// token are tolerated. Both the gRPC interceptor and ordersd's own HTTP
// endpoints read tokens through it, so they accept the same values.
func BearerToken(v string) (token string, ok bool) {
	v = strings.Trim(v, " \t")
	i := strings.IndexAny(v, " \t")
	if i < 0 || !strings.EqualFold(v[:i], "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(v[i:], " \t")
	return token, token != ""
}

// AllowedRoles lists the roles any one of which may call a method (admin
// may call every method); exempt methods need no token at all.
func AllowedRoles(fullMethod string) (roles []string, exempt bool) {
	switch {
	case fullMethod == "/grpc.health.v1.Health/Check" || fullMethod == "/grpc.health.v1.Health/Watch":
		// Probes ask about one service they name, without a token.
		return nil, true
	case strings.HasPrefix(fullMethod, "/grpc.reflection."), strings.HasPrefix(fullMethod, "/grpc.health."):
		// Any caller with a token may see the API it calls; the health
		// service's List names every service, as reflection does.
		return []string{Viewer, Clerk, Auditor, Admin}, false
	case strings.HasPrefix(fullMethod, "/orders.v1.OrderCommandService/"):
		return []string{Clerk}, false
	case strings.HasPrefix(fullMethod, "/orders.v1.OrderQueryService/"):
		// A clerk reads the orders they change, e.g. to learn an order's
		// currency before adding a priced item.
		return []string{Viewer, Clerk}, false
	case strings.HasPrefix(fullMethod, "/orders.v1.OrderAuditService/"):
		return []string{Auditor}, false
	default:
		return []string{Admin}, false
	}
}

// check authenticates and authorises a call and returns the context with
// x-actor set to the subject, and the principal (zero for an exempt
// method).
func (a *Authenticator) check(ctx context.Context, method string) (context.Context, Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	p, exempt, err := a.admitMetadata(md, method)
	if exempt {
		return ctx, Principal{}, nil
	}
	if err != nil {
		return nil, Principal{}, err
	}
	md = md.Copy()
	md.Set("x-actor", p.Subject)
	return metadata.NewIncomingContext(ctx, md), p, nil
}

// Admit returns the principal of token when the server would let it call
// method (a full gRPC method name), and the status error it would answer
// otherwise: UNAUTHENTICATED for a token it does not accept or whose
// subject cannot be recorded, PERMISSION_DENIED for one without a role
// the method needs. A method without an auth rule needs none.
func (a *Authenticator) Admit(token, method string) (Principal, error) {
	roles, exempt := AllowedRoles(method)
	if exempt {
		return Principal{}, nil
	}
	return a.admit(token, roles)
}

// AdmitMetadata is Admit for a call carrying md, whose token is read as
// the interceptors read it: what they would answer is known without
// making the call (the REST gateway answers it before a failed
// precondition, which a refused call never gets to).
func (a *Authenticator) AdmitMetadata(md metadata.MD, method string) error {
	_, _, err := a.admitMetadata(md, method)
	return err
}

// admitMetadata is AdmitMetadata with the principal, and exempt true for a
// method without an auth rule.
func (a *Authenticator) admitMetadata(md metadata.MD, method string) (p Principal, exempt bool, err error) {
	roles, exempt := AllowedRoles(method)
	if exempt {
		return Principal{}, true, nil
	}
	var token string
	for _, v := range md.Get("authorization") {
		if t, ok := BearerToken(v); ok {
			token = t
		}
	}
	if token == "" {
		return Principal{}, false, status.Error(codes.Unauthenticated, "a bearer token is required")
	}
	p, err = a.admit(token, roles)
	return p, false, err
}

func (a *Authenticator) admit(token string, roles []string) (Principal, error) {
	p, err := a.Authenticate(token)
	switch {
	case errors.Is(err, ErrUnrecordableSubject):
		return Principal{}, status.Errorf(codes.Unauthenticated, "the token's subject cannot be recorded as the actor of the changes it makes: at most %d characters, not blank, none of them a control, format (bidi, zero-width) or line separator character, no surrounding whitespace", MaxSubject)
	case err != nil:
		return Principal{}, status.Error(codes.Unauthenticated, "invalid or expired token")
	}
	if !slices.ContainsFunc(roles, p.Has) {
		return Principal{}, status.Errorf(codes.PermissionDenied, "the %s role is required", strings.Join(roles, " or "))
	}
	return p, nil
}

// recordableSubject reports whether a token's subject is recorded as the
// actor as it is: the actor is recorded trimmed, so one that is blank
// would be recorded as "anonymous" and " alice " as alice.
func recordableSubject(s string) bool {
	return s != "" && Recordable(s) && strings.TrimSpace(s) == s
}

// lineEndTrimmed returns b without one final "\n" or "\r\n".
func lineEndTrimmed(b []byte) []byte {
	if b, ok := bytes.CutSuffix(b, []byte("\n")); ok {
		b, _ = bytes.CutSuffix(b, []byte("\r"))
		return b
	}
	return b
}

// MaxSubject is the longest subject a token may carry: the event store
// records it as the actor of every change the token makes, in a header of
// at most this many characters (the command service records any longer
// actor as "anonymous", which a token must not be taken for).
const MaxSubject = 128

// Recordable reports whether a value (a subject, a correlation id) can be
// recorded in an event's metadata as it is, surrounding whitespace aside:
// valid UTF-8 of at most MaxSubject characters that free text may hold
// (order.TextAllowed). A bidi override or a line separator would make
// what an auditor reads in a history differ from what was recorded.
func Recordable(value string) bool {
	s := strings.TrimSpace(value)
	return utf8.ValidString(s) && utf8.RuneCountInString(s) <= MaxSubject &&
		order.TextAllowed(s)
}

// Unary is the unary server interceptor.
func (a *Authenticator) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, _, err := a.check(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor. A stream whose token expires
// while it runs ends then with UNAUTHENTICATED, whatever its handler
// answers: a watch has no end of its own, and went on sending orders to a
// token every call refused.
func (a *Authenticator) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, p, err := a.check(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if p.Expires.IsZero() || runsToItsEnd[info.FullMethod] {
		return handler(srv, &wrapped{ServerStream: ss, ctx: ctx})
	}
	// By this server's clock, as the token was checked.
	ctx, cancel := context.WithTimeoutCause(ctx, p.Expires.Sub(a.now()), errTokenExpired)
	defer cancel()
	err = handler(srv, &wrapped{ServerStream: ss, ctx: ctx})
	if errors.Is(context.Cause(ctx), errTokenExpired) {
		return status.Error(codes.Unauthenticated, "the token expired: open the stream again with a new one")
	}
	return err
}

// runsToItsEnd are the streams a token's expiry does not end: operations
// that end on their own and carry no order's data, which an expiry would
// only cut short (a rebuild is abandoned when its call ends).
//
// The names are spelled out: this package is also built by the OpenAPI
// generator's module, which does not build the API's gRPC code.
var runsToItsEnd = map[string]bool{
	"/orders.v1.OrderAdminService/RebuildReadModel": true,
	"/orders.v1.OrderAuditService/VerifyLog":        true,
}

// errTokenExpired ends a stream whose token expired.
var errTokenExpired = errors.New("auth: the stream's token expired")

type wrapped struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrapped) Context() context.Context { return w.ctx }
