package console

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
)

func TestTraceLink(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct{ base, id, want string }{
		{"", id, ""},
		{"http://127.0.0.1:16686", id, "http://127.0.0.1:16686/trace/" + id},
		{"http://127.0.0.1:16686/", id, "http://127.0.0.1:16686/trace/" + id},
		{"https://traces.example/t?id={trace_id}", id, "https://traces.example/t?id=" + id},
		{"http://127.0.0.1:16686", "not-a-trace-id", ""},
		{"http://127.0.0.1:16686", "", ""},
	} {
		if got := traceLink(tc.base, tc.id); got != tc.want {
			t.Errorf("traceLink(%q, %q) = %q, want %q", tc.base, tc.id, got, tc.want)
		}
	}
}

// A post-sign-in redirect never leaves the console.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/orders/x?at=2":      "/console/orders/x?at=2",
		"":                            "/console/",
		"https://elsewhere.example/":  "/console/",
		"//elsewhere.example/console": "/console/",
		"/console/\\elsewhere":        "/console/",
		"/v1/orders":                  "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCSRFTokenIsPerSession(t *testing.T) {
	a, b := csrfToken("key", "token-a-0123456789"), csrfToken("key", "token-b-0123456789")
	if a == b || a != csrfToken("key", "token-a-0123456789") || a == "token-a-0123456789" || a == csrfToken("other key", "token-a-0123456789") {
		t.Fatalf("csrf tokens %q and %q: want stable per session and key, distinct between sessions and keys, not the cookie", a, b)
	}
}

func TestCommandsFollowTheLifecycle(t *testing.T) {
	names := func(st ordersv1.OrderStatus) (out []string) {
		for _, c := range commandsFor(st) {
			out = append(out, c.Name)
		}
		return out
	}
	for st, want := range map[ordersv1.OrderStatus]string{
		ordersv1.OrderStatus_ORDER_STATUS_DRAFT:            "place cancel",
		ordersv1.OrderStatus_ORDER_STATUS_PLACED:           "cancel",
		ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED: "cancel",
		ordersv1.OrderStatus_ORDER_STATUS_PAID:             "ship cancel",
		ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:          "deliver",
		ordersv1.OrderStatus_ORDER_STATUS_DELIVERED:        "",
		ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:        "",
	} {
		if got := fmt.Sprint(names(st)); got != "["+want+"]" {
			t.Errorf("%s: commands %s, want [%s]", st, got, want)
		}
	}
}

// The operations page tells a deadline that fired and is not enforced yet
// from a pending one and an overdue shipment.
func TestOperationsPageDeadlineStates(t *testing.T) {
	ts, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	d := &opsData{Deadlines: &ordersv1.ListDeadlinesResponse{Deadlines: []*ordersv1.Deadline{
		{OrderId: "waits", Kind: ordersv1.DeadlineKind_DEADLINE_KIND_PAYMENT_TIMEOUT},
		{OrderId: "owed", Kind: ordersv1.DeadlineKind_DEADLINE_KIND_PAYMENT_TIMEOUT, Fired: true},
		{OrderId: "late", Kind: ordersv1.DeadlineKind_DEADLINE_KIND_SHIPPING_SLA, Overdue: true},
	}}}
	if err := ts.pages["operations"].ExecuteTemplate(&b, "layout", &view{Data: d}); err != nil {
		t.Fatal(err)
	}
	for id, state := range map[string]string{"waits": "pending", "owed": "fired, not enforced yet", "late": "overdue"} {
		row := regexp.MustCompile(`(?s)<tr data-order="` + id + `">.*?</tr>`).FindString(b.String())
		if !strings.Contains(row, ">"+state+"</td>") {
			t.Errorf("row of %s does not say %q: %s", id, state, row)
		}
	}
}
