package projections

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/order"
	"google.golang.org/protobuf/proto"
)

// The orders table stores each order's state in its body column as the
// API's ordersv1.Order message, protobuf binary, without the fields the row
// gives otherwise: the order and customer ids (its columns), the revision
// (the version), the line totals and the grand total (products and sums of
// other fields). A read fills them back in (readBody), so a query hands the
// message to its client as it is, with no fold and no conversion.
// Protobuf names fields by number, so renaming a Go field or a proto field
// changes nothing stored. The format is versioned with the schema: a
// change to what body holds that older code could not read is a new
// migration that rewrites the rows (see migrateOrdersToProto). Bodies
// written with the derived fields set (schema 3 as first written) read the
// same.

// bodyOpts marshals the stored body. Deterministic, so the same state is
// always the same bytes.
var bodyOpts = proto.MarshalOptions{Deterministic: true}

// appendBody appends s, as stored, to buf, converting it into scratch,
// whose messages it fills again for the next order (a rebuild writes a
// row per order of every batch).
func appendBody(buf []byte, s order.State, scratch *ordersv1.Order) ([]byte, error) {
	convert.OrderIntoProto(scratch, s)
	return appendMessage(buf, scratch)
}

// appendMessage appends o, as stored, to buf: o loses the fields readBody
// derives.
func appendMessage(buf []byte, o *ordersv1.Order) ([]byte, error) {
	o.OrderId, o.CustomerId, o.Revision, o.GrandTotal = "", "", 0, 0
	for _, l := range o.GetLines() {
		l.LineTotal = 0
	}
	return bodyOpts.MarshalAppend(buf, o)
}

// readBody parses the stored body of the order id of customer and fills in
// the fields appendMessage left out, as OrderToProto sets them.
func readBody(id, customer string, blob []byte) (*ordersv1.Order, error) {
	o := &ordersv1.Order{}
	if err := proto.Unmarshal(blob, o); err != nil {
		return nil, fmt.Errorf("projections: stored order %s: %w", id, err)
	}
	o.OrderId, o.CustomerId = id, customer
	o.Revision = uint64(o.GetVersion())
	o.GrandTotal = o.GetTotal() + o.GetTax()
	for _, l := range o.GetLines() {
		l.LineTotal = l.GetQuantity() * l.GetUnitPrice()
	}
	return o, nil
}

// ordersV3Columns are the orders table's columns in schema 3: the columns
// the queries filter and sort on, the position of the order's last event,
// and the body. Schema 4 added the row number (seq) before them. Two
// shipped migrations use it: never edit it.
const ordersV3Columns = `
		id          TEXT NOT NULL UNIQUE,
		customer_id TEXT NOT NULL,
		status      INTEGER NOT NULL,
		created_at  INTEGER NOT NULL,
		revision    INTEGER NOT NULL,
		body        BLOB NOT NULL
	`

// ordersV3 is the orders table of schema 3.
const ordersV3 = `CREATE TABLE orders_v3 (` + ordersV3Columns + `)`

// migrateChunk is how many rows migrateOrdersToProto converts per step, so
// its memory stays bounded whatever the file holds.
const migrateChunk = 2048

// migrateOrdersToProto rewrites the orders table of schema 2, whose state
// column held encoding/json of order.State, into schema 3's, whose body
// column holds the ordersv1.Order message, in arrival (rowid) order. The
// columns schema 2 kept only for display (currency, totals, the shipping
// city, the other times) are in the body and are dropped.
func migrateOrdersToProto(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, ordersV3); err != nil {
		return err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO orders_v3 (id, customer_id, status, created_at, revision, body) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for after := int64(-1); ; {
		rows, last, err := readLegacyRows(ctx, tx, after)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		var buf []byte
		for _, r := range rows {
			if buf, err = appendMessage(buf[:0], r.state.toProto()); err != nil {
				return fmt.Errorf("order %s: %w", r.id, err)
			}
			if _, err := ins.ExecContext(ctx, r.id, r.customer, r.status, r.createdAt, r.revision, buf); err != nil {
				return err
			}
		}
		after = last
	}
	_, err = tx.ExecContext(ctx, `DROP TABLE orders;
		ALTER TABLE orders_v3 RENAME TO orders;
		CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
		CREATE INDEX orders_customer ON orders (customer_id, created_at DESC, id DESC);
		CREATE INDEX orders_status ON orders (status, created_at DESC, id DESC);`)
	return err
}

