// Package crash_test proves that nothing acknowledged is lost when ordersd
// is killed: it runs ordersd as a child process on file storage, drives
// commands, SIGKILLs it at a random moment, restarts it on the same data
// directory, and checks the log and the read model after every restart.
package crash_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var cycles = flag.Int("crash.cycles", 5, "kill/restart cycles per NATS_SYNC mode")

// buildOrdersd compiles the server once per test binary run.
func buildOrdersd(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "ordersd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ordersd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ordersd: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	grpc string
	done chan struct{}
}

// start runs ordersd on dir and waits for its "listening" log line.
func start(t *testing.T, bin, dir, sync string) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DATA_DIR="+dir, "GRPC_ADDR=127.0.0.1:0", "HTTP_ADDR=127.0.0.1:0", "NATS_LISTEN=127.0.0.1:0",
		"NATS_SYNC="+sync, "LOG_LEVEL=info", "ROLES=command,query,audit")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "ordersd listening" {
				addrs <- line.GRPC
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	select {
	case p.grpc = <-addrs:
	case <-p.done:
		t.Fatal("ordersd exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("ordersd did not start listening")
	}
	return p
}

// kill SIGKILLs the process and waits for it: no chance to flush anything.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// acked is a command the server acknowledged.
type acked struct {
	orderID, requestID string
	position           uint64
}

// pending is a command whose answer was lost in the crash.
type pending struct {
	orderID, requestID string
	kind               string
}

type ledger struct {
	mu      sync.Mutex
	acked   []acked
	pending []pending
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// do sends one command; kind picks which.
func do(ctx context.Context, c ordersv1.OrderCommandServiceClient, kind, orderID, requestID string) (uint64, error) {
	type resp interface{ GetPosition() uint64 }
	var r resp
	var err error
	switch kind {
	case "create":
		r, err = c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: requestID, OrderId: orderID, CustomerId: "crash", Currency: "EUR",
			Lines:           []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: 100}},
			ShippingAddress: &ordersv1.Address{Line1: "1", City: "Kyiv", Country: "UA"}})
	case "add":
		r, err = c.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: requestID, OrderId: orderID, Sku: "EXTRA", Quantity: 2, UnitPrice: 50})
	case "place":
		r, err = c.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: requestID, OrderId: orderID})
	}
	if err != nil {
		return 0, err
	}
	return r.GetPosition(), nil
}

