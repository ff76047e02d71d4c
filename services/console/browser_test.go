package console_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/orderstream/orderstream/internal/app/apptest"
)

// Tokens of the test's users: an administrator (every role) and a viewer.
const (
	adminToken  = "admin-token-0123456789"
	viewerToken = "viewer-token-0123456789"
)

// stepTimeout bounds one step of a browser test, so a page that never
// shows what a test waits for fails the test instead of hanging it.
const stepTimeout = 20 * time.Second

// findChromium returns the Chromium (or Chrome) to drive, or skips the test
// when none is installed.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium or Chrome on PATH: install Debian's chromium package (.ci/run does) to run the browser tests")
	return ""
}

// console is a real ordersd with authentication, its console's base URL,
// and one Chromium to drive it.
type console struct {
	base    string // http://host:port
	browser context.Context
	shots   string
}

func startConsole(t *testing.T) *console {
	chrome := findChromium(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(adminToken+" alice admin\n"+viewerToken+" vera viewer\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs, _ := apptest.Start(t, map[string]string{"AUTH_TOKENS_FILE": tokens, "SHUTDOWN_TIMEOUT": "2s",
		"TRACE_UI_URL": "http://127.0.0.1:16686"})
	shots := os.Getenv("CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.WindowSize(1280, 800),
		// Nothing but the test's own server is reachable, so the browser
		// sends no traffic beyond loopback.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("mute-audio", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	// Registered after apptest.Start, so it runs first: the browser's
	// open long polls end before ordersd shuts down.
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", chrome, err)
	}
	return &console{base: "http://" + addrs.HTTP, browser: bctx, shots: shots}
}

// user is one signed-in browser session (its own cookie jar) in a tab.
type user struct {
	t   *testing.T
	c   *console
	ctx context.Context
}

// openTab opens the browser's one tab.
func (c *console) openTab(t *testing.T) *user {
	ctx, cancel := chromedp.NewContext(c.browser)
	t.Cleanup(cancel)
	// The tab lives as long as the context of its first call: one
	// without the steps' timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	u := &user{t: t, c: c, ctx: ctx}
	u.do(chromedp.EmulateViewport(1280, 800))
	return u
}

// signIn signs in with token, as subject, signing whoever was signed in
// out first.
func (u *user) signIn(token, subject string) {
	u.t.Helper()
	u.open("/console/")
	if eval[bool](u, `document.querySelector("#token") === null`) {
		u.submit(`form[action="/console/logout"] button`)
	}
	u.waitFor(`document.querySelector("#token") !== null`)
	u.do(chromedp.SendKeys(chromedp.ID("token"), token))
	u.submit(`#token`)
	u.waitFor(fmt.Sprintf(`document.querySelector("#subject")?.textContent === %q`, subject))
}

func (u *user) do(steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		u.t.Fatal(err)
	}
}

// open navigates to a console path.
func (u *user) open(path string) { u.t.Helper(); u.do(chromedp.Navigate(u.c.base + path)) }

// submit submits the form of the element (a button or a field) and waits
// for the page it leads to.
func (u *user) submit(sel string) { u.t.Helper(); u.load(chromedp.Submit(chromedp.CSS(sel))) }

// follow clicks a link and waits for the page it leads to.
func (u *user) follow(sel string) { u.t.Helper(); u.load(chromedp.Click(chromedp.CSS(sel))) }

// load runs an action that leads to another page and waits for that page.
func (u *user) load(a chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, a); err != nil {
		u.t.Fatal(err)
	}
}

// waitFor polls a JavaScript condition until it holds.
func (u *user) waitFor(cond string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout))); err != nil {
		dctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
		defer cancel()
		body, err2 := chromedp.Run(dctx, chromedp.Evaluate[string](`location.href + " " + document.readyState + "\n" + (document.body ? document.body.innerText : "")`))
		if err2 != nil {
			body = err2.Error()
		}
		u.t.Fatalf("waiting for %s: %v\npage: %s", cond, err, body)
	}
}

// eval runs JavaScript (awaiting a promise) and returns its value.
func eval[T any](u *user, js string) T {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		u.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// shot saves a screenshot of the viewport (1280×800) as name.png.
func (u *user) shot(name string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.c.shots, name+".png"), png, 0o644); err != nil {
		u.t.Fatal(err)
	}
}

// api calls the REST API with the admin token and decodes the answer.
func (c *console) api(t *testing.T, method, path string, body any) map[string]any {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequestWithContext(t.Context(), method, c.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", rand.Text())
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %v %v", method, path, res.Status, out, err)
	}
	return out
}