// legacyRow is one row of schema 2's orders table, its state decoded.
type legacyRow struct {
	id, customer                string
	status, createdAt, revision int64
	state                       stateV2
}

// readLegacyRows returns up to migrateChunk rows of schema 2's orders
// table after rowid after, and the last rowid read.
func readLegacyRows(ctx context.Context, tx *sql.Tx, after int64) ([]legacyRow, int64, error) {
	rs, err := tx.QueryContext(ctx, `SELECT rowid, id, customer_id, status, created_at, revision, state FROM orders
		WHERE rowid > ? ORDER BY rowid LIMIT ?`, after, migrateChunk)
	if err != nil {
		return nil, 0, err
	}
	defer rs.Close()
	var out []legacyRow
	last := after
	for rs.Next() {
		var r legacyRow
		var blob []byte
		if err := rs.Scan(&last, &r.id, &r.customer, &r.status, &r.createdAt, &r.revision, &blob); err != nil {
			return nil, 0, err
		}
		if err := json.Unmarshal(blob, &r.state); err != nil {
			return nil, 0, fmt.Errorf("order %s: stored state: %w", r.id, err)
		}
		out = append(out, r)
	}
	return out, last, rs.Err()
}

// stateV2 is order.State as schemas 1 and 2 stored it: encoding/json of
// the Go struct, keyed by its field names of the time. It is frozen here,
// not taken from package order, so those files still read after the
// domain's fields are renamed. Tax is absent from files written before
// orders recorded it, and reads as 0, as it does in the domain.
type stateV2 struct {
	ID, CustomerID, Currency string
	Status                   int32
	Lines                    []struct {
		SKU                 string
		Quantity, UnitPrice int64
	}
	Shipping *struct {
		Name, Line1, Line2, City, Region, PostalCode, Country string
	}
	Total, Tax                                                                              int64
	PaymentRef, DeclineReason                                                               string
	PaidAmount                                                                              int64
	RefundRef, CancelReason, Carrier, TrackingNumber                                        string
	Version                                                                                 int
	CreatedAt, UpdatedAt, PlacedAt, PaidAt, ShippedAt, DeliveredAt, CancelledAt, RefundedAt time.Time
}

// toProto is the message OrderToProto makes of the state s describes.
// The status numbering of package order matches the enum's.
func (s *stateV2) toProto() *ordersv1.Order {
	o := &ordersv1.Order{
		OrderId: s.ID, CustomerId: s.CustomerID, Status: ordersv1.OrderStatus(s.Status), Currency: s.Currency,
		Total: s.Total, Tax: s.Tax, GrandTotal: s.Total + s.Tax, PaymentRef: s.PaymentRef, DeclineReason: s.DeclineReason, CancelReason: s.CancelReason,
		Carrier: s.Carrier, TrackingNumber: s.TrackingNumber, Revision: uint64(s.Version), Version: uint32(s.Version),
		CreatedAt: convert.Timestamp(s.CreatedAt), UpdatedAt: convert.Timestamp(s.UpdatedAt),
		PlacedAt: convert.Timestamp(s.PlacedAt), PaidAt: convert.Timestamp(s.PaidAt),
		ShippedAt: convert.Timestamp(s.ShippedAt), DeliveredAt: convert.Timestamp(s.DeliveredAt),
		CancelledAt: convert.Timestamp(s.CancelledAt), PaidAmount: s.PaidAmount, RefundRef: s.RefundRef,
		RefundedAt: convert.Timestamp(s.RefundedAt),
	}
	for _, l := range s.Lines {
		o.Lines = append(o.Lines, &ordersv1.LineItem{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: l.UnitPrice, LineTotal: l.Quantity * l.UnitPrice})
	}
	if a := s.Shipping; a != nil {
		o.ShippingAddress = &ordersv1.Address{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City,
			Region: a.Region, PostalCode: a.PostalCode, Country: a.Country}
	}
	return o
}
