package cli_test

import (
	"encoding/json"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/cli"
)

var update = flag.Bool("update", false, "rewrite golden files")

// server runs the whole of ordersd in-process on loopback ports.
func server(t *testing.T, extra ...string) app.Addrs {
	t.Helper()
	// Payments are recorded by hand here, so the payments role is off.
	vars := map[string]string{"ROLES": "command,query,audit,gateway"}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	a, _ := apptest.Start(t, vars)
	return a
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs ordersctl against addr with nothing a terminal.
func run(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return call{addr: addr}.run(t, args...)
}

func ok(t *testing.T, r result) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	return r
}

var volatile = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)

// golden compares output with testdata/NAME, timestamps masked.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = volatile.ReplaceAllString(got, "<time>")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Fatalf("%s differs:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func jsonOf(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	return m
}

func TestOrderCommands(t *testing.T) {
	a := server(t)
	g := a.GRPC
	r := ok(t, run(t, g, "orders", "create", "--order-id", "ord-1", "--request-id", "r1", "--customer", "cust-42", "--currency", "EUR",
		"--item", "BOOK-1:2:12.50", "--item", "PEN-9:3:1.99", "--name", "Ada", "--line1", "1 Analytical Way", "--city", "London", "--country", "GB"))
	golden(t, "create.txt", r.stdout)
	ok(t, run(t, g, "orders", "add-item", "ord-1", "INK-1", "1", "0.50", "--request-id", "r2"))
	ok(t, run(t, g, "orders", "set-qty", "ord-1", "INK-1", "4", "--request-id", "r3"))
	ok(t, run(t, g, "orders", "remove-item", "ord-1", "PEN-9", "--request-id", "r4"))
	r = ok(t, run(t, g, "orders", "place", "ord-1", "--request-id", "r5", "-o", "json"))
	placed := jsonOf(t, r.stdout)
	if str(t, placed, "order", "status") != "ORDER_STATUS_PLACED" || amount(t, placed, "order", "total") != "2700 EUR 27.00" {
		t.Fatalf("placed: %s", r.stdout)
	}
	ok(t, run(t, g, "orders", "pay", "ord-1", "--ref", "psp-1", "--amount", "27.00", "--request-id", "r6"))
	ok(t, run(t, g, "orders", "ship", "ord-1", "--carrier", "DHL", "--tracking", "JD1", "--request-id", "r7"))
	r = ok(t, run(t, g, "orders", "deliver", "ord-1", "--request-id", "r8", "-o", "json"))
	pos := jsonOf(t, r.stdout)["position"].(string)
	r = ok(t, run(t, g, "orders", "get", "ord-1", "--min-position", pos, "--max-wait", "10s"))
	golden(t, "get.txt", r.stdout)
	r = ok(t, run(t, g, "orders", "get", "ord-1", "-o", "json"))
	golden(t, "get.json", r.stdout)

	// Money with other exponents.
	r = ok(t, run(t, g, "orders", "create", "--order-id", "ord-jpy", "--customer", "cust-42", "--currency", "JPY", "--item", "TEA:2:1200"))
	if !strings.Contains(r.stdout, "2400 JPY") {
		t.Fatalf("JPY total: %s", r.stdout)
	}
	r = ok(t, run(t, g, "orders", "create", "--order-id", "ord-kwd", "--customer", "cust-7", "--currency", "KWD", "--item", "OIL:1:1.255", "-o", "json"))
	last := jsonOf(t, r.stdout)
	if amount(t, last, "order", "total") != "1255 KWD 1.255" {
		t.Fatalf("KWD total: %s", r.stdout)
	}
	// A SKU may hold ':'; the quantity and the price are the last fields.
	r = ok(t, run(t, g, "orders", "create", "--order-id", "ord-colon", "--customer", "cust-9", "--currency", "EUR", "--item", "urn:isbn:0451450523:2:7.50", "-o", "json"))
	if lines := jsonOf(t, r.stdout)["order"].(map[string]any)["lines"].([]any); len(lines) != 1 || lines[0].(map[string]any)["sku"] != "urn:isbn:0451450523" {
		t.Fatalf("the line of a SKU holding ':': %s", r.stdout)
	}
	r = ok(t, run(t, g, "orders", "list", "--customer", "cust-42", "--all", "--page-size", "1", "--min-position", last["position"].(string), "--max-wait", "10s", "-o", "json"))
	if n := len(jsonOf(t, r.stdout)["orders"].([]any)); n != 2 {
		t.Fatalf("list --all found %d orders: %s", n, r.stdout)
	}
}

