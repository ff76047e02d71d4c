package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// call describes one ordersctl invocation beyond its arguments.
type call struct {
	ctx     context.Context // default t.Context()
	addr    string
	env     map[string]string // added to ORDERS_ADDR
	out     io.Writer         // default a buffer, returned as stdout
	term    bool              // stdout is a terminal
	errTerm bool              // stderr is a terminal
	in      io.Reader         // stdin; default none
}

func (c call) run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"ORDERS_ADDR": c.addr}
	for k, v := range c.env {
		env[k] = v
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = t.Context()
	}
	var w io.Writer = &out
	if c.out != nil {
		w = c.out
	}
	code := cli.Run(ctx, args, cli.IO{Out: w, Err: &errb, In: c.in, Getenv: func(k string) string { return env[k] },
		IsTerminal: c.term, ErrIsTerminal: c.errTerm})
	return result{code, out.String(), errb.String()}
}

// fails asserts an exit code and that the error is one line on stderr.
func fails(t *testing.T, r result, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d: %s%s", r.code, code, r.stdout, r.stderr)
	}
	if r.stdout != "" {
		t.Fatalf("a failure wrote to stdout: %q", r.stdout)
	}
	if s := strings.TrimSuffix(r.stderr, "\n"); s == "" || strings.Contains(s, "\n") || !strings.HasPrefix(s, "ordersctl: ") {
		t.Fatalf("error is not one clear line: %q", r.stderr)
	}
	return r
}

// at is the value at path in m.
func at(t *testing.T, m map[string]any, path ...string) any {
	t.Helper()
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v: no %s in %v", path, p, v)
		}
		v = mm[p]
	}
	return v
}

func str(t *testing.T, m map[string]any, path ...string) string {
	t.Helper()
	v := at(t, m, path...)
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%v is %T %v, not a string", path, v, v)
	}
	return s
}

// amount reads the money object at path as "<minor> <currency> <decimal>".
func amount(t *testing.T, m map[string]any, path ...string) string {
	t.Helper()
	v := at(t, m, path...)
	o, ok := v.(map[string]any)
	minor, isNum := o["minor"].(float64)
	if !ok || !isNum || len(o) < 2 {
		t.Fatalf("%v is %T %v, not {minor, currency, decimal}", path, v, v)
	}
	return fmt.Sprintf("%d %v %v", int64(minor), o["currency"], o["decimal"])
}

// Every command that changes an order prints the order as it now is.
func TestOrderChangeOutput(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "chg-1", "--request-id", "c1", "--customer", "cust-1", "--currency", "EUR", "--item", "BOOK-1:1:10.00"))
	golden(t, "set-address.txt", ok(t, c.run(t, "orders", "set-address", "chg-1", "--request-id", "c2",
		"--name", "Ada", "--line1", "1 Analytical Way", "--postal-code", "NW1", "--city", "London", "--country", "GB")).stdout)
	golden(t, "add-item.txt", ok(t, c.run(t, "orders", "add-item", "chg-1", "PEN-9", "3", "1.99", "--request-id", "c3")).stdout)
	golden(t, "set-qty.txt", ok(t, c.run(t, "orders", "set-qty", "chg-1", "PEN-9", "5", "--request-id", "c4")).stdout)
	golden(t, "remove-item.txt", ok(t, c.run(t, "orders", "remove-item", "chg-1", "BOOK-1", "--request-id", "c5")).stdout)
	ok(t, c.run(t, "orders", "place", "chg-1", "--request-id", "c6"))
	golden(t, "pay.txt", ok(t, c.run(t, "orders", "pay", "chg-1", "--ref", "psp-9", "--amount", "9.95", "--request-id", "c7")).stdout)
	golden(t, "ship.txt", ok(t, c.run(t, "orders", "ship", "chg-1", "--carrier", "DHL", "--tracking", "JD9", "--request-id", "c8")).stdout)
	golden(t, "deliver.txt", ok(t, c.run(t, "orders", "deliver", "chg-1", "--request-id", "c9")).stdout)

	// The same commands with -o json: the response's stable field names.
	ok(t, c.run(t, "orders", "create", "--order-id", "chg-2", "--customer", "cust-1", "--currency", "JPY"))
	r := ok(t, c.run(t, "orders", "add-item", "chg-2", "TEA", "2", "1200", "-o", "json"))
	if m := jsonOf(t, r.stdout); amount(t, m, "order", "total") != "2400 JPY 2400" || str(t, m, "position") == "" {
		t.Fatalf("add-item JSON: %s", r.stdout)
	}
	r = ok(t, c.run(t, "orders", "set-qty", "chg-2", "TEA", "3", "-o", "json"))
	if amount(t, jsonOf(t, r.stdout), "order", "total") != "3600 JPY 3600" {
		t.Fatalf("set-qty JSON: %s", r.stdout)
	}
	r = ok(t, c.run(t, "orders", "set-address", "chg-2", "--line1", "1-1", "--city", "Tokyo", "--country", "JP", "-o", "json"))
	if str(t, jsonOf(t, r.stdout), "order", "shippingAddress", "city") != "Tokyo" {
		t.Fatalf("set-address JSON: %s", r.stdout)
	}
	ok(t, c.run(t, "orders", "place", "chg-2"))
	r = ok(t, c.run(t, "orders", "pay", "chg-2", "--declined", "--ref", "psp-x", "--reason", "insufficient funds", "-o", "json"))
	if m := jsonOf(t, r.stdout); str(t, m, "order", "status") != "ORDER_STATUS_PAYMENT_DECLINED" || str(t, m, "order", "declineReason") != "insufficient funds" {
		t.Fatalf("declined payment JSON: %s", r.stdout)
	}
}

