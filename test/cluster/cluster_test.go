// Package cluster_test runs ordersd against an in-process three-node
// JetStream cluster with an R3 stream and takes the stream leader down in
// the middle of a command load.
package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// startCluster starts three JetStream servers routed to each other on
// loopback ports.
func startCluster(t *testing.T) []*server.Server { return estest.StartCluster(t, 3).Servers }

// r3Store opens the event store with three replicas on js. The cluster
// elects its meta leader after the servers are up; until then creating the
// stream answers unavailable.
func r3Store(t *testing.T, js jetstream.JetStream) *eventstore.Store {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; {
		store, err := eventstore.New(t.Context(), js, eventstore.WithReplicas(3))
		if err == nil {
			return store
		}
		if !errors.Is(err, eventstore.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("R3 store: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStreamLeaderLossMidLoad(t *testing.T) {
	servers := startCluster(t)
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	cfg, err := config.FromMap(map[string]string{"DATA_DIR": t.TempDir(), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"NATS_URL": strings.Join(urls, ","), "STREAM_REPLICAS": "3", "ROLES": "command,query,audit", "NATS_CONNECT_TIMEOUT": "60s"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a app.Addrs) { ready <- a })
	}()
	var addrs app.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("ordersd: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("ordersd did not start against the cluster")
	}
	t.Cleanup(func() { cancel(); <-done })

	// Find the stream leader from outside.
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	info, err := js.Stream(t.Context(), "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	si, err := info.Info(t.Context())
	if err != nil || si.Config.Replicas != 3 || si.Cluster == nil {
		t.Fatalf("stream: %+v %v", si, err)
	}

	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := ordersv1.NewOrderCommandServiceClient(conn)

	var mu sync.Mutex
	acked := map[string]uint64{}
	unavailable := 0
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				id := fmt.Sprintf("w%d-%d", w, n)
				cctx, c := context.WithTimeout(context.Background(), 5*time.Second)
				res, err := cmd.CreateOrder(cctx, &ordersv1.CreateOrderRequest{RequestId: id, OrderId: id, CustomerId: "r3", Currency: "EUR"})
				c()
				mu.Lock()
				switch status.Code(err) {
				case codes.OK:
					acked[id] = res.GetPosition()
				case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
					unavailable++
				default:
					t.Errorf("during failover: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	waitAcked := func(n int) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d commands acknowledged, want %d", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAcked(100)
	// The leader as of now: leadership may have moved since the stream
	// was created. Exactly one server must be it, and it must go down.
	oldLeader := streamLeader(t, info, func(string) bool { return true })
	victim := serverNamed(servers, oldLeader)
	if victim == nil {
		t.Fatalf("stream leader %q is none of the cluster's servers", oldLeader)
	}
	victim.Shutdown()
	victim.WaitForShutdown()
	if victim.Running() {
		t.Fatalf("stream leader %s still running after its shutdown", oldLeader)
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	waitAcked(before + 100) // the service keeps answering
	// Those answers came from a new leader on one of the servers left.
	newLeader := streamLeader(t, info, func(name string) bool { return name != oldLeader })
	if s := serverNamed(servers, newLeader); s == nil || !s.Running() {
		t.Fatalf("new stream leader %q is not one of the cluster's running servers", newLeader)
	}
	stopLoad()
	wg.Wait()

	// Every acknowledged command is in the log, and the read model
	// converges on all of them.
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	q := ordersv1.NewOrderQueryServiceClient(conn)
	var maxPos uint64
	for id, pos := range acked {
		h, err := audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id})
		if err != nil {
			t.Fatalf("acknowledged order %s: %v", id, err)
		}
		if len(h.GetEvents()) != 1 || h.GetEvents()[0].GetPosition() != pos {
			t.Fatalf("acknowledged order %s: %v, acknowledged at %d", id, h.GetEvents(), pos)
		}
		maxPos = max(maxPos, pos)
	}
	// The projection follows the log through the failover on its own; how
	// long its consumer takes to move to the new leader is not bounded by
	// one read-your-writes wait, so keep asking while it answers "behind".
	catchUpStart := time.Now()
	catchUp := catchUpStart.Add(60 * time.Second)
	for {
		_, err := q.ListOrders(t.Context(), &ordersv1.ListOrdersRequest{
			CustomerId:  "r3",
			PageSize:    1,
			Consistency: &ordersv1.Consistency{MinPosition: maxPos, MaxWait: durationpb.New(10 * time.Second)},
		})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(catchUp) {
			t.Fatalf("read model never reached position %d: %v", maxPos, err)
		}
	}
	t.Logf("read model reached position %d %v after the load stopped", maxPos, time.Since(catchUpStart).Round(time.Millisecond))
	seen := 0
	req := &ordersv1.ListOrdersRequest{CustomerId: "r3", PageSize: 500}
	for {
		res, err := q.ListOrders(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		seen += len(res.GetOrders())
		if res.GetNextPageToken() == "" {
			break
		}
		req.PageToken = res.GetNextPageToken()
	}
	if seen < len(acked) {
		t.Fatalf("read model has %d orders, %d acknowledged", seen, len(acked))
	}
	t.Logf("%d acknowledged (%d before the leader %s went down, then led by %s), %d unavailable answers during failover", len(acked), before, oldLeader, newLeader, unavailable)
}

// serverNamed returns the server called name, or nil.
func serverNamed(servers []*server.Server, name string) *server.Server {
	for _, s := range servers {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// streamLeader asks the cluster for the stream's leader until it names one
// that ok accepts: none is named while an election runs, and a node just
// shut down can still be named until the others notice.
func streamLeader(t *testing.T, stream jetstream.Stream, ok func(name string) bool) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		si, err := stream.Info(ctx)
		cancel()
		if err == nil && si.Cluster != nil {
			last = si.Cluster.Leader
			if last != "" && ok(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no acceptable stream leader: last named %q (%v)", last, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