func TestAuditAndAdminCommands(t *testing.T) {
	a := server(t)
	g := a.GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "aud-1", "--request-id", "a1", "--customer", "c", "--currency", "EUR", "--item", "A:1:5.00",
		"--line1", "1 Way", "--city", "Oslo", "--country", "NO", "--actor", "alice"))
	ok(t, run(t, g, "orders", "place", "aud-1", "--request-id", "a2", "--actor", "bob"))
	r := ok(t, run(t, g, "audit", "history", "aud-1"))
	golden(t, "history.txt", r.stdout)
	// In JSON an event's amount carries its order's currency, which only
	// OrderCreated names.
	r = ok(t, run(t, g, "audit", "history", "aud-1", "-o", "json"))
	placedEvent := jsonOf(t, r.stdout)["events"].([]any)[1].(map[string]any)
	if amount(t, placedEvent, "event", "orderPlaced", "total") != "500 EUR 5.00" {
		t.Fatalf("history JSON: %s", r.stdout)
	}
	r = ok(t, run(t, g, "audit", "at", "aud-1", "--revision", "1", "-o", "json"))
	if jsonOf(t, r.stdout)["order"].(map[string]any)["status"] != "ORDER_STATUS_DRAFT" {
		t.Fatalf("state at 1: %s", r.stdout)
	}
	r = ok(t, run(t, g, "audit", "export"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("export: %d lines", len(lines))
	}
	for _, l := range lines {
		jsonOf(t, l)
	}
	r = ok(t, run(t, g, "audit", "verify", "aud-1"))
	if !strings.Contains(r.stdout, "ok") {
		t.Fatalf("verify: %s", r.stdout)
	}
	r = ok(t, run(t, g, "audit", "verify", "--all", "-o", "json"))
	if r.stderr != "" {
		t.Fatalf("progress leaked into piped output: %q", r.stderr)
	}
	r = ok(t, run(t, g, "admin", "rebuild", "-o", "json"))
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		jsonOf(t, l) // every progress line is JSON, nothing else
	}
	if r.stderr != "" {
		t.Fatalf("rebuild wrote to stderr off a terminal: %q", r.stderr)
	}
	waitServing(t, g)
	ok(t, run(t, g, "admin", "health"))

	// Tamper through NATS: verify exits 6.
	nc, err := nats.Connect("nats://" + a.NATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m := nats.NewMsg("orders.aud-1")
	m.Header.Set("Orders-Event-Type", "OrderCancelled")
	m.Header.Set("Nats-Expected-Stream", "ORDERS")
	if _, err := nc.RequestMsg(m, 5e9); err != nil {
		t.Fatal(err)
	}
	if r := run(t, g, "audit", "verify", "aud-1"); r.code != cli.ExitBrokenChain || !strings.Contains(r.stdout, "BROKEN") {
		t.Fatalf("verify of a tampered order: exit %d %s", r.code, r.stdout)
	}
	if r := run(t, g, "audit", "verify", "--all"); r.code != cli.ExitBrokenChain {
		t.Fatalf("verify --all of a tampered log: exit %d", r.code)
	}
}