// drive runs workers that create, extend and place orders until ctx ends,
// recording what was acknowledged and what was in flight.
func drive(ctx context.Context, addr string, l *ledger, cycle int) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	c := ordersv1.NewOrderCommandServiceClient(conn)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				id := fmt.Sprintf("c%d-w%d-o%d", cycle, w, n)
				for _, kind := range []string{"create", "add", "place"} {
					rid := id + "-" + kind
					cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					pos, err := do(cctx, c, kind, id, rid)
					cancel()
					l.mu.Lock()
					if err == nil {
						l.acked = append(l.acked, acked{id, rid, pos})
					} else {
						l.pending = append(l.pending, pending{id, rid, kind})
					}
					l.mu.Unlock()
					if err != nil {
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestKilledAndRestarted(t *testing.T) {
	bin := buildOrdersd(t)
	for _, sync := range []string{"interval", "always"} {
		t.Run("NATS_SYNC="+sync, func(t *testing.T) {
			dir := t.TempDir()
			l := &ledger{}
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
			p := start(t, bin, dir, sync)
			for cycle := range *cycles {
				ctx, cancel := context.WithCancel(context.Background())
				driven := make(chan struct{})
				go func() { drive(ctx, p.grpc, l, cycle); close(driven) }()
				time.Sleep(time.Duration(150+r.IntN(400)) * time.Millisecond) // the random moment of the crash
				p.kill()
				<-driven
				cancel()
				p = start(t, bin, dir, sync)
				verify(t, p.grpc, l)
			}
		})
	}
}

// verify checks, after a restart, that every acknowledged command is in the
// log exactly once, that retrying lost answers is exactly-once, and that the
// read model has everything and equals a fresh rebuild.
func verify(t *testing.T, addr string, l *ledger) {
	t.Helper()
	ctx := t.Context()
	conn := dial(t, addr)
	cmd := ordersv1.NewOrderCommandServiceClient(conn)
	audit := ordersv1.NewOrderAuditServiceClient(conn)

	// Retry every command whose answer was lost: it either happened before
	// the crash (and the retry returns the original) or happens now.
	l.mu.Lock()
	lost := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, p := range lost {
		pos, err := do(ctx, cmd, p.kind, p.orderID, p.requestID)
		switch status.Code(err) {
		case codes.OK:
			l.acked = append(l.acked, acked{p.orderID, p.requestID, pos})
		case codes.NotFound, codes.FailedPrecondition:
			// An add or place whose order's create was itself lost.
		default:
			t.Fatalf("retry of %s: %v", p.requestID, err)
		}
	}

	// The whole log: every (order, request) once, positions increasing.
	stream, err := audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]uint64{}
	head := map[string]uint64{} // order id → version of its last event
	var last uint64
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ev := res.GetEvent()
		if ev.GetPosition() <= last {
			t.Fatalf("positions not increasing: %d after %d", ev.GetPosition(), last)
		}
		last = ev.GetPosition()
		key := ev.GetOrderId() + "/" + ev.GetRequestId()
		if _, dup := seen[key]; dup {
			t.Fatalf("request %s appended twice", key)
		}
		seen[key] = ev.GetPosition()
		if v := uint64(ev.GetVersion()); v != head[ev.GetOrderId()]+1 {
			t.Fatalf("order %s: event at %d has version %d after %d", ev.GetOrderId(), ev.GetPosition(), v, head[ev.GetOrderId()])
		}
		head[ev.GetOrderId()] = uint64(ev.GetVersion())
	}
	for _, a := range l.acked {
		pos, ok := seen[a.orderID+"/"+a.requestID]
		if !ok {
			t.Fatalf("acknowledged command %s (position %d) is not in the log after the crash", a.requestID, a.position)
		}
		if pos != a.position {
			t.Fatalf("command %s acknowledged at %d, stored at %d", a.requestID, a.position, pos)
		}
	}

	// The read model catches up with everything acknowledged and equals a
	// rebuild from the log.
	q := ordersv1.NewOrderQueryServiceClient(conn)
	before := listAll(t, q, last)
	for _, a := range l.acked {
		if _, ok := before[a.orderID]; !ok {
			t.Fatalf("acknowledged order %s missing from the read model", a.orderID)
		}
	}
	// Every order shows the effect of its last event in the log, so every
	// acknowledged command on it has been applied, not merely its creation.
	for id, rev := range head {
		if got := before[id].GetRevision(); got != rev {
			t.Fatalf("order %s: read model at revision %d, its last event in the log is version %d", id, got, rev)
		}
	}
	if len(before) != len(head) {
		t.Fatalf("read model has %d orders, the log %d", len(before), len(head))
	}
	rb, err := ordersv1.NewOrderAdminServiceClient(conn).RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := rb.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	after := listAll(t, q, last)
	if len(after) != len(before) {
		t.Fatalf("rebuild has %d orders, the live read model %d", len(after), len(before))
	}
	for id, o := range before {
		if !proto.Equal(o, after[id]) {
			t.Fatalf("order %s differs after a rebuild:\n%v\n%v", id, o, after[id])
		}
	}
	t.Logf("verified %d acknowledged commands, %d orders, log head %d", len(l.acked), len(before), last)
}

func listAll(t *testing.T, q ordersv1.OrderQueryServiceClient, minPos uint64) map[string]*ordersv1.Order {
	t.Helper()
	out := map[string]*ordersv1.Order{}
	req := &ordersv1.ListOrdersRequest{PageSize: 500, Consistency: &ordersv1.Consistency{MinPosition: minPos}}
	for {
		res, err := q.ListOrders(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.GetOrders() {
			out[o.GetOrderId()] = o
		}
		if res.GetNextPageToken() == "" {
			return out
		}
		req.PageToken, req.Consistency = res.GetNextPageToken(), nil
	}
}
