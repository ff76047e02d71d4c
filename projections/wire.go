package projections

import (
	"fmt"
	"unicode/utf8"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A point read answers with the order as its client will receive it,
// encoded: appendOrderWire turns a stored body into the Order message's
// wire encoding by copying its fields and appending the ones readBody
// derives, so the message is never built in memory, filled in and
// encoded again: BenchmarkOrderWire, 1.6 µs and no allocation for an order
// of three lines against 2.6–3.8 µs and 25 allocations (1,352 B).

// The Order and LineItem fields appendOrderWire handles itself, by number,
// taken from the generated descriptors so that they cannot drift from the
// API.
var (
	orderFields    = (&ordersv1.Order{}).ProtoReflect().Descriptor().Fields()
	lineFields     = (&ordersv1.LineItem{}).ProtoReflect().Descriptor().Fields()
	fieldOrderID   = orderFields.ByName("order_id")
	fieldCustomer  = orderFields.ByName("customer_id")
	fieldLines     = orderFields.ByName("lines")
	fieldTotal     = orderFields.ByName("total")
	fieldRevision  = orderFields.ByName("revision")
	fieldVersion   = orderFields.ByName("version")
	fieldTax       = orderFields.ByName("tax")
	fieldGrand     = orderFields.ByName("grand_total")
	fieldQuantity  = lineFields.ByName("quantity")
	fieldUnitPrice = lineFields.ByName("unit_price")
	fieldLineTotal = lineFields.ByName("line_total")
)

// maxWireDepth bounds the nesting validMessage follows, as proto.Unmarshal
// bounds its own: the stored messages nest two deep.
const maxWireDepth = 100

// appendOrderWire appends to dst the wire encoding of the order that
// readBody returns for the same row: body's fields as they are, but for
// the ones readBody fills in, which it appends as readBody computes them.
// A body readBody refuses (not a valid Order message: a malformed field,
// a string that is not UTF-8) is refused here too, wrapped with the
// order's id; the bytes are never handed out half-checked.
func appendOrderWire(dst []byte, id, customer string, body []byte) ([]byte, error) {
	var (
		version    uint32
		total, tax int64
	)
	for b := body; len(b) > 0; {
		fd, typ, field, val, err := nextField(orderFields, b)
		if err != nil {
			return nil, fmt.Errorf("projections: stored order %s: %w", id, err)
		}
		b = b[len(field):]
		if fd == nil {
			dst = append(dst, field...)
			continue
		}
		if fd == fieldLines {
			if dst, err = appendLineWire(dst, val); err != nil {
				return nil, fmt.Errorf("projections: stored order %s: %w", id, err)
			}
			continue
		}
		// Even a field readBody overwrites must parse: proto.Unmarshal
		// refuses the body otherwise.
		if err := validValue(fd, typ, val, 0); err != nil {
			return nil, fmt.Errorf("projections: stored order %s: %w", id, err)
		}
		switch fd {
		case fieldOrderID, fieldCustomer, fieldRevision, fieldGrand:
			// readBody overwrites them; bodies of schema 3 as first
			// written hold them.
			continue
		case fieldVersion, fieldTotal, fieldTax:
			v, _ := protowire.ConsumeVarint(val)
			switch fd {
			case fieldVersion:
				version = uint32(v)
			case fieldTotal:
				total = int64(v)
			default:
				tax = int64(v)
			}
		}
		dst = append(dst, field...)
	}
	dst = appendString(dst, fieldOrderID.Number(), id)
	dst = appendString(dst, fieldCustomer.Number(), customer)
	dst = appendVarint(dst, fieldRevision.Number(), uint64(version))
	return appendVarint(dst, fieldGrand.Number(), uint64(total+tax)), nil
}

// appendLineWire appends one of the order's lines, whose stored encoding
// is val, as readBody returns it: with its line total.
func appendLineWire(dst, val []byte) ([]byte, error) {
	var quantity, price int64
	size := len(val)
	for b := val; len(b) > 0; {
		fd, typ, field, v, err := nextField(lineFields, b)
		if err != nil {
			return nil, err
		}
		b = b[len(field):]
		if fd == nil {
			continue
		}
		if err := validValue(fd, typ, v, 1); err != nil {
			return nil, err
		}
		switch fd {
		case fieldLineTotal:
			size -= len(field)
		case fieldQuantity, fieldUnitPrice:
			n, _ := protowire.ConsumeVarint(v)
			if fd == fieldQuantity {
				quantity = int64(n)
			} else {
				price = int64(n)
			}
		}
	}
	lineTotal := uint64(quantity * price)
	if lineTotal != 0 {
		size += protowire.SizeTag(fieldLineTotal.Number()) + protowire.SizeVarint(lineTotal)
	}
	dst = protowire.AppendTag(dst, fieldLines.Number(), protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	for b := val; len(b) > 0; {
		fd, _, field, _, _ := nextField(lineFields, b)
		b = b[len(field):]
		if fd != fieldLineTotal {
			dst = append(dst, field...)
		}
	}
	return appendVarint(dst, fieldLineTotal.Number(), lineTotal), nil
}

// nextField splits the first field off b: field is its whole encoding and
// val its value (for a length-delimited field, without the length). fd is
// its descriptor in fields, or nil when the field is unknown to it or
// arrives with a wire type its kind does not take: proto.Unmarshal keeps
// both as unknown fields, and a client reads them alike.
func nextField(fields protoreflect.FieldDescriptors, b []byte) (fd protoreflect.FieldDescriptor, typ protowire.Type, field, val []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return nil, 0, nil, nil, protowire.ParseError(n)
	}
	if num > protowire.MaxValidNumber {
		// ConsumeTag takes numbers up to 2³¹-1; a message's end at 2²⁹-1.
		return nil, 0, nil, nil, fmt.Errorf("field number %d out of range", num)
	}
	m := protowire.ConsumeFieldValue(num, typ, b[n:])
	if m < 0 {
		return nil, 0, nil, nil, protowire.ParseError(m)
	}
	field, val = b[:n+m], b[n:n+m]
	if typ == protowire.BytesType {
		v, _ := protowire.ConsumeBytes(val)
		val = v
	}
	if fd = fields.ByNumber(num); fd != nil && !takesWireType(fd, typ) {
		fd = nil
	}
	return fd, typ, field, val, nil
}

// takesWireType reports whether proto.Unmarshal reads a field of fd's kind
// sent with wire type typ as that field (else it keeps it as unknown).
func takesWireType(fd protoreflect.FieldDescriptor, typ protowire.Type) bool {
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return typ == protowire.BytesType
	case protoreflect.GroupKind:
		return typ == protowire.StartGroupType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return typ == protowire.Fixed32Type || typ == protowire.BytesType && fd.IsList()
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return typ == protowire.Fixed64Type || typ == protowire.BytesType && fd.IsList()
	default:
		return typ == protowire.VarintType || typ == protowire.BytesType && fd.IsList()
	}
}