func TestExitCodes(t *testing.T) {
	a := server(t)
	g := a.GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "x-1", "--customer", "c", "--currency", "EUR"))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	_ = lis.Close()
	cases := []struct {
		name string
		addr string
		args []string
		want int
	}{
		{"unknown command", g, []string{"bogus"}, cli.ExitUsage},
		{"missing argument", g, []string{"orders", "place"}, cli.ExitUsage},
		{"bad item", g, []string{"orders", "create", "--customer", "c", "--currency", "EUR", "--item", "A:x:1"}, cli.ExitUsage},
		{"too many decimals", g, []string{"orders", "create", "--customer", "c", "--currency", "EUR", "--item", "A:1:1.999"}, cli.ExitUsage},
		{"invalid argument from server", g, []string{"orders", "create", "--customer", "c", "--currency", "euro"}, cli.ExitUsage},
		{"bad output format", g, []string{"orders", "get", "x-1", "-o", "yaml"}, cli.ExitUsage},
		// gRPC strings are UTF-8: one that is not would fail to encode,
		// reported as an internal error.
		{"argument not UTF-8", g, []string{"orders", "get", "bad\xff"}, cli.ExitUsage},
		{"flag value not UTF-8", g, []string{"orders", "create", "--customer", "c\xff", "--currency", "EUR"}, cli.ExitUsage},
		{"export from a position and a time", g, []string{"audit", "export", "--from", "3", "--since", "2026-01-01T00:00:00Z"}, cli.ExitUsage},
		{"not found", g, []string{"orders", "place", "nope"}, cli.ExitNotFound},
		{"conflict: exists", g, []string{"orders", "create", "--order-id", "x-1", "--customer", "c", "--currency", "EUR"}, cli.ExitConflict},
		{"conflict: illegal transition", g, []string{"orders", "deliver", "x-1"}, cli.ExitConflict},
		{"conflict: stale revision", g, []string{"orders", "add-item", "x-1", "B", "1", "1", "--expected-revision", "99"}, cli.ExitConflict},
		{"unavailable", closed, []string{"orders", "place", "x-1", "--timeout", "2s"}, cli.ExitUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, tc.addr, tc.args...)
			if r.code != tc.want {
				t.Fatalf("exit %d, want %d (%s%s)", r.code, tc.want, r.stdout, r.stderr)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 0 || strings.Contains(r.stderr, "goroutine") {
				t.Fatalf("error is not one clear line: %q", r.stderr)
			}
		})
	}
}

// An argument that is not UTF-8 is refused without being shown: it may
// be the bearer token (after --token, or in --token=…), and the refusal
// printed it whole, into logs that keep stderr.
func TestArgumentNotUTF8IsNotShown(t *testing.T) {
	const secret = "s3cr3t-bearer-token"
	for _, args := range [][]string{
		{"--token", secret + "\xff", "orders", "get", "x"},
		{"--token=" + secret + "\xff", "orders", "get", "x"},
	} {
		r := run(t, "127.0.0.1:1", args...)
		if r.code != cli.ExitUsage || strings.Contains(r.stderr, secret) {
			t.Errorf("%q: exit %d, stderr %q; want %d without the token", args[0], r.code, r.stderr, cli.ExitUsage)
		}
	}
}

// An order whose first events were removed from the log (a stream the
// server could not make immutable) is not shown as a shorter history:
// audit history and audit at fail, with a non-zero exit.
func TestHistoryWithAGapFails(t *testing.T) {
	ns := estest.StartServer(t)
	_, js := estest.Connect(t, ns)
	estest.MutableStream(t, js, "ORDERS", "orders.*")
	g := server(t, "NATS_URL", ns.ClientURL()).GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "gap-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:5.00"))
	ok(t, run(t, g, "orders", "add-item", "gap-1", "B", "1", "1.00"))
	ok(t, run(t, g, "audit", "history", "gap-1"))
	st, err := js.Stream(t.Context(), "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(t.Context(), jetstream.WithPurgeSubject("orders.gap-1"), jetstream.WithPurgeKeep(1)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"audit", "history", "gap-1"}, {"audit", "at", "gap-1", "--revision", "1"}} {
		if r := run(t, g, args...); r.code == cli.ExitOK || r.stdout != "" {
			t.Errorf("%v of an order missing its first event: exit %d, %q", args, r.code, r.stdout)
		}
	}
}

