package command

import (
	"bytes"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A request's fingerprint is stored with its events and compared with every
// later request under the same request_id, so its bytes must never change:
// a retry across an upgrade that changed them would be refused as a reused
// request id. The expected values are what the digest has given since
// fingerprints were recorded.
func TestRequestFingerprintsAreStable(t *testing.T) {
	for _, tc := range []struct {
		req  request
		want string
	}{
		{&ordersv1.CreateOrderRequest{RequestId: "r-1", CustomerId: "c-1", Currency: "EUR",
			Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 2, UnitPrice: 999}, {Sku: "B", Quantity: 1, UnitPrice: 5}},
			ShippingAddress: &ordersv1.Address{Line1: "1 Main St", City: "Lyon", PostalCode: "69001", Country: "FR"}}, "3a35d1aa0562266b4fff19b36daab7f9a71097ffbe68123d53c08bfe06c62de7"},
		{&ordersv1.AddItemRequest{RequestId: "r-2", OrderId: "o-1", Sku: "A", Quantity: 3, UnitPrice: 100}, "a4b5831dad30b782ae232cdc9ef8d0789fd1ed86d356f4aaceaa87f91a395e94"},
		{&ordersv1.PlaceOrderRequest{RequestId: "r-3", OrderId: "o-1"}, "1bce67c17b99a788b2d12e38b2cbcdc7bafb02cb1b058a93a93dfa9b28ea80b3"},
	} {
		digest, err := requestDigest(tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := plainFingerprint(digest); got != tc.want {
			t.Errorf("%T: fingerprint %s, want %s", tc.req, got, tc.want)
		}
	}
}

// The digest leaves out request_id and unknown fields, wherever they are:
// a retry that a newer client sent with fields this build does not know is
// the same request.
func TestRequestDigestIgnoresRequestIDAndUnknownFields(t *testing.T) {
	base := &ordersv1.CreateOrderRequest{RequestId: "r-1", CustomerId: "c-1", Currency: "EUR",
		Lines: []*ordersv1.LineItem{{Sku: "A", Quantity: 2, UnitPrice: 999}}}
	want, err := requestDigest(base)
	if err != nil {
		t.Fatal(err)
	}
	unknown := protowire.AppendTag(nil, 999, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("from a newer client"))
	for _, where := range []string{"request", "line", "both"} {
		other := proto.Clone(base).(*ordersv1.CreateOrderRequest)
		other.RequestId = "r-2"
		if where != "line" {
			other.ProtoReflect().SetUnknown(unknown)
		}
		if where != "request" {
			other.Lines[0].ProtoReflect().SetUnknown(unknown)
		}
		before := must(proto.Marshal(other))
		got, err := requestDigest(other)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("unknown field in the %s: digest differs", where)
		}
		if after := must(proto.Marshal(other)); !bytes.Equal(after, before) {
			t.Errorf("unknown field in the %s: requestDigest changed the request it was given", where)
		}
	}
	changed := proto.Clone(base).(*ordersv1.CreateOrderRequest)
	changed.Lines[0].Quantity = 3
	d, err := requestDigest(changed)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(d, want) {
		t.Errorf("another quantity has the same digest")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkRequestDigest digests a CreateOrder request of two lines.
func BenchmarkRequestDigest(b *testing.B) {
	req := &ordersv1.CreateOrderRequest{RequestId: "r-1", CustomerId: "c-1", Currency: "EUR",
		Lines:           []*ordersv1.LineItem{{Sku: "A", Quantity: 2, UnitPrice: 999}, {Sku: "B", Quantity: 1, UnitPrice: 5}},
		ShippingAddress: &ordersv1.Address{Line1: "1 Main St", City: "Lyon", PostalCode: "69001", Country: "FR"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := requestDigest(req); err != nil {
			b.Fatal(err)
		}
	}
}

// The fields the fingerprint leaves out are found by name in the API's
// descriptors: a renamed one would be nil, and fingerprinted again.
func TestIgnoredFieldsExist(t *testing.T) {
	for i, fd := range ignoredOnInput {
		if fd == nil {
			t.Errorf("field %d of ignoredOnInput: not in the API", i)
		}
	}
}
