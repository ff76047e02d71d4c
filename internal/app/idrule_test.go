package app_test

import (
	"context"
	"strings"
	"testing"

	_ "github.com/orderstream/orderstream/api/orders/v1" // registers the orders.v1 descriptors
	"github.com/orderstream/orderstream/internal/app/apptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// isIDField reports whether a request field holds identifiers, to which the
// one id rule of the system applies.
func isIDField(f protoreflect.FieldDescriptor) bool {
	n := string(f.Name())
	return f.Kind() == protoreflect.StringKind && (strings.HasSuffix(n, "_id") || strings.HasSuffix(n, "_ids") || n == "sku" || n == "payment_ref")
}

// invoke calls method with req over conn, unary or server-streaming, and
// returns the call's error (for a stream: the first Recv's).
func invoke(ctx context.Context, conn *grpc.ClientConn, m protoreflect.MethodDescriptor, req *dynamicpb.Message) error {
	full := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
	out := dynamicpb.NewMessage(m.Output())
	if !m.IsStreamingServer() {
		return conn.Invoke(ctx, full, req, out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, full)
	if err != nil {
		return err
	}
	if err := s.SendMsg(req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	return s.RecvMsg(out)
}

// Every RPC of every service applies the same id rule to every id it takes:
// an id with full-width or zero-width characters answers INVALID_ARGUMENT
// naming the field, never NOT_FOUND or an empty answer.
func TestEveryRPCAppliesTheIDRule(t *testing.T) {
	a, _ := apptest.Start(t, nil)
	conn := dial(t, a.GRPC)
	bad := map[string]string{"full-width": "ｏｒｄｅｒ-1", "zero-width": "order\u200b-1", "bidi": "order\u202e-1"}
	checked := 0
	protoregistry.GlobalFiles.RangeFilesByPackage("orders.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				m := sd.Methods().Get(j)
				fields := m.Input().Fields()
				for k := range fields.Len() {
					f := fields.Get(k)
					if !isIDField(f) {
						continue
					}
					for kind, v := range bad {
						req := dynamicpb.NewMessage(m.Input())
						// Every other field valid or set, so that the only
						// thing wrong is f.
						for l := range fields.Len() {
							o := fields.Get(l)
							switch {
							case o == f:
							case isIDField(o) && o.IsList():
								req.Mutable(o).List().Append(protoreflect.ValueOfString("ok-1"))
							case isIDField(o):
								req.Set(o, protoreflect.ValueOfString("ok-1"))
							case o.IsList() || o.HasOptionalKeyword() || (o.ContainingOneof() != nil && req.WhichOneof(o.ContainingOneof()) != nil):
							case o.Kind() == protoreflect.EnumKind:
								req.Set(o, protoreflect.ValueOfEnum(1))
							case o.Kind() == protoreflect.Uint64Kind:
								req.Set(o, protoreflect.ValueOfUint64(1))
							case o.Kind() == protoreflect.Int64Kind:
								req.Set(o, protoreflect.ValueOfInt64(1))
							case o.Kind() == protoreflect.MessageKind:
								req.Set(o, protoreflect.ValueOfMessage(dynamicpb.NewMessage(o.Message())))
							}
						}
						if f.IsList() {
							req.Mutable(f).List().Append(protoreflect.ValueOfString(v))
						} else {
							req.Set(f, protoreflect.ValueOfString(v))
						}
						err := invoke(t.Context(), conn, m, req)
						st := status.Convert(err)
						field := ""
						for _, d := range st.Details() {
							if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
								field = br.GetFieldViolations()[0].GetField()
							}
						}
						if st.Code() != codes.InvalidArgument || field != string(f.Name()) {
							t.Errorf("%s %s %s: %v (field %q)", m.FullName(), f.Name(), kind, err, field)
						}
						checked++
					}
				}
			}
		}
		return true
	})
	if checked == 0 {
		t.Fatal("no RPC takes an id")
	}
	t.Logf("%d calls checked", checked)
}