func TestHelpNeedsNoServer(t *testing.T) {
	r := run(t, "127.0.0.1:1", "orders", "create", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "SKU:QTY:PRICE") {
		t.Fatalf("help: %d %s", r.code, r.stdout)
	}
	r = run(t, "127.0.0.1:1", "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "bash completion") {
		t.Fatalf("completion: %d %.100s", r.code, r.stdout)
	}
}

func TestParkedCommands(t *testing.T) {
	// A payment provider that always fails: the job parks after one try.
	a := server(t, "ROLES", "command,query,audit,payments,gateway", "PAYMENT_SIM_FAILURE_RATE", "1", "PAYMENT_MAX_ATTEMPTS", "1")
	g := a.GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "pk-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:1.00",
		"--line1", "1", "--city", "Rome", "--country", "IT"))
	ok(t, run(t, g, "orders", "place", "pk-1"))
	var r result
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = ok(t, run(t, g, "admin", "parked", "list", "-o", "json"))
		if strings.Contains(r.stdout, "pk-1") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling the admin API, as an operator would
	}
	parked, _ := jsonOf(t, r.stdout)["parked"].([]any)
	if len(parked) != 1 || parked[0].(map[string]any)["kind"] != "PAYMENT_JOB_KIND_CHARGE" {
		t.Fatalf("parked list: %s", r.stdout)
	}
	r = ok(t, run(t, g, "admin", "parked", "list"))
	if !strings.Contains(r.stdout, "pk-1") || !strings.Contains(r.stdout, "charge") {
		t.Fatalf("parked table: %s", r.stdout)
	}
	r = ok(t, run(t, g, "admin", "parked", "retry", "pk-1"))
	if !strings.Contains(r.stdout, "completed 0, parked again 1") {
		t.Fatalf("retry against a failing provider: %s", r.stdout)
	}
	// Settled by hand: the job leaves the park without running; there is
	// then nothing to settle, and a kind that is neither is a usage error.
	fails(t, run(t, g, "admin", "parked", "settle", "pk-1", "--kind", "refund"), cli.ExitNotFound)
	fails(t, run(t, g, "admin", "parked", "settle", "pk-1", "--kind", "both"), cli.ExitUsage)
	ok(t, run(t, g, "admin", "parked", "settle", "pk-1", "--kind", "charge"))
	r = ok(t, run(t, g, "admin", "parked", "list", "-o", "json"))
	if parked, _ := jsonOf(t, r.stdout)["parked"].([]any); len(parked) != 0 {
		t.Fatalf("parked list after the settle: %s", r.stdout)
	}
	fails(t, run(t, g, "admin", "parked", "settle", "pk-1", "--kind", "charge"), cli.ExitNotFound)
}

// REVISION counts the order's own events and is what --expected-revision
// takes; POSITION is where its last event is in the log of all orders.
func TestRevisionColumnIsTheOrdersOwn(t *testing.T) {
	g := server(t).GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "rev-a", "--customer", "c", "--currency", "EUR"))
	ok(t, run(t, g, "orders", "create", "--order-id", "rev-b", "--customer", "c", "--currency", "EUR"))
	r := ok(t, run(t, g, "orders", "add-item", "rev-a", "A", "1", "1.00", "--expected-revision", "1"))
	if !regexp.MustCompile(`(?m)^REVISION\s+2$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^POSITION\s+3$`).MatchString(r.stdout) {
		t.Fatalf("add-item at revision 1:\n%s", r.stdout)
	}
	r = ok(t, run(t, g, "audit", "history", "rev-a"))
	if !regexp.MustCompile(`(?m)^2\s`).MatchString(r.stdout) {
		t.Fatalf("history:\n%s", r.stdout)
	}
}

