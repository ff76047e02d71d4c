package app_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sample is one Prometheus sample: its name, labels and value.
type sample struct {
	labels string
	value  float64
}

var sampleLine = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.e+-]+|NaN|\+Inf|-Inf)$`)

// scrape reads /metrics into samples by name.
func scrape(t *testing.T, base string) (map[string][]sample, string) {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	out := map[string][]sample{}
	for _, m := range sampleLine.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			continue
		}
		out[m[1]] = append(out[m[1]], sample{labels: m[2], value: v})
	}
	return out, string(b)
}

// sum adds the samples of name whose labels include every k="v" given.
func sum(ms map[string][]sample, name string, labels ...string) (float64, bool) {
	total, found := 0.0, false
	for _, s := range ms[name] {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && strings.Contains(s.labels, labels[i]+`="`+labels[i+1]+`"`)
		}
		if match {
			total, found = total+s.value, true
		}
	}
	return total, found
}

// After a workload with stale revisions, an undecodable message in the log
// and a paid and a declined order, /metrics counts each exactly: ABORTED
// answers, dead letters, payment attempts and outcomes; shows the worker
// pool; and the projection lag, in events and seconds, is back at 0.
func TestMetricsCountConflictsDeadLettersAndPayments(t *testing.T) {
	addrs, _ := run(t, t.TempDir(), "PAYMENT_SIM_DECLINE_OVER", "1000", "WORKER_POOL_SIZE", "3")
	base := "http://" + addrs.HTTP
	conn := dial(t, addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	ctx := t.Context()

	// Two orders: one within the simulator's limit (authorized), one over
	// it (declined).
	var last uint64
	for i, price := range []int64{500, 5000} {
		id := fmt.Sprintf("metrics-%d", i)
		if _, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "m", Currency: "EUR",
			Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: price}}, ShippingAddress: &ordersv1.Address{Line1: "1", City: "Oslo", Country: "NO"}}); err != nil {
			t.Fatal(err)
		}
		p, err := cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: id + "-place", OrderId: id})
		if err != nil {
			t.Fatal(err)
		}
		last = p.GetPosition()
	}
	// Three commands with a stale expected revision: each is a conflict
	// answered ABORTED. The command service finds the stale revision when
	// it loads the order, before any append, so these show in the RPC
	// metrics by code; orders.eventstore.conflicts counts only appends that
	// lost a race.
	const conflicts = 3
	stale := uint64(1)
	for i := range conflicts {
		_, err := cmd.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: fmt.Sprintf("stale-%d", i), OrderId: "metrics-0", ExpectedRevision: &stale, Reason: "x"})
		if status.Code(err) != codes.Aborted {
			t.Fatalf("stale revision: %v", err)
		}
	}
	// A message on an order's subject that is not an event.
	nc, err := nats.Connect("nats://" + addrs.NATS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if err := nc.Publish("orders.not-an-event", []byte("\xff garbage")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const cancelMethod = "orders.v1.OrderCommandService/CancelOrder"
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, body := scrape(t, base)
		got := map[string]float64{}
		missing := []string{}
		want := map[string]float64{
			"aborted":              conflicts,
			"dead_lettered":        1,
			"lag_events":           0,
			"lag_seconds":          0,
			"charge_authorized":    1,
			"charge_declined":      1,
			"outcome_authorized":   1,
			"outcome_declined":     1,
			"workers":              3,
			"after_last_placement": 1,
		}
		read := func(key, name string, labels ...string) {
			v, ok := sum(ms, name, labels...)
			if !ok {
				missing = append(missing, key)
			}
			got[key] = v
		}
		read("aborted", "rpc_server_call_duration_seconds_count", "rpc_method", cancelMethod, "rpc_response_status_code", "ABORTED")
		read("dead_lettered", "orders_projection_dead_lettered_total")
		read("lag_events", "orders_projection_lag_events")
		read("lag_seconds", "orders_projection_lag_seconds")
		read("charge_authorized", "orders_payments_attempts_total", "kind", "charge", "result", "authorized")
		read("charge_declined", "orders_payments_attempts_total", "kind", "charge", "result", "declined")
		read("outcome_authorized", "orders_payments_outcomes_total", "outcome", "authorized")
		read("outcome_declined", "orders_payments_outcomes_total", "outcome", "declined")
		read("workers", "orders_payments_workers")
		busy, okBusy := sum(ms, "orders_payments_workers_busy")
		if !okBusy {
			missing = append(missing, "workers_busy")
		}
		pos, _ := sum(ms, "orders_projection_position")
		got["after_last_placement"] = 0
		if pos > float64(last) {
			got["after_last_placement"] = 1
		}
		done := len(missing) == 0 && busy >= 0 && busy <= 3
		for k, v := range want {
			done = done && got[k] == v
		}
		if done {
			// Conflicts are counted, not dropped as errors of another kind.
			if v, _ := sum(ms, "rpc_server_call_duration_seconds_count", "rpc_method", cancelMethod); v != conflicts {
				t.Fatalf("CancelOrder calls counted %v times, want %d", v, conflicts)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: got %v, want %v, missing %v\n%.4000s", got, want, missing, grep(body, "orders_", "CancelOrder"))
		}
		time.Sleep(20 * time.Millisecond) // scraping, as Prometheus would
	}
}

// grep keeps the lines of s holding any of words.
func grep(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) && !strings.HasPrefix(l, "#") {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
