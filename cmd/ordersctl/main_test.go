package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/cli"
	"google.golang.org/grpc"
)

// TestMain runs ordersctl itself when a test asks for it, so that a test
// sees the process as a shell does: its exit status and its signals.
func TestMain(m *testing.M) {
	if os.Getenv("ORDERSCTL_TEST_MAIN") == "1" {
		os.Exit(cli.Main())
	}
	os.Exit(m.Run())
}

// endlessAudit exports events until its client goes away.
type endlessAudit struct {
	ordersv1.UnimplementedOrderAuditServiceServer
}

func (endlessAudit) StreamEvents(_ *ordersv1.StreamEventsRequest, s grpc.ServerStreamingServer[ordersv1.StreamEventsResponse]) error {
	for p := uint64(1); ; p++ {
		if err := s.Send(&ordersv1.StreamEventsResponse{Event: &ordersv1.RecordedEvent{Position: p, Type: "OrderCreated", OrderId: "o"}}); err != nil {
			return err
		}
	}
}

// An export whose reader closes the pipe (`ordersctl audit export | head
// -1`) exits 5, the status of an output that cannot be written, as its
// help says. Before, the process was killed by SIGPIPE (a shell's 141).
func TestClosedPipeExitsWithTheWriteFailure(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	ordersv1.RegisterOrderAuditServiceServer(gs, endlessAudit{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	cmd := exec.CommandContext(t.Context(), os.Args[0], "audit", "export", "--addr", lis.Addr().String())
	cmd.Env = append(os.Environ(), "ORDERSCTL_TEST_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	_ = out.Close() // what head does after its first line
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != cli.ExitOther {
		t.Fatalf("ordersctl whose output pipe closed: %v, want exit status %d", err, cli.ExitOther)
	}
}