func TestForgetCustomer(t *testing.T) {
	g := server(t).GRPC
	ok(t, run(t, g, "orders", "create", "--order-id", "fg-1", "--request-id", "fg-1", "--customer", "cust-fg", "--currency", "EUR",
		"--item", "BOOK-1:1:12.50", "--name", "Ada", "--line1", "1 Analytical Way", "--city", "London", "--country", "GB"))
	ok(t, run(t, g, "orders", "place", "fg-1", "--request-id", "fg-2"))
	ok(t, run(t, g, "orders", "pay", "fg-1", "--ref", "psp-1", "--amount", "12.50", "--request-id", "fg-3"))
	ok(t, run(t, g, "orders", "ship", "fg-1", "--carrier", "DHL", "--tracking", "JD1", "--request-id", "fg-4"))
	r := ok(t, run(t, g, "admin", "forget-customer", "cust-fg", "--request-id", "forget-1", "-o", "json"))
	pos := jsonOf(t, r.stdout)["position"].(string)
	r = ok(t, run(t, g, "orders", "get", "fg-1", "--min-position", pos))
	for _, want := range []string{"SHIP TO", "[erased]", "SHIPPED BY", "DHL [erased]", "12.50 EUR"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get after forgetting lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Analytical") || strings.Contains(r.stdout, "JD1") {
		t.Errorf("get after forgetting shows personal data:\n%s", r.stdout)
	}
	r = ok(t, run(t, g, "audit", "history", "fg-1"))
	if !strings.Contains(r.stdout, "tracking=[erased]") || strings.Contains(r.stdout, "JD1") {
		t.Errorf("history after forgetting:\n%s", r.stdout)
	}
	r = ok(t, run(t, g, "audit", "history", "_customers"))
	if !strings.Contains(r.stdout, "CustomerForgotten") || !strings.Contains(r.stdout, "customer=cust-fg") {
		t.Errorf("the erasure is not in the audit trail:\n%s", r.stdout)
	}
	// Another customer with personal data (and so a key) is not forgotten
	// under a request id that forgot someone else.
	ok(t, run(t, g, "orders", "create", "--order-id", "fg-other", "--request-id", "fg-other", "--customer", "cust-other", "--currency", "EUR",
		"--name", "Bo", "--line1", "2 Elsewhere Road", "--city", "Leeds", "--country", "GB"))
	if r := run(t, g, "admin", "forget-customer", "cust-other", "--request-id", "forget-1"); r.code == 0 {
		t.Errorf("a request id reused for another customer was accepted: %s", r.stdout)
	}
}

// A command given no --request-id whose answer never came may have been
// applied: the error names the request id ordersctl made, and the command
// run again under it is answered as the first (one order, not two); given
// one, the user has it already.
func TestLostAnswerNamesTheRequestIDToRetryWith(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	_ = lis.Close()
	r := run(t, down, "orders", "create", "--customer", "c", "--currency", "EUR", "--timeout", "1s")
	m := regexp.MustCompile(`--request-id ([0-9a-f-]{36})\s*$`).FindStringSubmatch(r.stderr)
	if r.code != cli.ExitUnavailable || m == nil {
		t.Fatalf("exit %d, stderr %q: want %d naming the request id to retry with", r.code, r.stderr, cli.ExitUnavailable)
	}
	g := server(t).GRPC
	first := ok(t, run(t, g, "orders", "create", "--customer", "c", "--currency", "EUR", "--request-id", m[1], "-o", "json"))
	again := ok(t, run(t, g, "orders", "create", "--customer", "c", "--currency", "EUR", "--request-id", m[1], "-o", "json"))
	if first.stdout != again.stdout {
		t.Fatalf("the retry under the named request id answered\n%s\nnot the first answer\n%s", again.stdout, first.stdout)
	}
	if r := run(t, down, "orders", "place", "x-1", "--request-id", "mine", "--timeout", "1s"); strings.Contains(r.stderr, "--request-id") {
		t.Fatalf("given --request-id, the error repeats it: %q", r.stderr)
	}
}
