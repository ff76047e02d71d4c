package app_test

import (
	"testing"

	"github.com/orderstream/orderstream/internal/app/apptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