// createOrder creates a draft order with one line and an address through
// the REST API. It returns the order's id and the console path of its page
// that waits for the read model to have it.
func (c *console) createOrder(t *testing.T, customer string) (id, page string) {
	t.Helper()
	out := c.api(t, "POST", "/v1/orders", map[string]any{
		"customerId": customer, "currency": "EUR",
		"lines":           []map[string]any{{"sku": "BOOK-1", "quantity": "2", "unitPrice": "1250"}},
		"shippingAddress": map[string]any{"name": "Ada", "line1": "1 Analytical Way", "city": "London", "country": "GB"},
	})
	id = out["order"].(map[string]any)["orderId"].(string)
	return id, fmt.Sprintf("/console/orders/%s?after=%v", id, out["position"])
}

// TestConsole drives the console in Chromium against a real ordersd: the
// live orders list, an order's commands and timeline, a stale screen's
// conflict, a rebuild, a verification and an export, and what a viewer may
// not do.
func TestConsole(t *testing.T) {
	c := startConsole(t)
	admin := c.openTab(t)
	admin.signIn(adminToken, "alice")
	var placed string

	t.Run("orders appear live", func(t *testing.T) {
		admin.t = t
		admin.open("/console/orders")
		admin.waitFor(`document.querySelector("#rows") !== null`)
		placed, _ = c.createOrder(t, "cust-42")
		// No reload: the list's long poll brings the new row.
		admin.waitFor(fmt.Sprintf(`document.querySelector('tr[data-order=%q]') !== null`, placed))
		_, _ = c.createOrder(t, "cust-7")
		admin.waitFor(`document.querySelectorAll("#rows tr[data-order]").length === 2`)
		admin.shot("orders")
	})

	t.Run("place an order and see its timeline", func(t *testing.T) {
		admin.t = t
		admin.open("/console/orders")
		admin.follow(fmt.Sprintf(`tr[data-order=%q] a`, placed))
		admin.waitFor(`document.querySelector("#cmd-place") !== null`)
		admin.waitFor(`document.querySelector("#order-total").textContent === "25.00 EUR"`)
		admin.waitFor(`document.querySelector('#timeline tr[data-type="OrderCreated"]') !== null`)
		admin.submit(`#cmd-place button`)
		admin.waitFor(`document.querySelector("#flash")?.textContent === "Order placed."`)
		admin.waitFor(`document.querySelector('#timeline tr[data-type="OrderPlaced"]') !== null`)
		// The payments manager charges it; the page hears of it by itself.
		admin.waitFor(`document.querySelector('#timeline tr[data-type="PaymentAuthorized"]') !== null`)
		admin.waitFor(`document.querySelector("#chain").classList.contains("ok")`)
		admin.open("/console/orders/" + placed)
		admin.waitFor(`document.querySelector("#cmd-ship") !== null`)
		admin.shot("order")
		// Back in history: as created, then as placed.
		admin.open("/console/orders/" + placed + "?at=1")
		admin.waitFor(`document.querySelector("#order-status").textContent === "draft"`)
		admin.open("/console/orders/" + placed + "?at=2")
		admin.waitFor(`document.querySelector("#order-status").textContent === "placed"`)
	})

	t.Run("a stale screen gets a conflict", func(t *testing.T) {
		admin.t = t
		id, page := c.createOrder(t, "cust-9")
		admin.open(page)
		admin.waitFor(`document.querySelector("#cmd-place") !== null`)
		// Someone else changes the order after the page was shown.
		c.api(t, "POST", "/v1/orders/"+id+"/items", map[string]any{"sku": "PEN-9", "quantity": "1", "unitPrice": "199"})
		// The page hears of it by itself...
		admin.waitFor(`!document.querySelector("#changed").hidden`)
		// ...but a command sent from it anyway is refused.
		admin.submit(`#cmd-place button`)
		admin.waitFor(`document.querySelector("#flash")?.textContent.includes("changed meanwhile")`)
		// Nothing was placed; the page now shows the current revision.
		admin.waitFor(`document.querySelector("#order-status").textContent === "draft"`)
		admin.waitFor(`document.querySelectorAll('#timeline tr[data-type="ItemAdded"]').length === 1`)
		admin.shot("conflict")
	})

	t.Run("rebuild with progress", func(t *testing.T) {
		admin.t = t
		admin.open("/console/operations")
		admin.waitFor(`document.querySelector("#projection-position") !== null`)
		admin.waitFor(`document.querySelector("#deadlines h2") !== null`)
		admin.do(chromedp.Click(chromedp.ID("rebuild-button")))
		admin.waitFor(`document.querySelector("#rebuild-progress").value === 100`)
		admin.waitFor(`document.querySelector("#rebuild-status").textContent.includes("swapped in")`)
		admin.shot("operations")
	})

	t.Run("verify and export the log", func(t *testing.T) {
		admin.t = t
		admin.open("/console/audit")
		admin.do(chromedp.Click(chromedp.ID("verify-button")))
		admin.waitFor(`document.querySelector("#verify-progress").value === 100`)
		admin.waitFor(`document.querySelector("#verify-status").textContent.includes("Every chain verifies.")`)
		admin.shot("audit")
		ndjson := eval[string](admin, `fetch("/console/audit/export?type=OrderPlaced").then(r => r.text())`)
		lines := strings.Split(strings.TrimSpace(ndjson), "\n")
		if len(lines) != 1 {
			t.Fatalf("export of OrderPlaced: %d lines, want 1:\n%s", len(lines), ndjson)
		}
		var ev struct{ OrderID, Type string }
		if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.OrderID != placed || ev.Type != "OrderPlaced" {
			t.Fatalf("exported %s (%v), want the OrderPlaced of %s", lines[0], err, placed)
		}
	})

	t.Run("a viewer cannot command", func(t *testing.T) {
		viewer := admin
		viewer.t = t
		viewer.signIn(viewerToken, "vera")
		id, page := c.createOrder(t, "cust-11")
		viewer.open(page)
		viewer.waitFor(`document.querySelector("#no-commands") !== null`)
		if n := eval[int](viewer, `document.querySelectorAll("form.command").length`); n != 0 {
			t.Fatalf("a viewer sees %d command forms", n)
		}
		if n := eval[int](viewer, `document.querySelectorAll('nav a[href="/console/operations"], nav a[href="/console/audit"]').length`); n != 0 {
			t.Fatalf("a viewer sees %d links to pages of other roles", n)
		}
		// Posting anyway, with a valid CSRF token, is refused by the
		// command service.
		code := eval[int](viewer, fmt.Sprintf(`fetch("/console/orders/%s/place", {method: "POST",
			body: new URLSearchParams({csrf: document.querySelector('meta[name="csrf-token"]').content, expected_revision: "1"})}).then(r => r.status)`, id))
		if code != http.StatusForbidden {
			t.Fatalf("a viewer's place: %d, want 403", code)
		}
		if code := eval[int](viewer, `fetch("/console/operations").then(r => r.status)`); code != http.StatusForbidden {
			t.Fatalf("a viewer's operations page: %d, want 403", code)
		}
		o := c.api(t, "GET", "/v1/orders/"+id, nil)
		if st := o["order"].(map[string]any)["status"]; st != "ORDER_STATUS_DRAFT" {
			t.Fatalf("after a viewer's place the order is %v", st)
		}
	})

	t.Run("a live page whose session ended sends the user to sign in", func(t *testing.T) {
		u := admin
		u.t = t
		// The page's streams, kept where the test can end one as a broken
		// connection would (the browser then reconnects, without the
		// session, and the server refuses the stream).
		u.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
				window.__streams = [];
				const Native = window.EventSource;
				window.EventSource = function (url, opts) { const es = new Native(url, opts); window.__streams.push(es); return es; };
				window.EventSource.CLOSED = Native.CLOSED;`})
			return chromedp.Void{}, err
		})
		u.open("/console/orders")
		u.waitFor(`window.__streams.length === 1 && window.__streams[0].readyState === 1`)
		// Signed out elsewhere (another tab of the browser): the cookie
		// is gone, the open stream stays.
		if code := eval[int](u, `fetch("/console/logout", {method: "POST", redirect: "manual",
			body: new URLSearchParams({csrf: document.querySelector('meta[name="csrf-token"]').content})}).then(r => r.type === "opaqueredirect" ? 303 : r.status)`); code != http.StatusSeeOther {
			t.Fatalf("sign-out: %d, want 303", code)
		}
		// The stream breaks: the page asks, and goes to sign in.
		u.load(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[bool](`(() => { const es = window.__streams[0]; es.close(); es.onerror(new Event("error")); return true; })()`)(ctx, tg)
			return chromedp.Void{}, err
		})
		if path := eval[string](u, `location.pathname`); path != "/console/login" {
			t.Fatalf("after the stream broke without a session the page is %s, want the sign-in page", path)
		}
	})
}
