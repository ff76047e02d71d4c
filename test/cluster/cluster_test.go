// Package cluster_test runs ordersd against an in-process three-node
// JetStream cluster with an R3 stream and takes the stream leader down in
// the middle of a command load.
package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/eventstore/estest"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ordersd (command, query, audit and payments roles) runs against the
// cluster while writers create, extend and place orders, retrying
// UNAVAILABLE with the same request id as clients should; the stream
// leader is killed twice (and its server restarted after each election).
// Checked: no acknowledged command lost or applied twice, no command
// rejected on a stale read, no payment parked, every placed order paid
// once, and the read model converges. The write gap of each kill (from the
// last acknowledged command before it to the first after it) is logged.
func TestStreamLeaderLossMidLoad(t *testing.T) {
	c := estest.StartCluster(t, 3)
	cfg, err := config.FromMap(map[string]string{"DATA_DIR": t.TempDir(), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"NATS_URL": c.URLs(), "STREAM_REPLICAS": "3", "ROLES": "command,query,audit,payments", "NATS_CONNECT_TIMEOUT": "60s"})
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

	nc, err := nats.Connect(c.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(t.Context(), "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := ordersv1.NewOrderCommandServiceClient(conn)

	var mu sync.Mutex
	var acks []time.Time        // when each command was acknowledged
	placed := map[string]bool{} // orders whose PlaceOrder was acknowledged
	unavailable, stale := 0, 0
	ack := func() { mu.Lock(); acks = append(acks, time.Now()); mu.Unlock() }
	// call retries UNAVAILABLE with the same request id until it lands.
	call := func(loadCtx context.Context, id string, f func(context.Context) error) bool {
		for loadCtx.Err() == nil {
			cctx, cc := context.WithTimeout(context.Background(), 5*time.Second)
			err := f(cctx)
			cc()
			switch status.Code(err) {
			case codes.OK:
				ack()
				return true
			case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
				mu.Lock()
				unavailable++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			case codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
				mu.Lock()
				stale++
				mu.Unlock()
				t.Errorf("order %s, rejected on a stale read: %v", id, err)
				return false
			default:
				t.Errorf("order %s: %v", id, err)
				return false
			}
		}
		return false
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				id := fmt.Sprintf("w%d-%d", w, n)
				ok := call(loadCtx, id, func(ctx context.Context) error {
					_, err := cmd.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: id + "-c", OrderId: id, CustomerId: "r3", Currency: "EUR",
						Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 1, UnitPrice: 100}},
						ShippingAddress: &ordersv1.Address{Line1: "1 Main St", City: "Bern", Country: "CH"}})
					return err
				}) && call(loadCtx, id, func(ctx context.Context) error {
					_, err := cmd.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: id + "-a", OrderId: id, Sku: "B", Quantity: 1, UnitPrice: 50})
					return err
				}) && call(loadCtx, id, func(ctx context.Context) error {
					_, err := cmd.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: id + "-p", OrderId: id})
					return err
				})
				if ok {
					mu.Lock()
					placed[id] = true
					mu.Unlock()
				}
			}
		})
	}
	acked := func() int { mu.Lock(); defer mu.Unlock(); return len(acks) }
	waitAcked := func(n int) {
		for deadline := time.Now().Add(60 * time.Second); acked() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("only %d commands acknowledged, want %d", acked(), n)
			}
		}
	}
	waitAcked(100)
	var gaps []time.Duration
	for kill := range 2 {
		// The leader as of now: exactly one server must be it.
		oldLeader := streamLeader(t, stream, func(string) bool { return true })
		i := c.Index(oldLeader)
		if i < 0 {
			t.Fatalf("stream leader %q is none of the cluster's servers", oldLeader)
		}
		killed := time.Now()
		c.Stop(i)
		before := acked()
		waitAcked(before + 100) // the service keeps answering
		newLeader := streamLeader(t, stream, func(name string) bool { return name != oldLeader })
		if j := c.Index(newLeader); j < 0 || !c.Servers[j].Running() {
			t.Fatalf("new stream leader %q is not one of the cluster's running servers", newLeader)
		}
		mu.Lock()
		last, first := killed, time.Time{}
		for _, a := range acks {
			if a.Before(killed) {
				last = a
			} else if first.IsZero() || a.Before(first) {
				first = a
			}
		}
		mu.Unlock()
		gaps = append(gaps, first.Sub(last))
		t.Logf("kill %d: leader %s down; writes resumed on %s; write gap %v", kill+1, oldLeader, newLeader, first.Sub(last).Round(time.Millisecond))
		c.Start(i)
		waitCurrent(t, stream)
	}
	stopLoad()
	wg.Wait()

	// Every acknowledged command is in the log once; every placed order
	// is paid once; nothing is parked.
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	paid := func(id string) (int, []string) {
		// A read may still meet the cluster settling after the last
		// restart: UNAVAILABLE says retry, as the load's commands do.
		h, err := audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id})
		for try := 0; status.Code(err) == codes.Unavailable && try < 100; try++ {
			time.Sleep(20 * time.Millisecond)
			h, err = audit.GetOrderHistory(t.Context(), &ordersv1.GetOrderHistoryRequest{OrderId: id})
		}
		if err != nil {
			t.Fatalf("placed order %s: %v", id, err)
		}
		reqs := map[string]int{}
		var types []string
		for _, e := range h.GetEvents() {
			reqs[e.GetRequestId()]++
			types = append(types, e.GetType())
		}
		for _, suffix := range []string{"-c", "-a", "-p"} {
			if reqs[id+suffix] != 1 {
				t.Fatalf("order %s: request %s%s appended %d times: %v", id, id, suffix, reqs[id+suffix], types)
			}
		}
		n := 0
		for _, typ := range types {
			if typ == "PaymentAuthorized" {
				n++
			}
		}
		return n, types
	}
	for id := range placed {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			n, types := paid(id)
			if n == 1 {
				break
			}
			if n > 1 || time.Now().After(deadline) {
				t.Fatalf("placed order %s paid %d times: %v", id, n, types)
			}
		}
	}
	pay := ordersv1.NewPaymentAdminServiceClient(conn)
	// The parked-jobs bucket is replicated too: right after the kills its
	// listing may time out while its own leader settles, which says
	// nothing about what is parked, so only an answer counts.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		p, err := pay.ListParkedPayments(t.Context(), &ordersv1.ListParkedPaymentsRequest{})
		if c := status.Code(err); (c == codes.DeadlineExceeded || c == codes.Unavailable) && time.Now().Before(deadline) {
			continue
		}
		if err != nil || len(p.GetParked()) != 0 {
			t.Fatalf("parked payments: %v %v", p, err)
		}
		break
	}
	if stale > 0 {
		t.Fatalf("%d commands rejected on a stale read", stale)
	}
	si, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The projection follows the log through the failovers on its own.
	q := ordersv1.NewOrderQueryServiceClient(conn)
	for deadline := time.Now().Add(60 * time.Second); ; {
		_, err := q.ListOrders(t.Context(), &ordersv1.ListOrdersRequest{CustomerId: "r3", PageSize: 1,
			Consistency: &ordersv1.Consistency{MinPosition: si.State.LastSeq, MaxWait: durationpb.New(10 * time.Second)}})
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) {
			t.Fatalf("read model never reached position %d: %v", si.State.LastSeq, err)
		}
	}
	t.Logf("%d commands acknowledged, %d orders placed and paid once, %d UNAVAILABLE answers retried; write gaps %v", acked(), len(placed), unavailable, gaps)
}

// waitCurrent waits until every replica of the stream is current again, so
// that the next leader loss leaves a quorum.
func waitCurrent(t *testing.T, stream jetstream.Stream) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		si, err := stream.Info(t.Context())
		if err == nil && si.Cluster != nil && si.Cluster.Leader != "" && len(si.Cluster.Replicas) == 2 {
			current := true
			for _, r := range si.Cluster.Replicas {
				current = current && r.Current && !r.Offline
			}
			if current {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream replicas not current again: %+v %v", si, err)
		}
	}
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
