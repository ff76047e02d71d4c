package console_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
)

// client is a browser-less session of the console over real HTTP.
type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

// response is what a test looks at of an answer; its body is read and
// closed by do.
type response struct {
	StatusCode int
	Status     string
	Header     http.Header
}

// do sends a request as a same-origin page of the console would, and
// returns the answer with its body.
func (c *client) do(method, path string, form url.Values, hdr map[string]string) (response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequestWithContext(c.t.Context(), method, c.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{StatusCode: res.StatusCode, Status: res.Status, Header: res.Header}, string(b)
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// startWithAdmin starts ordersd with authentication, adminToken an admin's,
// and returns the console, a client not yet signed in, and the addresses.
func startWithAdmin(t *testing.T) (*console, *client, app.Addrs) {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(adminToken+" alice admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := apptest.Start(t, map[string]string{"AUTH_TOKENS_FILE": tokens})
	c := &console{base: "http://" + addrs.HTTP}
	return c, newClient(t, c.base), addrs
}

// TestConsoleHTTP checks, without a browser, what the console promises
// every browser: sign-in, CSP, CSRF and cross-origin refusals, escaping.
func TestConsoleHTTP(t *testing.T) {
	c, cl, addrs := startWithAdmin(t)

	res, _ := cl.do("GET", "/console/orders", nil, nil)
	if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/console/login?") {
		t.Fatalf("signed out: %s to %q, want 303 to the sign-in page", res.Status, res.Header.Get("Location"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	if res, _ := cl.do("POST", "/console/login", url.Values{"token": {"not-a-token-at-all"}}, nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in with a bad token: %s, want 401", res.Status)
	}
	if res, _ := cl.do("POST", "/console/login", url.Values{"token": {adminToken}, "next": {"https://elsewhere.example/"}}, nil); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/orders" {
		t.Fatalf("sign-in: %s to %q, want 303 to /console/orders (never off the console)", res.Status, res.Header.Get("Location"))
	}
	if !slices.ContainsFunc(cl.http.Jar.Cookies(&url.URL{Scheme: "http", Host: addrs.HTTP, Path: "/console/"}),
		func(ck *http.Cookie) bool { return ck.Name == "orderstream_console" && ck.Value != "" }) {
		t.Fatal("no session cookie after signing in")
	}

	// An id is printable ASCII, so markup fits in one: it must come out
	// as text.
	hostile := `<img/src=x/onerror=alert(1)>`
	id, path := c.createOrder(t, hostile)
	res, page := cl.do("GET", path, nil, nil)
	if res.StatusCode != http.StatusOK || strings.Contains(page, hostile) || !strings.Contains(page, "&lt;img/src=x/onerror=alert(1)&gt;") {
		t.Fatalf("order page %s: the customer id is not escaped", res.Status)
	}
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	place := url.Values{"expected_revision": {"1"}}
	if res, _ := cl.do("POST", "/console/orders/"+id+"/place", place, nil); res.StatusCode != http.StatusForbidden {
		t.Fatalf("a post without the CSRF token: %s, want 403", res.Status)
	}
	place.Set("csrf", m[1])
	if res, _ := cl.do("POST", "/console/orders/"+id+"/place", place, map[string]string{"Sec-Fetch-Site": "cross-site"}); res.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-site post: %s, want 403", res.Status)
	}
	res, _ = cl.do("POST", "/console/orders/"+id+"/place", place, nil)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("place: %s, want 303", res.Status)
	}
	// The same form sent again is refused, not applied twice: it names a
	// revision the order no longer has.
	if res, page := cl.do("POST", "/console/orders/"+id+"/place", place, nil); res.StatusCode != http.StatusConflict || !strings.Contains(page, "changed meanwhile") {
		t.Fatalf("the same place again: %s, want 409 saying it changed meanwhile", res.Status)
	}
	if res, _ := cl.do("GET", "/console/audit/export?type=NoSuchEvent", nil, nil); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("export of an unknown event type: %s, want 400", res.Status)
	}
	if res, _ := cl.do("POST", "/console/logout", url.Values{"csrf": {m[1]}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %s", res.Status)
	}
	if res, _ := cl.do("GET", "/console/orders", nil, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("after signing out: %s, want 303 to the sign-in page", res.Status)
	}
}

// An export with a first position and a start time holds both bounds: the
// audit service starts the stream at the time when it has one, so the
// console leaves out what comes before the position. Before, the first
// position was ignored whenever a start time was given.
func TestExportHoldsBothStartBounds(t *testing.T) {
	c, cl, _ := startWithAdmin(t)
	if res, _ := cl.do("POST", "/console/login", url.Values{"token": {adminToken}}, nil); res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s", res.Status)
	}
	for _, cust := range []string{"exp-1", "exp-2", "exp-3"} {
		c.createOrder(t, cust)
	}
	positions := func(q string) []int {
		t.Helper()
		res, body := cl.do("GET", "/console/audit/export?"+q, nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("export ?%s: %s", q, res.Status)
		}
		var ps []int
		for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
			var ev struct {
				Position string `json:"position"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("export ?%s: line %q: %v", q, l, err)
			}
			p, _ := strconv.Atoi(ev.Position)
			ps = append(ps, p)
		}
		return ps
	}
	all := positions("from_time=2000-01-01T00:00")
	if len(all) < 3 {
		t.Fatalf("export from 2000: positions %v, want the three orders' creations", all)
	}
	from := all[len(all)-1]
	if got := positions(fmt.Sprintf("from_position=%d&from_time=2000-01-01T00:00", from)); !slices.Equal(got, []int{from}) {
		t.Fatalf("export from position %d and from 2000: positions %v, want [%d]", from, got, from)
	}
}
