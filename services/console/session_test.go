package console_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// README: "every form post needs a CSRF token"; console.go's package doc:
// "Every state-changing request is a POST that must carry a CSRF token".
// Sign-out is a state-changing POST, and was accepted without one.
func TestLogoutNeedsCSRF(t *testing.T) {
	c := startAuthed(t)
	cl := adminSignedIn(t, c)
	res, _ := cl.do("POST", "/console/logout", url.Values{}, nil)
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without a CSRF token: %s (Set-Cookie %q), want 403", res.Status, res.Header.Get("Set-Cookie"))
	}
	if res, _ := cl.do("GET", "/console/orders", nil, nil); res.StatusCode != http.StatusOK {
		t.Errorf("after a sign-out post without CSRF token, the orders page is %s: the session was ended", res.Status)
	}
}

// toLogin: "sends a page request to the sign-in page and answers 401 to the
// script's requests" (those carrying X-Console). A plain form post (a
// command form, retry, rebuild without script) with a session whose token
// is no longer valid is a page request, and got a bare text/plain 401.
func TestExpiredSessionFormPostGoesToSignIn(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	u, _ := url.Parse(c.base + "/console/")
	cl.http.Jar.SetCookies(u, []*http.Cookie{{Name: "orderstream_console",
		Value: "b64." + base64.RawURLEncoding.EncodeToString([]byte("expired-or-revoked-token")), Path: "/console/"}})
	res, body := cl.do("POST", "/console/orders/some-order/place", url.Values{"csrf": {"x"}, "expected_revision": {"1"}}, nil)
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/console/login") {
		t.Errorf("a form post with an expired session: %s %s %q, want 303 to the sign-in page", res.Status, res.Header.Get("Content-Type"), strings.TrimSpace(body))
	}
}

