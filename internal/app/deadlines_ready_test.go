package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/services/deadlines"
)

// A payments node whose deadlines manager cannot follow the log (a
// consumer named like its own that it cannot update, as an operator might
// leave) schedules and enforces no payment timeout or shipping SLA: it is
// not ready, as with the payments manager, until the manager follows
// again. It was ready, every check "ok", with the manager retrying for
// good.
func TestDeadlinesNotFollowingIsNotReady(t *testing.T) {
	ns := estest.StartServer(t)
	_, stop := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command")
	stop()
	_, js := estest.Connect(t, ns)
	if _, err := js.CreateConsumer(t.Context(), "ORDERS", jetstream.ConsumerConfig{
		Durable: deadlines.LogConsumer, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy}); err != nil {
		t.Fatal(err)
	}
	addrs, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL())
	base := "http://" + addrs.HTTP
	// Until the check tells of the failure: before it, the node may be
	// merely starting.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body := getJSON(t, base+"/readyz")
		checks, _ := body["checks"].(map[string]any)
		if v, _ := checks["deadlines"].(string); strings.Contains(v, "retrying") {
			if code != http.StatusServiceUnavailable {
				t.Fatalf("readyz with the deadlines manager failing: %d %v", code, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never told of the deadlines manager failing: %d %v", code, body)
		}
	}
	if err := js.DeleteConsumer(t.Context(), "ORDERS", deadlines.LogConsumer); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, base+"/readyz", http.StatusOK)
}