// A payment's --currency is the payment's, sent with it: one in another
// currency than the order's is refused, not recorded in the order's.
// Before, the flag only set the amount's decimals, and 27.00 USD was
// recorded as 27.00 EUR.
func TestPayInAnotherCurrencyIsRefused(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "cur-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:27.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO"))
	ok(t, c.run(t, "orders", "place", "cur-1"))
	fails(t, c.run(t, "orders", "pay", "cur-1", "--ref", "psp-usd", "--amount", "27.00", "--currency", "USD"), cli.ExitUsage)
	ok(t, c.run(t, "orders", "pay", "cur-1", "--ref", "psp-eur", "--amount", "27.00", "--currency", "eur"))
}

func TestCancel(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "can-1", "--request-id", "k1", "--customer", "c", "--currency", "GBP", "--item", "A:2:3.50"))
	golden(t, "cancel.txt", ok(t, c.run(t, "orders", "cancel", "can-1", "--reason", "changed my mind", "--request-id", "k2")).stdout)
	// Repeating the request id returns the original result.
	ok(t, c.run(t, "orders", "cancel", "can-1", "--reason", "changed my mind", "--request-id", "k2"))
	// A new request on a cancelled order is a conflict.
	fails(t, c.run(t, "orders", "cancel", "can-1", "--request-id", "k3"), cli.ExitConflict)
	ok(t, c.run(t, "orders", "create", "--order-id", "can-2", "--customer", "c", "--currency", "GBP"))
	r := ok(t, c.run(t, "orders", "cancel", "can-2", "--reason", "dup", "-o", "json"))
	if m := jsonOf(t, r.stdout); str(t, m, "order", "status") != "ORDER_STATUS_CANCELLED" || str(t, m, "order", "cancelReason") != "dup" {
		t.Fatalf("cancel JSON: %s", r.stdout)
	}
}

// Changing lines or skipping a step after placing is a conflict (exit 3).
func TestChangesAfterPlacingConflict(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "ri-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:1.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO"))
	ok(t, c.run(t, "orders", "place", "ri-1"))
	fails(t, c.run(t, "orders", "remove-item", "ri-1", "A"), cli.ExitConflict)
	fails(t, c.run(t, "orders", "set-qty", "ri-1", "A", "2"), cli.ExitConflict)
	fails(t, c.run(t, "orders", "add-item", "ri-1", "B", "1", "1.00"), cli.ExitConflict)
	fails(t, c.run(t, "orders", "ship", "ri-1"), cli.ExitConflict)
}

