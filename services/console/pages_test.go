package console_test

import (
	"bufio"
	"context"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/app/apptest"
)

// Tokens of the users of the tests below, besides adminToken.
const (
	auditorToken = "auditor-token-0123456789"
	// Valid static tokens holding a byte a cookie value cannot.
	semicolonToken = "semi;colon-token-0123456789"
	quoteToken     = `quote"token-0123456789`
	backslashToken = `back\slash-token-0123456789`
	// A valid static token that is not ASCII: no gRPC call can carry it.
	nonASCIIToken = "tökén-0123456789-non-ascii"
)

// A token as long as an identity provider's JWT with groups (3,500
// bytes), and one longer than any browser keeps in a cookie.
var (
	longToken    = "eyJ" + strings.Repeat("a", 3500) + ".sig-long"
	tooLongToken = "eyJ" + strings.Repeat("b", 4100) + ".sig-too-long"
)

// startAuthed runs ordersd with authentication and the users above.
func startAuthed(t testing.TB) *console {
	tokens := filepath.Join(t.TempDir(), "tokens")
	lines := adminToken + " alice admin\n" + auditorToken + " audrey auditor\n" + semicolonToken + " sam viewer\n" +
		quoteToken + " quinn viewer\n" + backslashToken + " bea viewer\n" + nonASCIIToken + " nora viewer\n" +
		longToken + " lena viewer\n" + tooLongToken + " tom viewer\n"
	if err := os.WriteFile(tokens, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := apptest.Start(t, map[string]string{"AUTH_TOKENS_FILE": tokens})
	return &console{base: "http://" + addrs.HTTP}
}

// signIn signs the client in with token, for the page next ("" for none).
func (c *client) signIn(token, next string) response {
	c.t.Helper()
	form := url.Values{"token": {token}}
	if next != "" {
		form.Set("next", next)
	}
	res, _ := c.do("POST", "/console/login", form, nil)
	return res
}

// follow gets path and follows the console's redirects, returning the last
// answer, its body and the path it came from.
func (c *client) follow(path string) (response, string, string) {
	c.t.Helper()
	for range 5 {
		res, body := c.do("GET", path, nil, nil)
		if res.StatusCode != http.StatusSeeOther && res.StatusCode != http.StatusFound {
			return res, body, path
		}
		path = res.Header.Get("Location")
	}
	c.t.Fatalf("more than 5 redirects, the last to %s", path)
	return response{}, "", ""
}

// sse is a live stream of the console, read as the page's EventSource
// does.
type sse struct {
	t  *testing.T
	sc *bufio.Scanner
}

// event is one Server-Sent Event.
type event struct{ Name, ID, Data string }

// live opens a live region's stream as the page's script does: its
// data-watch with since=<its data-position>. It returns once the response
// headers came, which must be before any change: a page waits for nothing
// else to know its stream is open (or refused). stepTimeout bounds it and
// the reads, so a stream that never answers fails the test.
func (c *client) live(watch, position string) *sse {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), stepTimeout)
	c.t.Cleanup(cancel)
	sep := "?"
	if strings.Contains(watch, "?") {
		sep = "&"
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+watch+sep+"since="+position, nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s since %s: no answer while nothing changed: %v", watch, position, err)
	}
	c.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		c.t.Fatalf("%s since %s: %s %s, want 200 text/event-stream", watch, position, res.Status, res.Header.Get("Content-Type"))
	}
	return &sse{t: c.t, sc: bufio.NewScanner(res.Body)}
}

// next reads the next event.
func (s *sse) next() event {
	s.t.Helper()
	var e event
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" {
			return e
		}
		k, v, _ := strings.Cut(line, ": ")
		switch k {
		case "event":
			e.Name = v
		case "id":
			e.ID = v
		case "data":
			e.Data += v + "\n"
		}
	}
	s.t.Fatalf("the stream ended before the next event: %v", s.sc.Err())
	return e
}

