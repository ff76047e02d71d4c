package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/query"
	"google.golang.org/grpc"
)

// A watch whose read model stops (its query node shutting down: a node of
// its own, not the gateway's) ends with the service's UNAVAILABLE, which
// names the position to resume from and tells the client to retry. Its
// message lacked "retry", so the gateway took it for a connection failure
// of its own: it answered "service unavailable, retry later" in its place
// and logged a warning for each watch the restart of a query node ended.
func TestWatchOfAStoppedReadModelEndsWithTheServicesStatus(t *testing.T) {
	ns := estest.StartServer(t)
	_, js := estest.Connect(t, ns)
	store, err := eventstore.New(t.Context(), js, eventstore.WithStorage(jetstream.MemoryStorage))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := projections.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dir.Close() })
	runner, err := projections.NewRunner(store, dir, projections.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	stopped := false
	stopRunner := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		if err := <-done; err != nil {
			t.Errorf("projection runner: %v", err)
		}
	}
	t.Cleanup(stopRunner)
	qry, err := query.New(runner, quiet(), query.WithFeed(runner.Feed()), query.WithHead(store))
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, qry)
	base, hc := gatewayOver(t, serve(t, gs))

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/orders:watch?fromPosition=0", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := hc.Do(req) // returns once the watch started
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("watch: HTTP %d", res.StatusCode)
	}
	stopRunner()
	var last string
	for sc := bufio.NewScanner(res.Body); sc.Scan(); {
		last = sc.Text()
	}
	var line struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(last), &line); err != nil || line.Error == nil {
		t.Fatalf("the watch's last line %q is no error: %v", last, err)
	}
	if line.Error.Code != 14 || !strings.Contains(line.Error.Message, "resume from position") {
		t.Fatalf("the watch ended with %d %q, want UNAVAILABLE (14) naming the position to resume from", line.Error.Code, line.Error.Message)
	}
}
