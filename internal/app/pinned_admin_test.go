package app_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/eventstore/estest"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// A front end whose QUERY_ADDR names two query nodes sends every admin call
// to one of them, and the answers name it: the projection's status is one
// node's read model each time, not each node's in turn, and a rebuild
// through the front end says which node's read model it rebuilt (the
// other's is untouched; an operator rebuilds it at its own address).
// Before, the calls went round the nodes and the answers named none: a
// rebuild reported as done had rebuilt one node of two, which one unknown.
func TestFrontEndAdminCallsGoToOneNamedQueryNode(t *testing.T) {
	ns := estest.StartServer(t)
	a, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "command,query,audit")
	b, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "query")
	r := manual.NewBuilderWithScheme("pinnedadmin")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a.GRPC}, {Addr: b.GRPC}}})
	resolver.Register(r)
	front, _ := run(t, t.TempDir(), "NATS_URL", ns.ClientURL(), "ROLES", "gateway,console",
		"COMMAND_ADDR", a.GRPC, "QUERY_ADDR", "pinnedadmin:///query", "AUDIT_ADDR", a.GRPC, "PAYMENTS_ADDR", a.GRPC)
	base := "http://" + front.HTTP
	var node string
	for i := range 6 {
		res, err := http.Get(base + "/v1/admin/projection")
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Node string }
		err = json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("status through the front end: %s, %v", res.Status, err)
		}
		if !strings.HasSuffix(st.Node, "/"+a.GRPC) && !strings.HasSuffix(st.Node, "/"+b.GRPC) {
			t.Fatalf("status %d names node %q, neither query node (%s, %s)", i, st.Node, a.GRPC, b.GRPC)
		}
		if node != "" && st.Node != node {
			t.Fatalf("the projection's status came from %s, then from %s", node, st.Node)
		}
		node = st.Node
	}
	res, err := http.Post(base+"/v1/admin/read-model:rebuild", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var last struct {
		Result struct {
			Node    string
			Swapped bool
		}
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("rebuild line %q: %v", sc.Text(), err)
		}
	}
	if !last.Result.Swapped || last.Result.Node != node {
		t.Fatalf("rebuild through the front end: last message %+v; want swapped on %s, the node the status came from", last.Result, node)
	}
}