// Signing out ends the session's open streams, in every tab of the
// browser: a live list left open in another tab stops receiving the
// orders' changes. It went on until its token expired, the stream holding
// the token the sign-out had dropped.
func TestSignOutEndsTheSessionsStreams(t *testing.T) {
	c := startAuthed(t)
	cl := adminSignedIn(t, c)
	token := ordersPageCSRF(t, cl)
	other := cl.live("/console/live/orders", "0") // the list, open in another tab
	if res, _ := cl.do("POST", "/console/logout", url.Values{"csrf": {token}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", res.Status)
	}
	for other.sc.Scan() { // heartbeats and rows until it ends
	}
	if err := other.sc.Err(); err != nil {
		t.Fatalf("the other tab's stream did not end with the sign-out: %v", err)
	}
}

// The CSRF token every page carries (in every form, in saved pages) is no
// function of the bearer token alone: it was an HMAC keyed by the session
// cookie over a constant, so whoever saw one page could test guesses of a
// static token offline. Two browsers signed in with the same token get
// different CSRF tokens, a new sign-in gets a new one, and each is good
// in its own browser only.
func TestCSRFTokenIsNoFunctionOfTheBearerToken(t *testing.T) {
	c := startAuthed(t)
	a, b := adminSignedIn(t, c), adminSignedIn(t, c)
	ta, tb := ordersPageCSRF(t, a), ordersPageCSRF(t, b)
	if ta == tb {
		t.Fatalf("two browsers signed in with one bearer token have the same CSRF token %q", ta)
	}
	if res, _ := b.do("POST", "/console/logout", url.Values{"csrf": {ta}}, nil); res.StatusCode != http.StatusForbidden {
		t.Errorf("a sign-out with another browser's CSRF token: %s, want 403", res.Status)
	}
	// Signed in again with another token, the browser's CSRF token is
	// another too; with the same one (each tab signs in again once its
	// token expired), the pages of the tabs that did first keep theirs.
	if res := a.signIn(semicolonToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in as another: %s", res.Status)
	}
	viewer := ordersPageCSRF(t, a)
	if viewer == ta {
		t.Errorf("signing in with another token kept the CSRF token %q", ta)
	}
	if res := a.signIn(semicolonToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in again: %s", res.Status)
	}
	if again := ordersPageCSRF(t, a); again != viewer {
		t.Errorf("signing in again with the same token changed the CSRF token: the other tabs' forms would be refused")
	}
	if res, _ := b.do("POST", "/console/logout", url.Values{"csrf": {tb}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("a sign-out with the browser's own CSRF token: %s, want 303", res.Status)
	}
}

// A browser signed in before the CSRF cookie (an upgrade) keeps its open
// pages: their token, made from the session cookie alone, posts while the
// browser has no CSRF cookie. Its first request sets the cookie, whose
// token posts from then on, and the older token no more; a token that is
// neither is refused.
func TestSessionWithoutCSRFCookieGetsOne(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	u, _ := url.Parse(c.base + "/console/")
	cl.http.Jar.SetCookies(u, []*http.Cookie{{Name: "orderstream_console", Value: adminToken, Path: "/console/"}})
	if res, _ := cl.do("POST", "/console/logout", url.Values{"csrf": {"forged"}}, nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("a sign-out with a forged token: %s, want 403", res.Status)
	}
	older := hmac.New(sha256.New, []byte(adminToken)) // as a console before the cookie made it
	older.Write([]byte("orderstream console csrf"))
	form := url.Values{"csrf": {base64.RawURLEncoding.EncodeToString(older.Sum(nil))}, "reason": {"x"}}
	if res, body := cl.do("POST", "/console/orders/no-such-order/cancel", form, nil); res.StatusCode == http.StatusForbidden {
		t.Fatalf("a post from a page of the console before the CSRF cookie: %s %q, want it taken", res.Status, flashOf(body))
	}
	// That post set the cookie: such a token is good no more, as it is
	// not after a sign-out (a saved page keeps none that lasts).
	if res, _ := cl.do("POST", "/console/orders/no-such-order/cancel", form, nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("a post with an older console's token once the CSRF cookie is set: %s, want 403", res.Status)
	}
	if res, _ := cl.do("POST", "/console/logout", url.Values{"csrf": {ordersPageCSRF(t, cl)}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("a sign-out with the page's CSRF token: %s, want 303", res.Status)
	}
}

// One browser, two tabs: when the token expires each tab's script sends
// it to sign in, and the user signs in in each with the same token. The
// page of the tab signed in first keeps its forms: each sign-in drew a new
// CSRF key, and that tab's next post was refused as a stale form, what was
// typed lost.
func TestSigningInAgainInAnotherTabKeepsThisTabsForms(t *testing.T) {
	c := startAuthed(t)
	browser := adminSignedIn(t, c)
	tabA := ordersPageCSRF(t, browser)
	if res := browser.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in in the other tab: %s", res.Status)
	}
	if res, body := browser.do("POST", "/console/orders/no-such-order/cancel", url.Values{"csrf": {tabA}, "reason": {"x"}}, nil); res.StatusCode == http.StatusForbidden {
		t.Fatalf("tab A's post after signing in again in tab B: %s %q, want it taken", res.Status, flashOf(body))
	}
}

// ordersPageCSRF is the CSRF token of cl's orders page.
func ordersPageCSRF(t *testing.T, cl *client) string {
	t.Helper()
	_, page := cl.do("GET", "/console/orders", nil, nil)
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	return m[1]
}

// adminSignedIn is a browser of its own signed in to c as the admin.
func adminSignedIn(t *testing.T, c *console) *client {
	t.Helper()
	cl := newClient(t, c.base)
	if res := cl.signIn(adminToken, ""); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	return cl
}

// Two browsers signed in with one bearer token (a person's two machines,
// or a team's shared static token) are two sessions: signing out of one
// ends that browser's streams only. It ended the other's too (its live
// list, and an export, a verification, a rebuild or a retry of parked
// payments it was running), the streams being kept by the token alone.
func TestSignOutLeavesAnotherBrowsersStreams(t *testing.T) {
	c := startAuthed(t)
	a, b := adminSignedIn(t, c), adminSignedIn(t, c)
	stream := b.live("/console/live/orders", "0") // b's live list
	if res, _ := a.do("POST", "/console/logout", url.Values{"csrf": {ordersPageCSRF(t, a)}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out of the first browser: %s", res.Status)
	}
	id, _ := c.createOrder(t, "cust-other-browser")
	if e := stream.next(); e.Name != "rows" || !strings.Contains(e.Data, `data-order="`+id+`"`) {
		t.Fatalf("the other browser's live list, after the first signed out: event %q (id %s) without %s:\n%s", e.Name, e.ID, id, e.Data)
	}
}
