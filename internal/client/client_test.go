package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080": "127.0.0.1:8080", ":50051": "127.0.0.1:50051", "[::]:1": "127.0.0.1:1",
		"10.0.0.5:1": "10.0.0.5:1", "not-an-address": "not-an-address",
	} {
		if got := client.Dialable(in); got != want {
			t.Errorf("Dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

// admin is a rebuild that sends its steps, then fails with fail if set, and
// records the authorization each call presented.
type admin struct {
	ordersv1.UnimplementedOrderAdminServiceServer
	steps []*ordersv1.RebuildReadModelResponse
	fail  error
	auth  chan []string
}

func (a *admin) RebuildReadModel(_ *ordersv1.RebuildReadModelRequest, s grpc.ServerStreamingServer[ordersv1.RebuildReadModelResponse]) error {
	md, _ := metadata.FromIncomingContext(s.Context())
	a.auth <- md.Get("authorization")
	for _, st := range a.steps {
		if err := s.Send(st); err != nil {
			return err
		}
	}
	return a.fail
}

func serve(t *testing.T, a *admin) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ordersv1.RegisterOrderAdminServiceServer(srv, a)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestRebuildPresentsTokenAndReportsEachStep(t *testing.T) {
	a := &admin{auth: make(chan []string, 2), steps: []*ordersv1.RebuildReadModelResponse{
		{Position: 5, TargetPosition: 10, EventsDone: 5}, {Position: 10, TargetPosition: 10, EventsDone: 10, Swapped: true},
	}}
	addr := serve(t, a)
	for _, token := range []string{"secret", ""} {
		conn, err := client.Dial(addr, client.WithToken(token))
		if err != nil {
			t.Fatal(err)
		}
		var seen int
		last, err := client.Rebuild(t.Context(), conn, func(*ordersv1.RebuildReadModelResponse) error { seen++; return nil })
		_ = conn.Close()
		if err != nil || seen != 2 || !last.GetSwapped() {
			t.Fatalf("token %q: last %v, %d steps, err %v", token, last, seen, err)
		}
		got := <-a.auth
		if token == "" && len(got) != 0 || token != "" && (len(got) != 1 || got[0] != "Bearer "+token) {
			t.Errorf("token %q: authorization %q", token, got)
		}
	}
}

func TestRebuildErrors(t *testing.T) {
	a := &admin{auth: make(chan []string, 2), steps: []*ordersv1.RebuildReadModelResponse{{Position: 1}},
		fail: status.Error(codes.FailedPrecondition, "a rebuild is running")}
	conn, err := client.Dial(serve(t, a))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	last, err := client.Rebuild(t.Context(), conn, func(*ordersv1.RebuildReadModelResponse) error { return nil })
	if status.Code(err) != codes.FailedPrecondition || last.GetPosition() != 1 {
		t.Fatalf("server's error: last %v, err %v", last, err)
	}
	if client.ExitCode(err) != client.ExitConflict || client.Message(err) != "failed precondition: a rebuild is running" {
		t.Errorf("exit %d, message %q", client.ExitCode(err), client.Message(err))
	}
	stop := errors.New("stop")
	if _, err := client.Rebuild(t.Context(), conn, func(*ordersv1.RebuildReadModelResponse) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("callback's error: %v", err)
	}
}

// A rebuild whose stream ends without an error, and without the message
// that says the new model was swapped in (a proxy cutting it short), did
// not rebuild: it is UNAVAILABLE, run it again. It returned no error, and
// ordersctl admin rebuild exited 0.
func TestRebuildCutShortIsUnavailable(t *testing.T) {
	for _, steps := range [][]*ordersv1.RebuildReadModelResponse{nil, {{Position: 5, TargetPosition: 10, EventsDone: 5}}} {
		conn, err := client.Dial(serve(t, &admin{auth: make(chan []string, 1), steps: steps}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		if _, err := client.Rebuild(t.Context(), conn, func(*ordersv1.RebuildReadModelResponse) error { return nil }); status.Code(err) != codes.Unavailable {
			t.Errorf("a rebuild's stream ended after %d messages, none swapped: %v, want UNAVAILABLE", len(steps), err)
		}
	}
}

func TestDialRejectsInvalidOptions(t *testing.T) {
	for name, opt := range map[string]client.Option{"nil credentials": client.WithCredentials(nil), "nil propagator": client.WithPropagator(nil)} {
		if _, err := client.Dial("127.0.0.1:1", opt); !errors.Is(err, client.ErrInvalidOption) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	for err, want := range map[error]int{
		nil:                                     client.ExitOK,
		status.Error(codes.InvalidArgument, ""): client.ExitUsage,
		status.Error(codes.NotFound, ""):        client.ExitNotFound,
		status.Error(codes.Aborted, ""):         client.ExitConflict,
		status.Error(codes.Unavailable, ""):     client.ExitUnavailable,
		context.DeadlineExceeded:                client.ExitUnavailable,
		status.Error(codes.Internal, ""):        client.ExitOther,
		errors.New("plain"):                     client.ExitOther,
	} {
		if got := client.ExitCode(err); got != want {
			t.Errorf("ExitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

func TestProgress(t *testing.T) {
	client.NewProgress(nil, "quiet").Update(1, 2, 1) // draws nowhere
	var b strings.Builder
	p := client.NewProgress(&b, "rebuilding")
	p.Update(5, 10, 5)
	p.Done()
	if got := b.String(); !strings.HasPrefix(got, "\rrebuilding [") || !strings.Contains(got, " 50.0%") || !strings.HasSuffix(got, "\n") {
		t.Errorf("bar: %q", got)
	}
}
