package projections

import (
	"fmt"
	"slices"
	"unicode/utf8"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A point read or a list answers with each order as its client will
// receive it, encoded: appendOrderWire turns a stored body into the Order
// message's wire encoding by copying its fields and appending the ones
// readBody derives, so the message is never built in memory, filled in
// and encoded again. BenchmarkOrderWire: 0.7–1.1 µs and no allocation for
// an order of three lines, against 2.8–4.0 µs and 25 allocations (1,352
// B) for readBody and a marshal.

// The Order and LineItem fields appendOrderWire handles itself, taken from
// the generated descriptors so that they cannot drift from the API, and
// the two messages' tables of fields.
var (
	orderFields    = (&ordersv1.Order{}).ProtoReflect().Descriptor().Fields()
	lineFields     = (&ordersv1.LineItem{}).ProtoReflect().Descriptor().Fields()
	fieldOrderID   = orderFields.ByName("order_id").Number()
	fieldCustomer  = orderFields.ByName("customer_id").Number()
	fieldLines     = orderFields.ByName("lines").Number()
	fieldTotal     = orderFields.ByName("total").Number()
	fieldRevision  = orderFields.ByName("revision").Number()
	fieldVersion   = orderFields.ByName("version").Number()
	fieldTax       = orderFields.ByName("tax").Number()
	fieldGrand     = orderFields.ByName("grand_total").Number()
	fieldQuantity  = lineFields.ByName("quantity").Number()
	fieldUnitPrice = lineFields.ByName("unit_price").Number()
	fieldLineTotal = lineFields.ByName("line_total").Number()
	orderWire      = newWireMessage((&ordersv1.Order{}).ProtoReflect().Descriptor())
	lineWire       = orderWire.fields[fieldLines].msg
)

// appendOrderWire appends to dst the wire encoding of the order that
// readBody returns for the same row: body's fields as they are, but for
// the ones readBody fills in, which it appends as readBody computes them.
// A body readBody refuses (not a valid Order message: a malformed field,
// a string that is not UTF-8) is refused here too, wrapped with the
// order's id; the bytes are never handed out half-checked.
func appendOrderWire(dst []byte, id, customer string, body []byte) (_ []byte, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("projections: stored order %s: %w", id, err)
		}
	}()
	var (
		version    uint32
		total, tax int64
	)
	// Room for what is added but the line totals, which an order of a
	// few lines fits in too.
	dst = slices.Grow(dst, len(body)+len(id)+len(customer)+64)
	err = eachField(orderWire, body, func(f *wireField, typ protowire.Type, field, val []byte) error {
		if f == nil {
			dst = append(dst, field...)
			return nil
		}
		if f.num == fieldLines {
			var err error
			dst, err = appendLineWire(dst, field, val)
			return err
		}
		// Even a field readBody overwrites must parse: proto.Unmarshal
		// refuses the body otherwise.
		if err := validValue(f, typ, val); err != nil {
			return err
		}
		switch f.num {
		case fieldOrderID, fieldCustomer, fieldRevision, fieldGrand:
			// readBody overwrites them; bodies of schema 3 as first
			// written hold them.
			return nil
		case fieldVersion:
			version = uint32(varint(val))
		case fieldTotal:
			total = int64(varint(val))
		case fieldTax:
			tax = int64(varint(val))
		}
		dst = append(dst, field...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	dst = appendString(dst, fieldOrderID, id)
	dst = appendString(dst, fieldCustomer, customer)
	dst = appendVarint(dst, fieldRevision, uint64(version))
	return appendVarint(dst, fieldGrand, uint64(total+tax)), nil
}

// appendLineWire appends one of the order's lines, stored as field (its
// whole encoding) with the value val, as readBody returns it: with its
// line total.
func appendLineWire(dst, field, val []byte) ([]byte, error) {
	var quantity, price int64
	size, stale := len(val), false
	err := eachField(lineWire, val, func(f *wireField, typ protowire.Type, field, v []byte) error {
		if f == nil {
			return nil
		}
		if err := validValue(f, typ, v); err != nil {
			return err
		}
		switch f.num {
		case fieldLineTotal:
			size, stale = size-len(field), true
		case fieldQuantity:
			quantity = int64(varint(v))
		case fieldUnitPrice:
			price = int64(varint(v))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	lineTotal := uint64(quantity * price)
	if lineTotal == 0 && !stale {
		return append(dst, field...), nil
	}
	if lineTotal != 0 {
		size += protowire.SizeTag(fieldLineTotal) + protowire.SizeVarint(lineTotal)
	}
	dst = protowire.AppendTag(dst, fieldLines, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	if !stale {
		dst = append(dst, val...)
	} else {
		// Only a body of schema 3 as first written holds the line total.
		// The walk above took every field, so this one finds no error.
		_ = eachField(lineWire, val, func(f *wireField, _ protowire.Type, field, _ []byte) error {
			if f == nil || f.num != fieldLineTotal {
				dst = append(dst, field...)
			}
			return nil
		})
	}
	return appendVarint(dst, fieldLineTotal, lineTotal), nil
}

// wireMessage is a message's fields by number, as the walks here need
// them: looking a field up in the descriptors at every field of every
// order cost as much as proto.Unmarshal.
type wireMessage struct {
	fields []wireField // by number; a number past its end or unset is unknown
}

// wireField is a known field: the wire type proto.Unmarshal reads it with,
// whether it also reads it packed (a list of numbers), and what it checks
// in its value: UTF-8 for a string, the fields of a message.
type wireField struct {
	fd     protoreflect.FieldDescriptor // nil: no field has the number
	num    protowire.Number
	typ    protowire.Type
	packed bool
	utf8   bool
	msg    *wireMessage
}

// newWireMessage builds md's table and those of the messages its fields
// hold.
func newWireMessage(md protoreflect.MessageDescriptor) *wireMessage {
	return buildWireMessage(md, map[protoreflect.FullName]*wireMessage{})
}

// buildWireMessage is newWireMessage; seen, the tables begun, ends the
// recursion of a message that holds itself.
func buildWireMessage(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]*wireMessage) *wireMessage {
	if m, ok := seen[md.FullName()]; ok {
		return m
	}
	m := &wireMessage{}
	seen[md.FullName()] = m
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		n := int(fd.Number())
		if n >= len(m.fields) {
			m.fields = append(m.fields, make([]wireField, n+1-len(m.fields))...)
		}
		f := wireField{fd: fd, num: fd.Number()}
		switch fd.Kind() {
		case protoreflect.StringKind:
			f.typ, f.utf8 = protowire.BytesType, true
		case protoreflect.BytesKind:
			f.typ = protowire.BytesType
		case protoreflect.MessageKind:
			f.typ, f.msg = protowire.BytesType, buildWireMessage(fd.Message(), seen)
		case protoreflect.GroupKind:
			f.typ = protowire.StartGroupType
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			f.typ, f.packed = protowire.Fixed32Type, fd.IsList()
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			f.typ, f.packed = protowire.Fixed64Type, fd.IsList()
		default:
			f.typ, f.packed = protowire.VarintType, fd.IsList()
		}
		m.fields[n] = f
	}
	return m
}

// nextField splits the first field off b: field is its whole encoding and
// val its value (for a length-delimited field, without the length). f is
// the field in m, or nil when the field is unknown to it or arrives with a
// wire type its kind does not take: proto.Unmarshal keeps both as unknown
// fields, and a client reads them alike.
func nextField(m *wireMessage, b []byte) (f *wireField, typ protowire.Type, field, val []byte, err error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return nil, 0, nil, nil, protowire.ParseError(n)
	}
	if num > protowire.MaxValidNumber {
		// ConsumeTag takes numbers up to 2³¹-1; a message's end at 2²⁹-1.
		return nil, 0, nil, nil, fmt.Errorf("field number %d out of range", num)
	}
	var m2 int
	if typ == protowire.BytesType {
		val, m2 = protowire.ConsumeBytes(b[n:])
	} else {
		m2 = protowire.ConsumeFieldValue(num, typ, b[n:])
		val = b[n:max(n, n+m2)]
	}
	if m2 < 0 {
		return nil, 0, nil, nil, protowire.ParseError(m2)
	}
	field = b[:n+m2]
	if int(num) < len(m.fields) {
		if k := &m.fields[num]; k.fd != nil && (typ == k.typ || k.packed && typ == protowire.BytesType) {
			f = k
		}
	}
	return f, typ, field, val, nil
}

// eachField calls fn with each field of b in m, as nextField splits it
// off, in order. It returns nextField's error for a field that does not
// parse, or fn's first error, and calls fn no more after either.
func eachField(m *wireMessage, b []byte, fn func(f *wireField, typ protowire.Type, field, val []byte) error) error {
	for len(b) > 0 {
		f, typ, field, val, err := nextField(m, b)
		if err != nil {
			return err
		}
		b = b[len(field):]
		if err := fn(f, typ, field, val); err != nil {
			return err
		}
	}
	return nil
}

// validValue refuses what proto.Unmarshal refuses in a field's value that
// nextField has already split off: a proto3 string that is not UTF-8,
// packed numbers that do not parse, or a nested message that is not valid
// itself.
func validValue(f *wireField, typ protowire.Type, val []byte) error {
	switch {
	case typ != protowire.BytesType:
		return nil
	case f.utf8:
		if !utf8.Valid(val) {
			return fmt.Errorf("field %s: string is not valid UTF-8", f.fd.Name())
		}
	case f.packed:
		for b := val; len(b) > 0; {
			var n int
			switch f.typ {
			case protowire.Fixed32Type:
				_, n = protowire.ConsumeFixed32(b)
			case protowire.Fixed64Type:
				_, n = protowire.ConsumeFixed64(b)
			default:
				_, n = protowire.ConsumeVarint(b)
			}
			if n < 0 {
				return fmt.Errorf("field %s: %w", f.fd.Name(), protowire.ParseError(n))
			}
			b = b[n:]
		}
	case f.msg != nil:
		err := eachField(f.msg, val, func(inner *wireField, t protowire.Type, _, v []byte) error {
			if inner == nil {
				return nil
			}
			return validValue(inner, t, v)
		})
		if err != nil {
			return fmt.Errorf("field %s: %w", f.fd.Name(), err)
		}
	}
	return nil
}

// varint is the value of a varint field that nextField has split off and
// checked.
func varint(val []byte) uint64 {
	v, _ := protowire.ConsumeVarint(val)
	return v
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