// awaitList waits for the read model's lists to have the change at
// position.
func (c *console) awaitList(t *testing.T, position string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", c.base+"/v1/orders", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("X-Min-Position", position)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("listing at position %s: %s", position, res.Status)
	}
}

var liveRegion = regexp.MustCompile(`data-watch="([^"]+)" data-event="[a-z]+" data-position="(\d+)"`)

// liveOf returns the data-watch and data-position of the page's live
// region.
func liveOf(t *testing.T, page string) (watch, position string) {
	t.Helper()
	m := liveRegion.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("the page has no live region")
	}
	return html.UnescapeString(m[1]), m[2]
}

// The live streams answer as soon as they are open, and the first change
// after the page's position is the first event: the orders list used to
// skip it (taking it for the position-only message a watch from 0 starts
// with), and both streams sent no response until a change came.
func TestLiveStreamsFromThePagesPosition(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	cl.signIn(adminToken, "")

	t.Run("orders list", func(t *testing.T) {
		cl.t = t
		// The log is not empty, and the list shows its order: the page's
		// position is past it.
		first, page := c.createOrder(t, "cust-live")
		u, _ := url.Parse(page)
		c.awaitList(t, u.Query().Get("after"))
		res, list := cl.do("GET", "/console/orders?customer=cust-live", nil, nil)
		if res.StatusCode != http.StatusOK || !strings.Contains(list, `data-order="`+first+`"`) {
			t.Fatalf("orders list: %s, without %s", res.Status, first)
		}
		stream := cl.live(liveOf(t, list))
		id, _ := c.createOrder(t, "cust-live")
		if e := stream.next(); e.Name != "rows" || !strings.Contains(e.Data, `data-order="`+id+`"`) {
			t.Fatalf("first event %q (id %s) does not show the order created after the page, %s:\n%s", e.Name, e.ID, id, e.Data)
		}
	})

	t.Run("order", func(t *testing.T) {
		cl.t = t
		id, path := c.createOrder(t, "cust-live-order")
		res, page := cl.do("GET", path, nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("order page: %s", res.Status)
		}
		stream := cl.live(liveOf(t, page))
		c.api(t, "POST", "/v1/orders/"+id+"/items", map[string]any{"sku": "PEN-9", "quantity": "1", "unitPrice": "199"})
		if e := stream.next(); e.Name != "changed" || !strings.Contains(e.Data, "revision 2") {
			t.Fatalf("first event %q (id %s), want the change to revision 2:\n%s", e.Name, e.ID, e.Data)
		}
	})
}

// An orders page rendered on an empty log is at position 0. Its live
// stream resumes after 0: an order created between the page and its
// stream is the first event, not skipped by a watch that starts "now".
func TestLiveListOfAnEmptyLogMissesNothing(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	cl.signIn(adminToken, "")
	res, list := cl.do("GET", "/console/orders?customer=cust-zero", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("orders list: %s", res.Status)
	}
	watch, position := liveOf(t, list)
	if position != "0" {
		t.Fatalf("a page of an empty log at position %s, want 0", position)
	}
	missed, page := c.createOrder(t, "cust-zero")
	u, _ := url.Parse(page)
	at := u.Query().Get("after")
	c.awaitList(t, at)
	stream := cl.live(watch, position)
	c.createOrder(t, "cust-zero")
	if e := stream.next(); e.Name != "rows" || e.ID != at || !strings.Contains(e.Data, `data-order="`+missed+`"`) {
		t.Fatalf("first event %q (id %s), want the rows at %s, with %s, created after the page:\n%s", e.Name, e.ID, at, missed, e.Data)
	}
}

// An orders page whose filter or page token was refused shows no rows and
// follows no live stream: with its filter dropped, the stream would fill it
// with every order.
func TestRefusedListIsNotLive(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	cl.signIn(adminToken, "")
	for _, q := range []string{"from=yesterday", "status=NO_SUCH_STATUS", "customer=cust-1&page=not-a-page-token"} {
		res, page := cl.do("GET", "/console/orders?"+q, nil, nil)
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", q, res.Status)
		}
		if strings.Contains(page, "data-watch") {
			t.Errorf("%s: the refused page follows a live stream (%q)", q, liveRegion.FindString(page))
		}
	}
	if res, page := cl.do("GET", "/console/orders?customer=cust-1", nil, nil); res.StatusCode != http.StatusOK || !strings.Contains(page, "data-watch") {
		t.Errorf("an accepted filter: %s, live %v; want 200 and live", res.Status, strings.Contains(page, "data-watch"))
	}
}