func TestCreateFromFile(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	file := filepath.Join(t.TempDir(), "order.json")
	body := `{"orderId": "file-1", "requestId": "f1", "customerId": "from-file", "currency": "EUR",
		"lines": [{"sku": "BOOK-1", "quantity": "2", "unitPrice": "1250"}],
		"shippingAddress": {"name": "Ada", "line1": "1 Analytical Way", "city": "London", "country": "GB"}}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	// Flags override the file's fields and add lines.
	r := ok(t, c.run(t, "orders", "create", "--file", file, "--customer", "cust-flag", "--item", "PEN-9:1:0.99"))
	golden(t, "create-file.txt", r.stdout)
	fails(t, c.run(t, "orders", "create", "--file", filepath.Join(t.TempDir(), "missing.json")), cli.ExitUsage)
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"customerId": 7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, c.run(t, "orders", "create", "--file", bad), cli.ExitUsage)
}

// An address flag with --file overrides that field of the file's address,
// as every flag overrides its field: it replaced the whole address, which
// became an address of one field.
func TestCreateFromFileWithAnAddressFlag(t *testing.T) {
	c := call{addr: server(t).GRPC}
	file := filepath.Join(t.TempDir(), "order.json")
	body := `{"orderId": "file-2", "customerId": "from-file", "currency": "EUR",
		"shippingAddress": {"name": "Ada", "line1": "1 Analytical Way", "city": "London", "country": "GB"}}`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r := ok(t, c.run(t, "orders", "create", "--file", file, "--city", "Manchester", "-o", "json"))
	m := jsonOf(t, r.stdout)
	for field, want := range map[string]string{"name": "Ada", "line1": "1 Analytical Way", "city": "Manchester", "country": "GB"} {
		if got := str(t, m, "order", "shippingAddress", field); got != want {
			t.Errorf("shippingAddress.%s = %q, want %q: %s", field, got, want, r.stdout)
		}
	}
}

func TestListFiltersAndPaging(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	for _, id := range []string{"l-1", "l-2", "l-3"} {
		ok(t, c.run(t, "orders", "create", "--order-id", id, "--customer", "cust-l", "--currency", "EUR", "--item", "A:1:2.50",
			"--line1", "1", "--city", "Oslo", "--country", "NO"))
	}
	ok(t, c.run(t, "orders", "create", "--order-id", "other-1", "--customer", "cust-other", "--currency", "USD"))
	r := ok(t, c.run(t, "orders", "place", "l-2", "-o", "json"))
	pos := str(t, jsonOf(t, r.stdout), "position")
	created := str(t, jsonOf(t, ok(t, c.run(t, "orders", "get", "l-1", "--min-position", pos, "--max-wait", "10s", "-o", "json")).stdout), "order", "createdAt")
	createdAt, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		t.Fatal(err)
	}

	golden(t, "list-customer.txt", ok(t, c.run(t, "orders", "list", "--customer", "cust-l", "--min-position", pos, "--max-wait", "10s")).stdout)
	golden(t, "list-placed.txt", ok(t, c.run(t, "orders", "list", "--status", "placed", "--min-position", pos, "--max-wait", "10s")).stdout)

	ids := func(r result) string {
		t.Helper()
		var got []string
		for _, o := range jsonOf(t, r.stdout)["orders"].([]any) {
			got = append(got, o.(map[string]any)["orderId"].(string))
		}
		return strings.Join(got, ",")
	}
	before := createdAt.Add(-time.Hour).Format(time.RFC3339)
	after := time.Now().Add(time.Hour).Format(time.RFC3339)
	if got := ids(ok(t, c.run(t, "orders", "list", "--after", before, "--customer", "cust-l", "-o", "json"))); got != "l-3,l-2,l-1" {
		t.Fatalf("--after an hour before: %s", got)
	}
	if got := ids(ok(t, c.run(t, "orders", "list", "--after", after, "-o", "json"))); got != "" {
		t.Fatalf("--after an hour ahead: %s", got)
	}
	if got := ids(ok(t, c.run(t, "orders", "list", "--before", before, "-o", "json"))); got != "" {
		t.Fatalf("--before an hour ago: %s", got)
	}
	if got := ids(ok(t, c.run(t, "orders", "list", "--before", after, "--status", "draft", "-o", "json"))); got != "other-1,l-3,l-1" {
		t.Fatalf("--before an hour ahead, drafts: %s", got)
	}

	// One page: one order, and the way on is told on stderr.
	r = ok(t, c.run(t, "orders", "list", "--customer", "cust-l", "--page-size", "1"))
	if n := strings.Count(r.stdout, "l-"); n != 1 || !strings.HasPrefix(r.stderr, "more: --page-token ") {
		t.Fatalf("one page: %q %q", r.stdout, r.stderr)
	}
	next := strings.TrimSpace(strings.TrimPrefix(r.stderr, "more: --page-token "))
	next = strings.TrimSuffix(next, " (or --all)")
	if got := ids(ok(t, c.run(t, "orders", "list", "--customer", "cust-l", "--page-size", "1", "--page-token", next, "-o", "json"))); got != "l-2" {
		t.Fatalf("second page: %s", got)
	}
	// --all follows every page: the same table as one big page.
	r = ok(t, c.run(t, "orders", "list", "--customer", "cust-l", "--page-size", "1", "--all"))
	if r.stderr != "" {
		t.Fatalf("--all still offers more: %q", r.stderr)
	}
	golden(t, "list-customer.txt", r.stdout)
	m := jsonOf(t, ok(t, c.run(t, "orders", "list", "--customer", "cust-l", "--page-size", "2", "--all", "-o", "json")).stdout)
	if m["nextPageToken"] != "" || len(m["orders"].([]any)) != 3 {
		t.Fatalf("--all JSON: %v", m)
	}
	fails(t, c.run(t, "orders", "list", "--status", "charged"), cli.ExitUsage)
	fails(t, c.run(t, "orders", "list", "--after", "yesterday"), cli.ExitUsage)
}

func TestAuditAtTime(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	r := ok(t, c.run(t, "orders", "create", "--order-id", "at-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:5.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO", "-o", "json"))
	created := str(t, jsonOf(t, r.stdout), "order", "updatedAt")
	ok(t, c.run(t, "orders", "place", "at-1"))
	// As of the creation time the order is a draft; as of now it is placed.
	r = ok(t, c.run(t, "audit", "at", "at-1", "--time", created))
	golden(t, "at-time.txt", r.stdout)
	r = ok(t, c.run(t, "audit", "at", "at-1", "--time", time.Now().Add(time.Hour).Format(time.RFC3339), "-o", "json"))
	if str(t, jsonOf(t, r.stdout), "order", "status") != "ORDER_STATUS_PLACED" {
		t.Fatalf("state now: %s", r.stdout)
	}
	// A time copied from the history's TIME column includes the event it
	// shows: printed to the second, it fell before the event's own
	// nanoseconds, and the state was the one before it.
	placedAt := ""
	for _, line := range strings.Split(ok(t, c.run(t, "audit", "history", "at-1")).stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[3] == "OrderPlaced" {
			placedAt = f[1]
		}
	}
	if placedAt == "" {
		t.Fatal("the history shows no OrderPlaced")
	}
	r = ok(t, c.run(t, "audit", "at", "at-1", "--time", placedAt, "-o", "json"))
	if str(t, jsonOf(t, r.stdout), "order", "status") != "ORDER_STATUS_PLACED" {
		t.Fatalf("state at the time the history shows for OrderPlaced (%s): %s", placedAt, r.stdout)
	}
	fails(t, c.run(t, "audit", "at", "at-1", "--time", "2000-01-01T00:00:00Z"), cli.ExitNotFound)
	fails(t, c.run(t, "audit", "at", "at-1", "--time", created, "--revision", "1"), cli.ExitUsage)
	fails(t, c.run(t, "audit", "at", "at-1"), cli.ExitUsage)
	fails(t, c.run(t, "audit", "at", "nope", "--revision", "1"), cli.ExitNotFound)
}

// lines is a writer that hands each complete line to a channel, so a test
// can wait for output of a command still running.
type lines struct {
	mu   sync.Mutex
	buf  []byte
	seen chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.seen <- string(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

func TestExport(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "ex-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:5.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO"))
	ok(t, c.run(t, "orders", "create", "--order-id", "ex-2", "--customer", "c", "--currency", "EUR", "--item", "A:1:5.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO"))
	ok(t, c.run(t, "orders", "place", "ex-1"))

	file := filepath.Join(t.TempDir(), "events.jsonl")
	r := ok(t, c.run(t, "audit", "export", "--file", file))
	if r.stdout != "" {
		t.Fatalf("export --file wrote to stdout: %q", r.stdout)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	events := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(events) != 3 {
		t.Fatalf("export --file: %d lines\n%s", len(events), b)
	}
	for i, l := range events {
		if m := jsonOf(t, l); m["position"] != fmt.Sprint(i+1) {
			t.Fatalf("line %d: position %v", i, m["position"])
		}
	}

	r = ok(t, c.run(t, "audit", "export", "--type", "OrderPlaced"))
	if l := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(l) != 1 || jsonOf(t, l[0])["type"] != "OrderPlaced" {
		t.Fatalf("--type OrderPlaced: %s", r.stdout)
	}
	r = ok(t, c.run(t, "audit", "export", "--order", "ex-2"))
	if l := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(l) != 1 || jsonOf(t, l[0])["orderId"] != "ex-2" {
		t.Fatalf("--order ex-2: %s", r.stdout)
	}
	fails(t, c.run(t, "audit", "export", "--order", "a.b"), cli.ExitUsage)

	// --follow streams until the user stops it, which is success: exit 0,
	// nothing on stderr, every line received written out.
	ctx, stop := context.WithCancel(t.Context())
	out := &lines{seen: make(chan string, 16)}
	done := make(chan result, 1)
	go func() {
		done <- call{ctx: ctx, addr: g, out: out}.run(t, "audit", "export", "--order", "ex-1", "--follow")
	}()
	next := func() map[string]any {
		t.Helper()
		select {
		case l := <-out.seen:
			return jsonOf(t, l)
		case r := <-done:
			t.Fatalf("export --follow ended early: %+v", r)
		}
		return nil
	}
	if ty := next()["type"]; ty != "OrderCreated" {
		t.Fatalf("first followed event: %v", ty)
	}
	if ty := next()["type"]; ty != "OrderPlaced" {
		t.Fatalf("second followed event: %v", ty)
	}
	ok(t, c.run(t, "orders", "cancel", "ex-1", "--reason", "live"))
	if ty := next()["type"]; ty != "OrderCancelled" {
		t.Fatalf("event appended while following: %v", ty)
	}
	stop()
	r = <-done
	if r.code != cli.ExitOK || r.stderr != "" {
		t.Fatalf("stopped --follow: exit %d, stderr %q", r.code, r.stderr)
	}
}

// failing is an output whose every write fails.
type failing struct{ err error }

func (f failing) Write([]byte) (int, error) { return 0, f.err }

func TestExportWriteErrors(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "we-1", "--customer", "c", "--currency", "EUR"))
	// The error's wording mentions "flag", "arg" and "charge": it is still
	// not a usage error, only a failed write.
	broken := failing{errors.New("disk too large to charge: bad flag arg")}
	for _, args := range [][]string{{"audit", "export"}, {"audit", "export", "--follow=false", "--order", "we-1"}} {
		r := fails(t, call{addr: g, out: broken}.run(t, args...), cli.ExitOther)
		if !strings.Contains(r.stderr, "writing the output: disk too large") {
			t.Fatalf("%v: %q", args, r.stderr)
		}
	}
	// A following export fails on the first event it cannot write, too.
	r := fails(t, call{addr: g, out: broken}.run(t, "audit", "export", "--follow"), cli.ExitOther)
	if !strings.Contains(r.stderr, "writing the output") {
		t.Fatalf("--follow: %q", r.stderr)
	}
	// A full disk, through --file.
	if _, err := os.Stat("/dev/full"); err == nil {
		r := fails(t, c.run(t, "audit", "export", "--file", "/dev/full"), cli.ExitOther)
		if !strings.Contains(r.stderr, "writing the output") {
			t.Fatalf("--file /dev/full: %q", r.stderr)
		}
	}
}

// A command whose answer cannot be written (a closed pipe, a full disk)
// exits 5, as export and the table and JSON printers do: these text
// printers dropped the write error and exited 0 having printed nothing,
// so a script reading the erasure's position, or a verification's
// verdict, took an empty answer for success. (The parked commands' text
// printers go through the same written; this server runs no payments
// role to answer them.)
func TestUnwritableAnswerIsNoSuccess(t *testing.T) {
	g := server(t).GRPC
	ok(t, call{addr: g}.run(t, "orders", "create", "--order-id", "wr-1", "--customer", "cust-wr", "--currency", "EUR", "--item", "A:1:5.00"))
	broken := failing{syscall.EPIPE}
	for _, args := range [][]string{
		{"audit", "verify", "wr-1"},
		{"audit", "verify", "--all"},
		{"admin", "forget-customer", "cust-wr", "--request-id", "wr-forget"},
		{"admin", "rebuild"},
	} {
		r := fails(t, call{addr: g, out: broken}.run(t, args...), cli.ExitOther)
		if !strings.Contains(r.stderr, "writing the output") {
			t.Errorf("%v with stdout unwritable: stderr %q, want it to say the output could not be written", args, r.stderr)
		}
	}
}

func TestHealthAndRebuildTables(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	waitServing(t, g)
	golden(t, "health.txt", ok(t, c.run(t, "admin", "health")).stdout)
	m := jsonOf(t, ok(t, c.run(t, "admin", "health", "-o", "json")).stdout)
	if m["(server)"] != "SERVING" || m["orders.v1.OrderQueryService"] != "SERVING" {
		t.Fatalf("health JSON: %v", m)
	}
	ok(t, c.run(t, "orders", "create", "--order-id", "rb-1", "--customer", "c", "--currency", "EUR"))
	ok(t, c.run(t, "orders", "create", "--order-id", "rb-2", "--customer", "c", "--currency", "EUR"))
	r := ok(t, c.run(t, "admin", "rebuild"))
	if !regexp.MustCompile(`^rebuilt 2 events up to position 2 \(\d+ events/s\) on \S+/127\.0\.0\.1:\d+; swapped: true\n$`).MatchString(r.stdout) {
		t.Fatalf("rebuild table: %q", r.stdout)
	}
	if r.stderr != "" {
		t.Fatalf("rebuild drew progress off a terminal: %q", r.stderr)
	}
	// The rebuilt read model serves the orders.
	r = ok(t, c.run(t, "orders", "list", "-o", "json"))
	if n := len(jsonOf(t, r.stdout)["orders"].([]any)); n != 2 {
		t.Fatalf("after rebuild: %d orders", n)
	}

	// A server that is gone: health still shows its table, and exits 4.
	r = call{addr: closedAddr(t)}.run(t, "admin", "health", "--timeout", "2s")
	if r.code != cli.ExitUnavailable || !regexp.MustCompile(`\(server\) +UNKNOWN \(Unavailable\)`).MatchString(r.stdout) ||
		!strings.HasPrefix(r.stderr, "ordersctl: unavailable: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("health of a server that is gone: %+v", r)
	}
}

// With authentication on, the token comes from --token or ORDERS_TOKEN; a
// clerk can change orders (the currency lookup reads the order through the
// query service) but not read the audit log.
func TestToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("clerk-token-0123456789 alice clerk\nviewer-token-012345678 vera viewer\naudit-token-0123456789 ann auditor\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := apptest.Start(t, map[string]string{"ROLES": "command,query,audit,gateway", "AUTH_TOKENS_FILE": tokens})
	g := a.GRPC
	anon := call{addr: g}
	clerk := call{addr: g, env: map[string]string{"ORDERS_TOKEN": "clerk-token-0123456789"}}

	fails(t, anon.run(t, "orders", "create", "--order-id", "t-1", "--customer", "c", "--currency", "EUR"), cli.ExitOther)
	r := ok(t, anon.run(t, "orders", "create", "--order-id", "t-1", "--customer", "c", "--currency", "EUR", "--token", "clerk-token-0123456789", "-o", "json"))
	pos := str(t, jsonOf(t, r.stdout), "position")
	// Wait for the read model, so the currency comes from the query service
	// (a clerk may not read the audit log).
	ok(t, clerk.run(t, "orders", "get", "t-1", "--min-position", pos, "--max-wait", "10s"))
	r = ok(t, clerk.run(t, "orders", "add-item", "t-1", "A", "2", "1.25", "-o", "json"))
	if amount(t, jsonOf(t, r.stdout), "order", "total") != "250 EUR 2.50" {
		t.Fatalf("add-item as a clerk: %s", r.stdout)
	}
	ok(t, clerk.run(t, "orders", "set-address", "t-1", "--line1", "1", "--city", "Oslo", "--country", "NO"))
	ok(t, clerk.run(t, "orders", "place", "t-1"))
	r = ok(t, clerk.run(t, "orders", "pay", "t-1", "--ref", "psp", "--amount", "2.50", "-o", "json"))
	if str(t, jsonOf(t, r.stdout), "order", "status") != "ORDER_STATUS_PAID" {
		t.Fatalf("pay as a clerk: %s", r.stdout)
	}
	paid := str(t, jsonOf(t, r.stdout), "position")
	// An order the read model does not have, and the audit log refused: the
	// lookup's not-found is reported, with the way around it.
	r = fails(t, clerk.run(t, "orders", "add-item", "nope", "A", "1", "1.00"), cli.ExitNotFound)
	if !strings.Contains(r.stderr, "--currency") {
		t.Fatalf("no hint at --currency: %q", r.stderr)
	}
	// The flag in the environment loses to the flag on the command line.
	fails(t, clerk.run(t, "audit", "history", "t-1"), cli.ExitOther)
	r = ok(t, clerk.run(t, "audit", "history", "t-1", "--token", "audit-token-0123456789", "-o", "json"))
	if ev := jsonOf(t, r.stdout)["events"].([]any); len(ev) != 5 || ev[0].(map[string]any)["actor"] != "alice" {
		t.Fatalf("history: %s", r.stdout)
	}
	viewer := call{addr: g, env: map[string]string{"ORDERS_TOKEN": "viewer-token-012345678"}}
	fails(t, viewer.run(t, "orders", "cancel", "t-1"), cli.ExitOther)
	// A viewer may watch, from the payment on.
	w := startWatch(t, viewer, "orders", "watch", "t-1", "--min-position", paid, "--max-wait", "10s")
	if l := w.next(t); !strings.Contains(l, "paid") {
		t.Fatalf("viewer's watch: %q", l)
	}
	w.end(t)
}

// A node without the query role: the currency comes from the audit log;
// without the audit role as well, --currency is the way.
func TestCurrencyLookupFallback(t *testing.T) {
	a, _ := apptest.Start(t, map[string]string{"ROLES": "command,audit"})
	c := call{addr: a.GRPC}
	ok(t, c.run(t, "orders", "create", "--order-id", "fb-1", "--customer", "c", "--currency", "KWD"))
	r := ok(t, c.run(t, "orders", "add-item", "fb-1", "OIL", "1", "1.255", "-o", "json"))
	if amount(t, jsonOf(t, r.stdout), "order", "total") != "1255 KWD 1.255" {
		t.Fatalf("add-item through the audit log: %s", r.stdout)
	}

	b, _ := apptest.Start(t, map[string]string{"ROLES": "command"})
	c = call{addr: b.GRPC}
	ok(t, c.run(t, "orders", "create", "--order-id", "fb-2", "--customer", "c", "--currency", "JPY"))
	r = fails(t, c.run(t, "orders", "add-item", "fb-2", "TEA", "1", "1200"), cli.ExitOther)
	if !strings.Contains(r.stderr, "--currency") {
		t.Fatalf("no hint at --currency: %q", r.stderr)
	}
	r = ok(t, c.run(t, "orders", "add-item", "fb-2", "TEA", "1", "1200", "--currency", "jpy", "-o", "json"))
	if amount(t, jsonOf(t, r.stdout), "order", "total") != "1200 JPY 1200" {
		t.Fatalf("add-item --currency: %s", r.stdout)
	}
	fails(t, c.run(t, "orders", "add-item", "fb-2", "TEA", "1", "12.50", "--currency", "JPY"), cli.ExitUsage)
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

var escape = regexp.MustCompile("\x1b\\[|\r")

// Progress is drawn on stderr only when stderr is a terminal and the output
// is not JSON; stdout stays valid JSON or clean text whatever the terminals.
func TestProgressNeverCorruptsOutput(t *testing.T) {
	g := server(t).GRPC
	for _, id := range []string{"p-1", "p-2", "p-3"} {
		ok(t, call{addr: g}.run(t, "orders", "create", "--order-id", id, "--customer", "c", "--currency", "EUR"))
	}
	everyLineJSON := func(t *testing.T, r result) {
		t.Helper()
		if escape.MatchString(r.stdout) {
			t.Fatalf("terminal control codes in stdout: %q", r.stdout)
		}
		for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
			jsonOf(t, l)
		}
	}
	for _, tc := range []struct {
		name          string
		term, errTerm bool
		args          []string
		wantBar       bool
	}{
		{"rebuild -o json on a terminal", true, true, []string{"admin", "rebuild", "-o", "json"}, false},
		{"verify -o json on a terminal", true, true, []string{"audit", "verify", "--all", "-o", "json"}, false},
		{"rebuild piped, stderr a terminal", false, true, []string{"admin", "rebuild"}, true},
		{"rebuild on a terminal, stderr redirected", true, false, []string{"admin", "rebuild"}, false},
		{"rebuild with nothing a terminal", false, false, []string{"admin", "rebuild"}, false},
		{"verify piped, stderr a terminal", false, true, []string{"audit", "verify", "--all"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok(t, call{addr: g, term: tc.term, errTerm: tc.errTerm}.run(t, tc.args...))
			if slices.Contains(tc.args, "json") {
				everyLineJSON(t, r)
			} else if strings.Contains(r.stdout, "\r") || strings.Contains(r.stdout, "[=") {
				t.Fatalf("progress in stdout: %q", r.stdout)
			}
			if tc.wantBar && !strings.Contains(r.stderr, "rebuilding [") {
				t.Fatalf("no progress bar on a terminal stderr: %q", r.stderr)
			}
			if !tc.wantBar && tc.args[0] == "admin" && r.stderr != "" {
				t.Fatalf("progress drawn where it must not be: %q", r.stderr)
			}
		})
	}
}

// Colours only when stdout is a terminal, never with NO_COLOR, never in JSON.
func TestColour(t *testing.T) {
	g := server(t).GRPC
	ok(t, call{addr: g}.run(t, "orders", "create", "--order-id", "col-1", "--customer", "c", "--currency", "EUR"))
	status, event := "\x1b[33mdraft\x1b[0m", "\x1b[36mOrderCreated\x1b[0m"
	at := []string{"audit", "at", "col-1", "--revision", "1"}
	for _, tc := range []struct {
		name  string
		c     call
		args  []string
		paint string // "" for none
	}{
		{"terminal", call{addr: g, term: true}, at, status},
		{"terminal with NO_COLOR", call{addr: g, term: true, env: map[string]string{"NO_COLOR": "1"}}, at, ""},
		{"piped", call{addr: g, errTerm: true}, at, ""},
		{"terminal, history", call{addr: g, term: true}, []string{"audit", "history", "col-1"}, event},
		{"piped, history", call{addr: g}, []string{"audit", "history", "col-1"}, ""},
		{"terminal, JSON", call{addr: g, term: true, errTerm: true}, append(at, "-o", "json"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok(t, tc.c.run(t, tc.args...))
			if tc.paint != "" && !strings.Contains(r.stdout, tc.paint) {
				t.Fatalf("not coloured: %q", r.stdout)
			}
			if tc.paint == "" && escape.MatchString(r.stdout) {
				t.Fatalf("control codes: %q", r.stdout)
			}
			if slices.Contains(tc.args, "json") {
				jsonOf(t, r.stdout)
			}
		})
	}
}

// Usage errors are typed, not guessed from the wording: unknown commands
// and flags, wrong argument counts and half a client certificate exit 1
// before any call is made.
func TestUsageErrors(t *testing.T) {
	c := call{addr: closedAddr(t)}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus" for "ordersctl"`},
		{[]string{"orders", "bogus"}, `unknown command "bogus" for "ordersctl orders"`},
		{[]string{"admin", "parked", "bogus"}, `unknown command "bogus" for "ordersctl admin parked"`},
		{[]string{"orders", "place", "--charge-large"}, "unknown flag: --charge-large"},
		{[]string{"orders", "place", "a", "b"}, "accepts 1 arg(s), received 2"},
		{[]string{"orders", "list", "--page-size", "large"}, `invalid argument "large"`},
		{[]string{"orders", "get", "x", "--key", "client.key"}, "tls: --key needs --cert"},
		{[]string{"orders", "get", "x", "--cert", "client.pem"}, "tls: --cert needs --key"},
	} {
		r := fails(t, c.run(t, tc.args...), cli.ExitUsage)
		if !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
	// A group alone shows its help.
	if r := ok(t, c.run(t, "orders")); !strings.Contains(r.stdout, "add-item") {
		t.Fatalf("orders alone: %q", r.stdout)
	}
}

