package app_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A watch of one customer's orders resumes across a restart of its node
// (a rolling upgrade) and goes on with the customer's next change, though
// other customers' orders changed after the customer's last one. The
// restarted node keeps the changes after its read model's checkpoint only,
// and the watch's last change lay below it: it was refused (OUT_OF_RANGE,
// list again) after every restart that followed another customer's change,
// until the shutdown told the watch the position the read model stopped at.
func TestWatchOfSomeOrdersResumesAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"DATA_DIR": dir, "ROLES": "command,query"}
	first := startRunning(t, vars)
	conn := dial(t, first.addrs.GRPC)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	query := ordersv1.NewOrderQueryServiceClient(conn)
	ctx := t.Context()
	create := func(cmd ordersv1.OrderCommandServiceClient, id, customer string) uint64 {
		t.Helper()
		res, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: customer, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetPosition()
	}
	mine := create(cmd, "w-mine-1", "watched")
	watch, err := query.WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "watched", Consistency: &ordersv1.Consistency{MinPosition: mine}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	from := m.GetPosition()
	// Other customers' orders, committed before the shutdown.
	var last uint64
	for _, id := range []string{"w-other-1", "w-other-2", "w-other-3"} {
		last = create(cmd, id, "other")
	}
	if _, err := query.ListOrders(ctx, &ordersv1.ListOrdersRequest{Consistency: &ordersv1.Consistency{MinPosition: last}}); err != nil {
		t.Fatal(err)
	}

	first.cancel()
	for {
		m, err := watch.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("watch at shutdown: %v, want UNAVAILABLE", err)
			}
			break
		}
		if m.GetOrder() != nil {
			t.Fatalf("watch of customer watched sent %s of customer %s", m.GetOrder().GetOrderId(), m.GetOrder().GetCustomerId())
		}
		from = m.GetPosition()
	}
	if from < last {
		t.Fatalf("watch at shutdown told to resume from %d, below the read model's %d", from, last)
	}
	<-first.finished
	if first.err != nil {
		t.Fatalf("Run: %v", first.err)
	}

	second := startRunning(t, vars)
	conn = dial(t, second.addrs.GRPC)
	resumed, err := ordersv1.NewOrderQueryServiceClient(conn).WatchOrders(ctx, &ordersv1.WatchOrdersRequest{CustomerId: "watched", FromPosition: &from})
	if err != nil {
		t.Fatal(err)
	}
	next := create(ordersv1.NewOrderCommandServiceClient(conn), "w-mine-2", "watched")
	m, err = resumed.Recv()
	if err != nil {
		t.Fatalf("watch resumed from position %d after the restart (last change before it at %d): %v", from, last, err)
	}
	if m.GetOrder().GetOrderId() != "w-mine-2" || m.GetPosition() != next {
		t.Fatalf("watch resumed after the restart got %s at %d, want w-mine-2 at %d", m.GetOrder().GetOrderId(), m.GetPosition(), next)
	}
}

// So does a REST watch of Server-Sent Events through the node's own
// gateway: its last event before the shutdown's error carries the position
// to resume from, which a browser's EventSource sends back as
// Last-Event-ID. The HTTP server's shutdown used to end the REST watch
// while its RPC was ending, so that event could be lost.
func TestEventSourceOfSomeOrdersResumesAcrossARestart(t *testing.T) {
	dir := t.TempDir()
	vars := map[string]string{"DATA_DIR": dir, "ROLES": "command,query,audit,gateway"}
	first := startRunning(t, vars)
	ctx := t.Context()
	create := func(addr, id, customer string) uint64 {
		t.Helper()
		res, err := ordersv1.NewOrderCommandServiceClient(dial(t, addr)).CreateOrder(ctx,
			&ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: customer, Currency: "EUR"})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetPosition()
	}
	mine := create(first.addrs.GRPC, "e-mine-1", "watched")
	body := openStream(t, fmt.Sprintf("http://%s/v1/orders:watch?customerId=watched&consistency.minPosition=%d", first.addrs.HTTP, mine), "text/event-stream")
	// The first event's data: the watch is open on the server.
	if _, err := body.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, id := range []string{"e-other-1", "e-other-2"} {
		last = create(first.addrs.GRPC, id, "other")
	}
	if _, err := ordersv1.NewOrderQueryServiceClient(dial(t, first.addrs.GRPC)).ListOrders(ctx,
		&ordersv1.ListOrdersRequest{Consistency: &ordersv1.Consistency{MinPosition: last}}); err != nil {
		t.Fatal(err)
	}

	first.cancel()
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	lastID := ""
	for line := range strings.Lines(string(rest)) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "id: "); ok {
			lastID = id
		}
	}
	if !strings.Contains(string(rest), "event: error") || lastID != strconv.FormatUint(last, 10) {
		t.Fatalf("Server-Sent Events at shutdown: last id %q, want %d, then an error event; got %q", lastID, last, rest)
	}
	<-first.finished
	if first.err != nil {
		t.Fatalf("Run: %v", first.err)
	}

	second := startRunning(t, vars)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+second.addrs.HTTP+"/v1/orders:watch?customerId=watched", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", lastID)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("EventSource resumed with Last-Event-ID %s after the restart: %d %s", lastID, res.StatusCode, b)
	}
	next := create(second.addrs.GRPC, "e-mine-2", "watched")
	resumed := bufio.NewReader(res.Body)
	want := fmt.Sprintf("id: %d", next)
	for {
		line, err := resumed.ReadString('\n')
		if err != nil {
			t.Fatalf("resumed EventSource ended before the change at %d: %v", next, err)
		}
		if strings.TrimSpace(line) == want {
			break
		}
		if strings.HasPrefix(line, "event: error") {
			t.Fatalf("resumed EventSource failed before the change at %d", next)
		}
	}
}