var viewLink = regexp.MustCompile(`<a href="([^"]+)" aria-label="State after version 1"`)

// The page a refused command answers with is shown at the command's URL:
// its timeline's links to earlier states must still lead to them.
func TestConflictPageLinksToEarlierStates(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	cl.signIn(adminToken, "")
	id, page := c.createOrder(t, "cust-conflict")
	_, body := cl.do("GET", page, nil, nil)
	m := csrfMeta.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no CSRF token on the order page")
	}
	c.api(t, "POST", "/v1/orders/"+id+"/items", map[string]any{"sku": "PEN-9", "quantity": "1", "unitPrice": "199"})
	post := "/console/orders/" + id + "/place"
	res, body := cl.do("POST", post, url.Values{"csrf": {m[1]}, "expected_revision": {"1"}}, nil)
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("a stale place: %s, want 409", res.Status)
	}
	link := viewLink.FindStringSubmatch(body)
	if link == nil {
		t.Fatal("no timeline link to version 1 on the conflict page")
	}
	// Resolved as the browser does, against the page's URL.
	base, _ := url.Parse(c.base + post)
	ref, err := url.Parse(html.UnescapeString(link[1]))
	if err != nil {
		t.Fatal(err)
	}
	target := base.ResolveReference(ref).RequestURI()
	res, body = cl.do("GET", target, nil, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "Showing the order as it was after version 1 of ") {
		t.Fatalf("the conflict page's link %q leads to %s: %s, want the order after version 1", link[1], target, res.Status)
	}
}

var flashText = regexp.MustCompile(`id="flash"[^>]*>([^<]*)`)

