package topology_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/tcpproxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Phases of the partition test, for what clients saw when.
const (
	phaseBefore = iota
	phaseCut
	phaseHealed
	phases
)

var phaseNames = [phases]string{"before", "partition", "healed"}

// ack is a command the service acknowledged.
type ack struct {
	orderID, requestID, node string
	position                 uint64
	at                       time.Time
}

// clientLog is what the partition test's clients saw.
type clientLog struct {
	phase atomic.Int32

	mu    sync.Mutex
	acks  []ack
	codes map[string]*[phases]map[codes.Code]int // node → phase → code → answers
	stale []string                               // rejections of orders in the state the command needs
}

func (l *clientLog) answer(node string, c codes.Code) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byPhase := l.codes[node]
	if byPhase == nil {
		byPhase = &[phases]map[codes.Code]int{}
		l.codes[node] = byPhase
	}
	p := l.phase.Load()
	if byPhase[p] == nil {
		byPhase[p] = map[codes.Code]int{}
	}
	byPhase[p][c]++
}

// command sends one command of a create → add item → place sequence.
func command(ctx context.Context, c ordersv1.OrderCommandServiceClient, step int, orderID, requestID string) (uint64, error) {
	type positioned interface{ GetPosition() uint64 }
	var r positioned
	var err error
	switch step {
	case 0:
		r, err = c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{RequestId: requestID, OrderId: orderID, CustomerId: "partition", Currency: "EUR",
			Lines:           []*ordersv1.LineItem{{Sku: "BASE", Quantity: 1, UnitPrice: 100}},
			ShippingAddress: &ordersv1.Address{Line1: "1 Main St", City: "Lviv", Country: "UA"}})
	case 1:
		r, err = c.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: requestID, OrderId: orderID, Sku: "EXTRA", Quantity: 1, UnitPrice: 50})
	default:
		r, err = c.PlaceOrder(ctx, &ordersv1.PlaceOrderRequest{RequestId: requestID, OrderId: orderID})
	}
	if err != nil {
		return 0, err
	}
	return r.GetPosition(), nil
}

// steps is the number of commands per order.
const steps = 3

// attemptTimeout bounds one attempt of a command; a client retries
// UNAVAILABLE, DEADLINE_EXCEEDED and ABORTED with the same request id.
const attemptTimeout = 2 * time.Second

// drive runs workers against one command node until stop is closed; each
// worker finishes the command it is retrying before it returns, within
// finishFor after stop.
func drive(t *testing.T, l *clientLog, node, addr string, workers int, stop <-chan struct{}) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	c := ordersv1.NewOrderCommandServiceClient(conn)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var finishBy time.Time
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("part-%s-w%d-%d", node, w, n)
			order:
				for step := range steps {
					rid := fmt.Sprintf("%s-%d", id, step)
					for {
						ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
						pos, err := command(ctx, c, step, id, rid)
						cancel()
						code := status.Code(err)
						l.answer(node, code)
						switch code {
						case codes.OK:
							l.mu.Lock()
							l.acks = append(l.acks, ack{orderID: id, requestID: rid, node: node, position: pos, at: time.Now()})
							l.mu.Unlock()
							continue order
						case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
						case codes.NotFound, codes.FailedPrecondition:
							// The order exists in the state this command
							// needs: every earlier step was acknowledged.
							l.mu.Lock()
							l.stale = append(l.stale, fmt.Sprintf("%s on %s: %v", rid, node, err))
							l.mu.Unlock()
							break order
						default:
							t.Errorf("%s on %s: %v", rid, node, err)
							return
						}
						select {
						case <-stop:
							if finishBy.IsZero() {
								finishBy = time.Now().Add(finishFor)
							}
							if time.Now().After(finishBy) {
								t.Errorf("%s on %s: not acknowledged %v after the load stopped: %v", rid, node, finishFor, err)
								return
							}
						default:
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
		})
	}
	wg.Wait()
}

