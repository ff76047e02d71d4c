package estest

import (
	"net"
	"testing"
	"time"
)

// TestStartClusterTriesAgainWhenAPortIsTaken gives the first try a client
// port another listener holds, as when another process takes a picked port
// before its server starts: the cluster must come up on other ports.
func TestStartClusterTriesAgainWhenAPortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	taken := l.Addr().(*net.TCPAddr).Port

	oldPick, oldReady := pickPort, clusterReady
	t.Cleanup(func() { pickPort, clusterReady = oldPick, oldReady })
	clusterReady = time.Second
	picks := 0
	pickPort = func(tb testing.TB) int {
		picks++
		if picks == 2 { // the first try's client port: its route port is picked first
			return taken
		}
		return freePort(tb)
	}

	c := StartCluster(t, 1)
	if picks != 4 {
		t.Errorf("ports picked: %d, want 4 (two tries of one server)", picks)
	}
	if got := c.Servers[0].Addr().(*net.TCPAddr).Port; got == taken {
		t.Errorf("the server listens on the taken port %d", got)
	}
	nc, _ := Connect(t, c.Servers[0])
	if _, err := nc.RTT(); err != nil {
		t.Errorf("a round trip to the cluster's server: %v", err)
	}
}