// validValue refuses what proto.Unmarshal refuses in a field's value that
// nextField has already split off: a proto3 string that is not UTF-8, or
// a nested message that is not valid itself.
func validValue(fd protoreflect.FieldDescriptor, typ protowire.Type, val []byte, depth int) error {
	switch kind := fd.Kind(); {
	case typ != protowire.BytesType:
		return nil
	case kind == protoreflect.StringKind:
		if !utf8.Valid(val) {
			return fmt.Errorf("field %s: string is not valid UTF-8", fd.Name())
		}
	case fd.IsList() && kind != protoreflect.BytesKind && kind != protoreflect.MessageKind:
		// Packed numbers, whose every element must parse.
		for b := val; len(b) > 0; {
			var n int
			switch {
			case takesWireType(fd, protowire.Fixed32Type):
				_, n = protowire.ConsumeFixed32(b)
			case takesWireType(fd, protowire.Fixed64Type):
				_, n = protowire.ConsumeFixed64(b)
			default:
				_, n = protowire.ConsumeVarint(b)
			}
			if n < 0 {
				return fmt.Errorf("field %s: %w", fd.Name(), protowire.ParseError(n))
			}
			b = b[n:]
		}
	case kind == protoreflect.MessageKind:
		if depth >= maxWireDepth {
			return fmt.Errorf("field %s: nested too deep", fd.Name())
		}
		fields := fd.Message().Fields()
		for b := val; len(b) > 0; {
			inner, t, field, v, err := nextField(fields, b)
			if err != nil {
				return fmt.Errorf("field %s: %w", fd.Name(), err)
			}
			b = b[len(field):]
			if inner != nil {
				if err := validValue(inner, t, v, depth+1); err != nil {
					return fmt.Errorf("field %s: %w", fd.Name(), err)
				}
			}
		}
	}
	return nil
}

// appendString and appendVarint append a field as a deterministic marshal
// writes it: not at all when it holds its zero value.
func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	return protowire.AppendString(protowire.AppendTag(dst, num, protowire.BytesType), s)
}

func appendVarint(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	return protowire.AppendVarint(protowire.AppendTag(dst, num, protowire.VarintType), v)
}
