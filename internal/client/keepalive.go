package client

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// A peer that goes silent (its host lost, or the network between cut: no
// reset ever arrives) leaves a connection that looks open for as long as
// nothing is sent on it. Without pings, a watch through such a connection
// waited for ever, heartbeats still going to its browser from the
// gateway, and calls sent to it hung until the kernel gave up on them
// (about 15 minutes), where round_robin would have sent them to another
// replica. Both ends ping an idle connection and close it when the ping
// is not answered in time.
const (
	// keepaliveTime is how long a client's connection may hear nothing
	// before it pings: grpc-go's least.
	keepaliveTime = 10 * time.Second
	// keepaliveTimeout is how long a ping may go unanswered before the
	// connection is taken for dead: its calls fail UNAVAILABLE, and a
	// new connection is dialled.
	keepaliveTimeout = 5 * time.Second
	// serverKeepaliveTime is how long a server's connection may hear
	// nothing before the server pings: a client that went silent holds
	// its streams (and their share of MAX_STREAMS) until found dead.
	serverKeepaliveTime = 30 * time.Second
	// serverKeepaliveTimeout is keepaliveTimeout on the server's side.
	serverKeepaliveTimeout = 10 * time.Second
	// minClientPing is the shortest interval between a client's pings
	// that a server takes: below keepaliveTime, or a server (whose
	// default is 5 minutes) would close every idle connection of Dial's
	// after its third ping as "too many pings".
	minClientPing = 5 * time.Second
)

// minClientPing must stay below keepaliveTime (see minClientPing): this
// constant does not compile otherwise.
const _ = uint64(keepaliveTime - minClientPing)

// ServerKeepalive returns the options a gRPC server needs to take Dial's
// pings, and to find its own silent clients dead: every server that
// Dial's connections reach must have them.
func ServerKeepalive() []grpc.ServerOption {
	return serverKeepalive(serverKeepaliveTime, serverKeepaliveTimeout)
}

func serverKeepalive(ping, timeout time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minClientPing, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ping, Timeout: timeout}),
	}
}

// dialKeepalive is Dial's side of ServerKeepalive. Idle connections are
// pinged too: one found dead before a call is dialled again, rather than
// the call waiting on it.
func dialKeepalive() grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout, PermitWithoutStream: true})
}