// Every command people type shows at least one example in --help.
func TestHelpExamples(t *testing.T) {
	c := call{addr: closedAddr(t)}
	if r := ok(t, c.run(t, "--help")); !strings.Contains(r.stdout, "stream revision") || !strings.Contains(r.stdout, "log position") {
		t.Errorf("--help does not say what revision and position are:\n%s", r.stdout)
	}
	for _, cmd := range [][]string{
		{"orders", "create"}, {"orders", "add-item"}, {"orders", "remove-item"}, {"orders", "set-qty"}, {"orders", "set-address"},
		{"orders", "place"}, {"orders", "pay"}, {"orders", "cancel"}, {"orders", "ship"}, {"orders", "deliver"}, {"orders", "get"},
		{"orders", "list"}, {"audit", "history"}, {"audit", "at"}, {"audit", "export"}, {"audit", "verify"},
		{"admin", "rebuild"}, {"admin", "health"}, {"admin", "parked", "list"}, {"admin", "parked", "retry"},
		{"admin", "parked", "settle"},
	} {
		r := ok(t, c.run(t, append(cmd, "--help")...))
		if !strings.Contains(r.stdout, "Examples:\n  ordersctl "+strings.Join(cmd, " ")) {
			t.Errorf("%v --help has no example:\n%s", cmd, r.stdout)
		}
	}
}

