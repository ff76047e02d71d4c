package httpapi

import (
	"io"
	"log/slog"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An UNAVAILABLE a service chose to send reaches the client as it is; any
// other (grpc-go's connection errors, in whatever wording) is withheld, as
// it names addresses and system calls. Before, a list of wordings let
// "write tcp …: broken pipe" and others through.
func TestUnavailableFromTheConnectionIsWithheld(t *testing.T) {
	e := errorHandlers{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, msg := range []string{
		"read model is behind the requested position; retry later",
		"event store unavailable, retry later",
		"the server is shutting down; retry (a watch resumes from the last position it received)",
	} {
		if got := e.clientStatus(t.Context(), nil, status.Error(codes.Unavailable, msg)); got.Message() != msg {
			t.Errorf("%q reached the client as %q", msg, got.Message())
		}
	}
	for _, msg := range []string{
		"write tcp 127.0.0.1:39124->127.0.0.1:42199: write: broken pipe",
		"read tcp 10.0.0.5:51234->10.0.0.7:50051: read: connection reset by peer",
		"remote error: tls: bad certificate",
		"EOF",
		`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`,
	} {
		got := e.clientStatus(t.Context(), nil, status.Error(codes.Unavailable, msg))
		if got.Code() != codes.Unavailable || got.Message() != msgUnavailable {
			t.Errorf("%q reached the client as %v %q", msg, got.Code(), got.Message())
		}
	}
}

// A RESOURCE_EXHAUSTED the service sent (its load shedding) tells the
// client to back off; grpc-go's own, an answer over the gateway's receive
// limit, is not the client's doing and is withheld as an internal error.
func TestResourceExhaustedOfTheGatewaysConnectionIsInternal(t *testing.T) {
	e := errorHandlers{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if got := e.clientStatus(t.Context(), nil, status.Error(codes.ResourceExhausted, "overloaded, retry later")); got.Code() != codes.ResourceExhausted || got.Message() != "overloaded, retry later" {
		t.Errorf("the service's load shedding reached the client as %v %q", got.Code(), got.Message())
	}
	got := e.clientStatus(t.Context(), nil, status.Error(codes.ResourceExhausted, "grpc: received message larger than max (5600213 vs. 4194304)"))
	if got.Code() != codes.Internal || got.Message() != msgInternal {
		t.Errorf("grpc-go's receive limit reached the client as %v %q", got.Code(), got.Message())
	}
}