// finishFor bounds finishing an unacknowledged command after the load
// stops.
const finishFor = 30 * time.Second

// ordersStream returns the ORDERS stream as one NATS server sees it, from
// its monitoring endpoint, which the partition does not touch.
func ordersStream(in *instance, port int) (server.StreamDetail, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + in.addr(port) + "/jsz?accounts=true&streams=true")
	if err != nil {
		return server.StreamDetail{}, err
	}
	defer res.Body.Close()
	var info server.JSInfo
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
		return server.StreamDetail{}, err
	}
	for _, a := range info.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == "ORDERS" {
				return s, nil
			}
		}
	}
	return server.StreamDetail{}, errors.New("no ORDERS stream")
}

// poll calls f until it reports true, failing t after within.
func poll(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPartitionStreamLeader cuts the NATS server leading the ORDERS stream
// off from the other two, mid-load, while a command node connected to it
// keeps its connection and another command node works on the other side;
// holds the partition until the majority has elected a new leader and
// taken writes; then heals it. Nothing acknowledged may be lost or
// duplicated, the cut-off side may acknowledge nothing once the new leader
// exists, no command may be rejected on a stale read, every order's chain
// must verify, and the three servers must agree in the end.
func TestPartitionStreamLeader(t *testing.T) {
	top := newTopology(t)
	commandNodes := top.byRole("command")
	audits := top.byRole("audit")
	if len(commandNodes) < 2 || len(audits) == 0 {
		t.Fatalf("compose.yaml runs %d command and %d audit nodes; the partition test needs two and one", len(commandNodes), len(audits))
	}
	var natsNodes []*instance
	for _, name := range top.project.ServiceNames() {
		if s := top.services[name]; s.kind == natsKind {
			natsNodes = append(natsNodes, s.instances...)
		}
	}
	start := time.Now()
	top.up(commandNodes[0].svc.cfg.Name, audits[0].svc.cfg.Name)
	t.Logf("NATS cluster, command and audit nodes up in %v", time.Since(start).Round(time.Millisecond))
	clientPort, clusterPort, monitorPort := top.nats.Port, top.nats.Cluster.Port, top.nats.HTTPPort

	leaderSeenBy := func(n *instance) string {
		s, err := ordersStream(n, monitorPort)
		if err != nil || s.Cluster == nil {
			return ""
		}
		return s.Cluster.Leader
	}
	// connectedTo returns the NATS server an ordersd instance is
	// connected to, by the link that carries its connection.
	connectedTo := func(in *instance) string {
		var on []string
		for _, n := range natsNodes {
			if top.link(in.name, fmt.Sprintf("%s:%d", n.name, clientPort)).Conns() > 0 {
				on = append(on, n.name)
			}
		}
		if len(on) != 1 {
			return ""
		}
		return on[0]
	}
	// place moves the instance's connection until want accepts its
	// server: refusing its link to the current one makes its client move
	// to another server of NATS_URL.
	place := func(in *instance, want func(string) bool) {
		poll(t, 60*time.Second, "placing "+in.name, func() bool {
			on := connectedTo(in)
			if on == "" || want(on) {
				return on != ""
			}
			l := top.link(in.name, fmt.Sprintf("%s:%d", on, clientPort))
			l.SetMode(tcpproxy.Refuse)
			poll(t, 30*time.Second, in.name+" leaving "+on, func() bool { n := connectedTo(in); return n != "" && n != on })
			l.SetMode(tcpproxy.Forward)
			return false
		})
	}

	// The leader's side keeps a command node (A); the other side has one
	// too (B). The leader could move while clients move; start over then.
	var leader string
	nodeA, nodeB := commandNodes[0], commandNodes[1]
	poll(t, 90*time.Second, "a command node on each side of the stream leader", func() bool {
		leader = ""
		for _, n := range natsNodes {
			if leader = leaderSeenBy(n); leader != "" {
				break
			}
		}
		if leader == "" {
			return false
		}
		place(nodeA, func(s string) bool { return s == leader })
		place(nodeB, func(s string) bool { return s != leader })
		return leaderSeenBy(top.instance(leader)) == leader && connectedTo(nodeA) == leader && connectedTo(nodeB) != leader
	})
	var majority []*instance
	for _, n := range natsNodes {
		if n.name != leader {
			majority = append(majority, n)
		}
	}
	t.Logf("stream leader %s with %s connected to it; %s on %s", leader, nodeA.name, nodeB.name, connectedTo(nodeB))

	l := &clientLog{codes: map[string]*[phases]map[codes.Code]int{}}
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, in := range []*instance{nodeA, nodeB} {
		load.Go(func() { drive(t, l, in.name, in.grpcAddr(), 4, stop) })
	}
	acked := func(node string, after time.Time) int {
		l.mu.Lock()
		defer l.mu.Unlock()
		n := 0
		for _, a := range l.acks {
			if a.node == node && a.at.After(after) {
				n++
			}
		}
		return n
	}
	poll(t, 30*time.Second, "load before the partition", func() bool {
		return acked(nodeA.name, start) >= 50 && acked(nodeB.name, start) >= 50
	})

	// The partition: every route between the leader and the others drops
	// its bytes, both ways; client connections stay as they are.
	var routes []*tcpproxy.Proxy
	for _, m := range majority {
		routes = append(routes,
			top.link(leader, fmt.Sprintf("%s:%d", m.name, clusterPort)),
			top.link(m.name, fmt.Sprintf("%s:%d", leader, clusterPort)))
	}
	cutAt := time.Now()
	l.phase.Store(phaseCut)
	for _, p := range routes {
		p.SetMode(tcpproxy.Drop)
	}
	var newLeader string
	poll(t, 60*time.Second, "a new stream leader on the majority side", func() bool {
		newLeader = leaderSeenBy(majority[0])
		return newLeader != "" && newLeader != leader && leaderSeenBy(majority[1]) == newLeader
	})
	electedAt := time.Now()
	// Held until the majority has taken writes under its new leader.
	poll(t, 60*time.Second, "writes on the majority side", func() bool { return acked(nodeB.name, electedAt) >= 10 })
	healAt := time.Now()
	l.phase.Store(phaseHealed)
	for _, p := range routes {
		p.SetMode(tcpproxy.Forward)
	}
	poll(t, 60*time.Second, "writes through the healed leader's side", func() bool { return acked(nodeA.name, healAt) >= 20 })
	close(stop)
	load.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// What clients saw.
	l.mu.Lock()
	acks := slices.Clone(l.acks)
	stale := slices.Clone(l.stale)
	for _, node := range []string{nodeA.name, nodeB.name} {
		for p, byCode := range l.codes[node] {
			t.Logf("%s %-9s answers: %v", node, phaseNames[p], byCode)
		}
	}
	l.mu.Unlock()
	sort.Slice(acks, func(i, j int) bool { return acks[i].at.Before(acks[j].at) })
	// A node's write gap: the longest time without an acknowledgement.
	for _, node := range []string{nodeA.name, nodeB.name} {
		var prev, from time.Time
		var gap time.Duration
		for _, a := range acks {
			if a.node != node {
				continue
			}
			if !prev.IsZero() && a.at.Sub(prev) > gap {
				gap, from = a.at.Sub(prev), prev
			}
			prev = a.at
		}
		t.Logf("%s: write gap %v, from %v after the cut", node, gap.Round(time.Millisecond), from.Sub(cutAt).Round(time.Millisecond))
	}
	t.Logf("partition held %v; new leader %s elected %v after the cut; %d commands acknowledged",
		healAt.Sub(cutAt).Round(time.Millisecond), newLeader, electedAt.Sub(cutAt).Round(time.Millisecond), len(acks))

	// No split brain: nothing acknowledged by the cut-off side once the
	// majority had its own leader, until the partition healed.
	for _, a := range acks {
		if a.node == nodeA.name && a.at.After(electedAt) && a.at.Before(healAt) {
			t.Errorf("%s acknowledged by the cut-off side at %d, %v after the new leader was seen", a.requestID, a.position, a.at.Sub(electedAt))
		}
	}
	if len(stale) > 0 {
		t.Errorf("%d commands rejected on a stale read, e.g. %s", len(stale), stale[0])
	}

	// The three servers agree.
	var agreed server.StreamState
	poll(t, 60*time.Second, "the three servers agreeing on the stream", func() bool {
		var states []server.StreamState
		for _, n := range natsNodes {
			s, err := ordersStream(n, monitorPort)
			if err != nil {
				return false
			}
			states = append(states, s.State)
		}
		for _, s := range states[1:] {
			if s.Msgs != states[0].Msgs || s.Bytes != states[0].Bytes || s.FirstSeq != states[0].FirstSeq || s.LastSeq != states[0].LastSeq {
				return false
			}
		}
		agreed = states[0]
		return true
	})

	// Every acknowledged command is in the log once, where it was
	// acknowledged, and every chain verifies.
	conn, err := grpc.NewClient(audits[0].grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	audit := ordersv1.NewOrderAuditServiceClient(conn)
	// The audit node answers UNAVAILABLE while its own connection
	// recovers; a client reads again, as for any UNAVAILABLE.
	var stored map[string]uint64
	var last uint64
	poll(t, 30*time.Second, "reading the log through the audit node", func() bool {
		stored, last = map[string]uint64{}, 0
		events, err := audit.StreamEvents(t.Context(), &ordersv1.StreamEventsRequest{})
		for err == nil {
			var res *ordersv1.StreamEventsResponse
			if res, err = events.Recv(); err != nil {
				break
			}
			e := res.GetEvent()
			if e.GetPosition() <= last {
				t.Fatalf("positions not increasing: %d after %d", e.GetPosition(), last)
			}
			last = e.GetPosition()
			key := e.GetOrderId() + "/" + e.GetRequestId()
			if _, dup := stored[key]; dup {
				t.Fatalf("request %s appended twice", key)
			}
			stored[key] = e.GetPosition()
		}
		if !errors.Is(err, io.EOF) && status.Code(err) != codes.Unavailable {
			t.Fatal(err)
		}
		return errors.Is(err, io.EOF)
	})
	for _, a := range acks {
		if pos, ok := stored[a.orderID+"/"+a.requestID]; !ok || pos != a.position {
			t.Errorf("%s acknowledged by %s at %d, in the log at %d (present: %v)", a.requestID, a.node, a.position, pos, ok)
		}
	}
	if last != agreed.LastSeq {
		t.Errorf("the log read through the audit node ends at %d, the servers agree on %d", last, agreed.LastSeq)
	}
	var summary *ordersv1.VerifyLogProgress
	poll(t, 30*time.Second, "verifying the log through the audit node", func() bool {
		verify, err := audit.VerifyLog(t.Context(), &ordersv1.VerifyLogRequest{})
		for err == nil && summary == nil {
			var res *ordersv1.VerifyLogResponse
			if res, err = verify.Recv(); err != nil {
				break
			}
			if b := res.GetBroken(); b != nil {
				t.Errorf("order %s: chain broken: %v", b.GetOrderId(), b.GetFirstBreak())
			}
			summary = res.GetSummary()
		}
		if summary == nil && status.Code(err) != codes.Unavailable {
			t.Fatalf("VerifyLog ended without a summary: %v", err)
		}
		return summary != nil
	})
	if summary.GetOrdersBroken() != 0 || summary.GetHead() != agreed.LastSeq {
		t.Errorf("VerifyLog: %v, servers at %d", summary, agreed.LastSeq)
	}
	t.Logf("verified %d events of %d orders; the servers agree on %d messages up to %d", summary.GetEventsChecked(), summary.GetOrdersChecked(), agreed.Msgs, agreed.LastSeq)
}
