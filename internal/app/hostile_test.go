package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/orderstream/orderstream/internal/app/apptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// bytesCodec sends a request's bytes as given, as a hostile client would.
type bytesCodec struct{}

func (bytesCodec) Name() string                       { return "proto" }
func (bytesCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (bytesCodec) Unmarshal(data []byte, v any) error { return nil }

// ordersd answers a request that does not decode (here a request id of
// invalid UTF-8) INVALID_ARGUMENT, as a client's mistake, not INTERNAL.
func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	a, _ := apptest.Start(t, map[string]string{"ROLES": "command"})
	body := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
	var out []byte
	err := dial(t, a.GRPC).Invoke(t.Context(), "/orders.v1.OrderCommandService/CreateOrder", body, &out, grpc.ForceCodec(bytesCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid UTF-8 in request_id: %v", err)
	}
}

// A caller without a token is told only that, whatever it sends: an
// undecodable request answered INVALID_ARGUMENT before authentication
// named the request's message type and what was wrong with it, for any
// method, the admin ones included.
func TestUndecodableRequestWithoutATokenIsUnauthenticated(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("admin-token-0123456789 ops admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := apptest.Start(t, map[string]string{"AUTH_TOKENS_FILE": tokens})
	conn := dial(t, a.GRPC)
	body := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
	call := func(ctx context.Context) error {
		var out []byte
		return conn.Invoke(ctx, "/orders.v1.OrderAdminService/ForgetCustomer", body, &out, grpc.ForceCodec(bytesCodec{}))
	}
	if err := call(t.Context()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v, want UNAUTHENTICATED", err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer admin-token-0123456789")
	if err := call(ctx); status.Code(err) != codes.InvalidArgument {
		t.Errorf("with the admin's token: %v, want INVALID_ARGUMENT", err)
	}
}
