package app_test

import (
	"context"
	"testing"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// unaryMethods are the full names of every unary method ordersd serves
// with all roles.
func unaryMethods() []string {
	var out []string
	for _, sd := range []grpc.ServiceDesc{
		ordersv1.OrderCommandService_ServiceDesc, ordersv1.OrderQueryService_ServiceDesc,
		ordersv1.OrderAuditService_ServiceDesc, ordersv1.OrderAdminService_ServiceDesc,
		ordersv1.PaymentAdminService_ServiceDesc, ordersv1.DeadlineAdminService_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
	}
	return out
}

// FuzzRPCRefusesBadInputClearly sends every unary method ordersd serves
// whatever bytes a client could. A request that does not decode, or
// decodes to something no command or query accepts, is the client's
// mistake: it must get a client error, never INTERNAL, UNKNOWN, DATA_LOSS
// or UNAVAILABLE (which says "retry", and a retry of bad input fails
// again), and ordersd must keep answering.
func FuzzRPCRefusesBadInputClearly(f *testing.F) {
	str := func(field protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, field, protowire.BytesType), s)
	}
	num := func(field protowire.Number, n uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, field, protowire.VarintType), n)
	}
	f.Add(uint8(0), []byte(nil))
	f.Add(uint8(0), str(1, "\xff\xfe"))
	f.Add(uint8(1), append(str(1, "r-1"), str(2, "")...))
	f.Add(uint8(7), num(2, 1<<63))
	f.Add(uint8(12), append(str(1, "o|1"), num(3, 99)...))
	f.Add(uint8(20), []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(uint8(30), num(1, 0))
	a, _ := apptest.Start(f, nil)
	conn, err := grpc.NewClient(a.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = conn.Close() })
	methods := unaryMethods()
	f.Fuzz(func(t *testing.T, method uint8, payload []byte) {
		m := methods[int(method)%len(methods)]
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var out []byte
		err := conn.Invoke(ctx, m, payload, &out, grpc.ForceCodec(bytesCodec{}))
		switch status.Code(err) {
		case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable, codes.DeadlineExceeded:
			t.Fatalf("%s(% x): %v", m, payload, err)
		}
	})
}