// waitServing watches ordersd's overall gRPC health until it is SERVING:
// the query service reports NOT_SERVING until its projection has caught up
// after start.
func waitServing(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		res, err := w.Recv()
		if err != nil {
			t.Fatalf("ordersd never became healthy: %v", err)
		}
		if res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
	}
}

// watching runs a watch until stopped; next returns its next output line.
type watching struct {
	out  *lines
	done chan result
	stop context.CancelFunc
}

func startWatch(t *testing.T, c call, args ...string) *watching {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	w := &watching{out: &lines{seen: make(chan string, 16)}, done: make(chan result, 1), stop: stop}
	c.ctx, c.out = ctx, w.out
	go func() { w.done <- c.run(t, args...) }()
	t.Cleanup(stop)
	return w
}

func (w *watching) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.out.seen:
		return l
	case r := <-w.done:
		t.Fatalf("watch ended early: %+v", r)
	}
	return ""
}

// end stops the watch, which is success.
func (w *watching) end(t *testing.T) {
	t.Helper()
	w.stop()
	if r := <-w.done; r.code != cli.ExitOK || r.stderr != "" {
		t.Fatalf("stopped watch: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestWatch(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	r := ok(t, c.run(t, "orders", "create", "--order-id", "w-1", "--customer", "watcher", "--currency", "EUR", "--item", "A:1:5.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO", "-o", "json"))
	pos := str(t, jsonOf(t, r.stdout), "position")
	// A list waits for the creation's commit, which the feed that a watch
	// of lists starts from follows: the creation is before the watch.
	ok(t, c.run(t, "orders", "list", "--customer", "watcher", "--min-position", pos, "--max-wait", "10s"))

	one := startWatch(t, c, "orders", "watch", "w-1")
	if f := strings.Split(one.next(t), "\t"); len(f) != 6 || f[1] != "w-1" || f[2] != "draft" || f[4] != "current" {
		t.Fatalf("first line: %q", f)
	}
	list := startWatch(t, c, "orders", "watch", "--customer", "watcher", "-o", "json")
	if m := jsonOf(t, list.next(t)); m["order"] != nil || m["position"] == "" {
		t.Fatalf("first JSON line: %v", m)
	}
	ok(t, c.run(t, "orders", "place", "w-1"))
	if f := strings.Split(one.next(t), "\t"); len(f) != 6 || f[2] != "placed" || f[4] != "OrderPlaced" {
		t.Fatalf("change line: %q", f)
	}
	if m := jsonOf(t, list.next(t)); m["eventType"] != "OrderPlaced" || str(t, m, "order", "orderId") != "w-1" {
		t.Fatalf("change JSON line: %v", m)
	}
	one.end(t)
	list.end(t)
	fails(t, c.run(t, "orders", "watch", "nope"), cli.ExitNotFound)
	fails(t, c.run(t, "orders", "watch", "w-1", "--customer", "x"), cli.ExitUsage)
	fails(t, c.run(t, "orders", "watch", "--status", "lost"), cli.ExitUsage)
}

// audit decode turns a payload as the log stores it (the protobuf of
// orders.v1.Event) into JSON, and refuses anything else.
func TestAuditDecode(t *testing.T) {
	payload, err := proto.Marshal(&ordersv1.Event{Event: &ordersv1.Event_OrderPlaced{OrderPlaced: &ordersv1.OrderPlaced{Total: 3097}}})
	if err != nil {
		t.Fatal(err)
	}
	r := ok(t, call{in: bytes.NewReader(payload)}.run(t, "audit", "decode"))
	if amount(t, jsonOf(t, r.stdout), "orderPlaced", "total") != "3097  <nil>" {
		t.Fatalf("decoded: %s", r.stdout)
	}
	fails(t, call{in: strings.NewReader("not protobuf")}.run(t, "audit", "decode"), cli.ExitUsage)
	fails(t, call{}.run(t, "audit", "decode"), cli.ExitUsage)
}

// TestPaymentTimeout runs the whole of ordersd with a short payment
// timeout and a payment provider slower than it: the order is cancelled by
// the system actor, as its history shows, and the deadline is listed while
// it is pending.
func TestPaymentTimeout(t *testing.T) {
	a, _ := apptest.Start(t, map[string]string{"PAYMENT_TIMEOUT": "2s", "PAYMENT_SIM_LATENCY": "4s", "PAYMENT_ATTEMPT_TIMEOUT": "10s"})
	c := call{addr: a.GRPC}
	ok(t, c.run(t, "orders", "create", "--order-id", "pt-1", "--customer", "c", "--currency", "EUR", "--item", "A:1:5.00",
		"--line1", "1", "--city", "Oslo", "--country", "NO"))
	ok(t, c.run(t, "orders", "place", "pt-1"))
	deadline := time.Now().Add(30 * time.Second)
	listed := false
	for {
		r := ok(t, c.run(t, "audit", "history", "pt-1", "-o", "json"))
		events := jsonOf(t, r.stdout)["events"].([]any)
		last := events[len(events)-1].(map[string]any)
		if last["type"] == "OrderCancelled" {
			if last["actor"] != "system" || !strings.Contains(r.stdout, "payment_timeout") {
				t.Fatalf("cancelled: %v", last)
			}
			break
		}
		if !listed {
			l := ok(t, c.run(t, "admin", "deadlines", "list", "pt-1"))
			listed = strings.Contains(l.stdout, "payment_timeout")
		}
		if time.Now().After(deadline) {
			t.Fatalf("not cancelled: %s", r.stdout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !listed {
		t.Fatal("the pending payment timeout was never listed")
	}
	if r := ok(t, c.run(t, "admin", "deadlines", "list", "pt-1")); strings.Contains(r.stdout, "pt-1") {
		t.Fatalf("a fired deadline is still listed: %s", r.stdout)
	}
}

// --request-id overrides the --file's requestId, as every flag overrides
// its field: a template with a requestId makes one order per flag value.
// Without the flag the file's is sent; with neither, a new one each run.
func TestCreateFileRequestID(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g}
	dir := t.TempDir()
	file := func(name, requestID string) string {
		path := filepath.Join(dir, name)
		body := `{` + requestID + `"customerId": "cust-tmpl", "currency": "EUR", "lines": [{"sku": "BOOK-1", "quantity": "1", "unitPrice": "1250"}]}`
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tmpl, bare := file("template.json", `"requestId": "tmpl-1", `), file("bare.json", "")
	// create makes an order and returns its id and the request id its
	// history records.
	create := func(args ...string) (orderID, requestID string) {
		t.Helper()
		r := ok(t, c.run(t, append([]string{"orders", "create", "-o", "json"}, args...)...))
		orderID = str(t, jsonOf(t, r.stdout), "order", "orderId")
		h := ok(t, c.run(t, "audit", "history", orderID, "-o", "json"))
		return orderID, str(t, at(t, jsonOf(t, h.stdout), "events").([]any)[0].(map[string]any), "requestId")
	}
	o1, r1 := create("--file", tmpl, "--request-id", "flag-1")
	o2, r2 := create("--file", tmpl, "--request-id", "flag-2")
	if r1 != "flag-1" || r2 != "flag-2" || o1 == o2 {
		t.Fatalf("--request-id flag-1 and flag-2 over the file's tmpl-1: orders %s and %s, request ids %q and %q", o1, o2, r1, r2)
	}
	o3, r3 := create("--file", tmpl)
	if o4, _ := create("--file", tmpl); r3 != "tmpl-1" || o4 != o3 || o3 == o1 {
		t.Fatalf("the file's own request id: orders %s then %s, request id %q", o3, o4, r3)
	}
	o5, r5 := create("--file", bare)
	o6, r6 := create("--file", bare)
	if r5 == "" || r6 == "" || r5 == r6 || o5 == o6 {
		t.Fatalf("neither flag nor file: orders %s and %s, request ids %q and %q", o5, o6, r5, r6)
	}
}

// A refund shows in the order's history (its ref, amount and the payment
// refunded) and in orders get.
func TestRefundShown(t *testing.T) {
	g := server(t).GRPC // without the payments role: the refund is recorded below, as it records it
	c := call{addr: g}
	ok(t, c.run(t, "orders", "create", "--order-id", "rf-1", "--customer", "cust-rf", "--currency", "EUR", "--item", "A:1:12.50",
		"--line1", "1 Way", "--city", "Oslo", "--country", "NO"))
	ok(t, c.run(t, "orders", "place", "rf-1"))
	ok(t, c.run(t, "orders", "pay", "rf-1", "--ref", "psp-rf", "--amount", "12.50"))
	ok(t, c.run(t, "orders", "cancel", "rf-1", "--reason", "changed mind"))
	conn, err := grpc.NewClient(g, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	res, err := ordersv1.NewOrderCommandServiceClient(conn).RecordRefund(t.Context(),
		&ordersv1.RecordRefundRequest{RequestId: "rf-1-refund", OrderId: "rf-1", RefundRef: "psp-rf-back", Amount: 1250})
	if err != nil {
		t.Fatal(err)
	}
	r := ok(t, c.run(t, "audit", "history", "rf-1"))
	if !regexp.MustCompile(`(?m)^5\s.*\sRefundIssued\s+ref=psp-rf-back amount=12\.50 EUR payment=psp-rf$`).MatchString(r.stdout) {
		t.Errorf("history shows no refund:\n%s", r.stdout)
	}
	r = ok(t, c.run(t, "orders", "get", "rf-1", "--min-position", fmt.Sprint(res.GetPosition()), "--max-wait", "10s"))
	if !regexp.MustCompile(`(?m)^REFUNDED\s+12\.50 EUR ref psp-rf-back$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^STATUS\s+cancelled$`).MatchString(r.stdout) {
		t.Errorf("get shows no refund:\n%s", r.stdout)
	}
}

// Help never shows ORDERS_TOKEN: it was the --token flag's default, which
// help prints, so a mistyped command put the secret on the terminal.
func TestHelpKeepsTheTokenSecret(t *testing.T) {
	c := call{addr: "127.0.0.1:1", env: map[string]string{"ORDERS_TOKEN": "s3cr3t-token-0123456789"}}
	for _, args := range [][]string{{"--help"}, {"orders"}, {"orders", "get", "--help"}, {"audit", "export", "--help"}} {
		r := c.run(t, args...)
		if strings.Contains(r.stdout+r.stderr, "s3cr3t") {
			t.Errorf("ordersctl %v printed the token:\n%s%s", args, r.stdout, r.stderr)
		}
	}
}

// ansi matches a colour escape.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// On a terminal, a table whose column is coloured in some cells stays
// aligned: every cell starts where its header does. Before, the tab
// writer counted the escapes' bytes, and the header of a coloured column,
// plain, stood nine columns off.
func TestColouredTablesStayAligned(t *testing.T) {
	g := server(t).GRPC
	c := call{addr: g, term: true}
	ok(t, c.run(t, "orders", "create", "--order-id", "col-1", "--customer", "col", "--currency", "EUR", "--item", "A:1:1.00"))
	ok(t, c.run(t, "orders", "create", "--order-id", "col-2", "--customer", "col", "--currency", "EUR", "--item", "A:1:1.00"))
	pos := str(t, jsonOf(t, ok(t, c.run(t, "orders", "cancel", "col-2", "--reason", "no", "-o", "json")).stdout), "position")
	for _, args := range [][]string{{"orders", "list", "--customer", "col", "--min-position", pos, "--max-wait", "10s"}, {"audit", "history", "col-2"}} {
		out := ok(t, c.run(t, args...)).stdout
		if !ansi.MatchString(out) {
			t.Fatalf("%v on a terminal: no colour to test: %q", args, out)
		}
		lines := strings.Split(strings.TrimRight(ansi.ReplaceAllString(out, ""), "\n"), "\n")
		starts := func(l string) []int {
			var at []int
			for i := 1; i < len(l); i++ {
				if l[i] != ' ' && l[i-1] == ' ' && i >= 2 && l[i-2] == ' ' {
					at = append(at, i)
				}
			}
			return at
		}
		header := starts(lines[0])
		if len(lines) < 2 {
			t.Fatalf("%v: no rows under the header: %q", args, out)
		}
		for _, l := range lines[1:] {
			got := starts(l)
			if n := min(len(got), len(header)); n < len(header)-1 || !slices.Equal(got[:n], header[:n]) {
				t.Errorf("%v: columns of %q start at %v, the header's at %v", args, l, got, header)
			}
		}
	}
}