// flashOf is the text of the page's flash message ("" for none).
func flashOf(page string) string {
	if m := flashText.FindStringSubmatch(page); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

// A version past the order's history is the user's mistake (a stale link,
// an edited URL), not the server's.
func TestVersionPastTheHistory(t *testing.T) {
	c := startAuthed(t)
	cl := newClient(t, c.base)
	cl.signIn(adminToken, "")
	id, page := c.createOrder(t, "cust-at")
	cl.do("GET", page, nil, nil)
	res, body := cl.do("GET", "/console/orders/"+id+"?at=99", nil, nil)
	flash := flashOf(body)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(flash, "no version 99") {
		t.Fatalf("?at=99 of an order of one version: %s, flash %q; want 400 saying there is no version 99", res.Status, flash)
	}
	if !strings.Contains(body, `id="order-status"`) {
		t.Fatal("?at=99: the order is not shown as it is now")
	}
}

// A token the services accept signs in whatever bytes it holds: the
// session cookie carries it encoded. One no call can carry (not ASCII) is
// refused at sign-in, saying so, rather than signing in into a loop.
func TestTokensACookieCannotHold(t *testing.T) {
	c := startAuthed(t)
	for token, subject := range map[string]string{semicolonToken: "sam", quoteToken: "quinn", backslashToken: "bea"} {
		cl := newClient(t, c.base)
		if res := cl.signIn(token, ""); res.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in as %s: %s, want 303", subject, res.Status)
		}
		res, page, at := cl.follow("/console/orders")
		if res.StatusCode != http.StatusOK || !strings.Contains(page, `<strong id="subject">`+subject+`</strong>`) {
			t.Errorf("signed in as %s (token %q), the orders page is %s at %s", subject, token, res.Status, at)
		}
	}

	cl := newClient(t, c.base)
	res, page := cl.do("POST", "/console/login", url.Values{"token": {nonASCIIToken}}, nil)
	flash := flashOf(page)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(flash, "printable ASCII") {
		t.Errorf("sign-in with a token that is not ASCII: %s to %q, flash %q; want 400 saying why", res.Status, res.Header.Get("Location"), flash)
	}
	if ck := res.Header.Get("Set-Cookie"); ck != "" {
		t.Errorf("a refused sign-in set the cookie %q", ck)
	}

	// A token of 3,500 bytes signs in with a cookie a browser keeps (at
	// most 4,096 bytes: encoded, it was 4,700 and dropped); one that no
	// cookie can hold is refused at sign-in, saying so.
	cl = newClient(t, c.base)
	res, _ = cl.do("POST", "/console/login", url.Values{"token": {longToken}}, nil)
	if ck := res.Header.Get("Set-Cookie"); res.StatusCode != http.StatusSeeOther || len(strings.SplitN(ck, ";", 2)[0]) > 4096 {
		t.Errorf("sign-in with a token of %d bytes: %s, cookie of %d bytes; want 303 and at most 4,096", len(longToken), res.Status, len(strings.SplitN(ck, ";", 2)[0]))
	} else if res, page, at := cl.follow("/console/orders"); res.StatusCode != http.StatusOK || !strings.Contains(page, `<strong id="subject">lena</strong>`) {
		t.Errorf("signed in with a long token, the orders page is %s at %s", res.Status, at)
	}
	cl = newClient(t, c.base)
	res, page = cl.do("POST", "/console/login", url.Values{"token": {tooLongToken}}, nil)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(flashOf(page), "too long") || res.Header.Get("Set-Cookie") != "" {
		t.Errorf("sign-in with a token of %d bytes: %s, flash %q, cookie %q; want 400 saying it is too long, and no cookie",
			len(tooLongToken), res.Status, flashOf(page), res.Header.Get("Set-Cookie"))
	}

	// A session cookie from before tokens were encoded (the token itself)
	// still signs in.
	cl = newClient(t, c.base)
	u, _ := url.Parse(c.base + "/console/")
	cl.http.Jar.SetCookies(u, []*http.Cookie{{Name: "orderstream_console", Value: adminToken, Path: "/console/"}})
	if res, _ := cl.do("GET", "/console/orders", nil, nil); res.StatusCode != http.StatusOK {
		t.Errorf("with a cookie holding the token itself: %s, want 200", res.Status)
	}
}

// Every user lands on a page their roles allow: an auditor, who may not
// read the orders, on the audit page.
func TestLandingFollowsTheRoles(t *testing.T) {
	c := startAuthed(t)
	for _, u := range []struct{ token, home string }{{auditorToken, "/console/audit"}, {adminToken, "/console/orders"}} {
		cl := newClient(t, c.base)
		// Signed out, the console's root leads to the sign-in page...
		res, page, at := cl.follow("/console/")
		next := regexp.MustCompile(`name="next" value="([^"]*)"`).FindStringSubmatch(page)
		if res.StatusCode != http.StatusOK || next == nil {
			t.Fatalf("/console/ signed out leads to %s: %s, not the sign-in page", at, res.Status)
		}
		// ...and signing in there to the user's first page.
		res = cl.signIn(u.token, html.UnescapeString(next[1]))
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("sign-in: %s", res.Status)
		}
		res, _, at = cl.follow(res.Header.Get("Location"))
		if res.StatusCode != http.StatusOK || at != u.home {
			t.Errorf("signing in from /console/ with %s lands on %s: %s, want %s", u.token, at, res.Status, u.home)
		}
		// So do the root and a sign-in without a page to return to.
		if res, _, at := cl.follow("/console/"); res.StatusCode != http.StatusOK || at != u.home {
			t.Errorf("/console/ signed in with %s: %s at %s, want %s", u.token, res.Status, at, u.home)
		}
		if res := cl.signIn(u.token, ""); res.Header.Get("Location") != u.home {
			t.Errorf("sign-in with %s and no next: %s to %q, want %s", u.token, res.Status, res.Header.Get("Location"), u.home)
		}
	}
}
