package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/money"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jsonOpts emits every field, so scripts can rely on a field being present.
var jsonOpts = protojson.MarshalOptions{EmitUnpopulated: true}

// printJSON prints m for -o json: its proto3 JSON, with every amount of
// money as {"minor", "currency", "decimal"} (withMoney).
func (a *app) printJSON(m proto.Message) error {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return err
	}
	if b, err = withMoney(b); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.io.Out, "%s\n", b)
	return err
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func statusName(s ordersv1.OrderStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ORDER_STATUS_"))
}

func (a *app) statusText(s ordersv1.OrderStatus) string {
	name := statusName(s)
	switch s {
	case ordersv1.OrderStatus_ORDER_STATUS_PAID, ordersv1.OrderStatus_ORDER_STATUS_DELIVERED, ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:
		return a.colour("32", name)
	case ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return a.colour("31", name)
	default:
		return a.colour("33", name)
	}
}

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format(time.RFC3339)
}

// tsExact is ts to the nanosecond, always nine digits of it, so that a
// column of them keeps its width.
func tsExact(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}

// erasedText stands for personal data erased because its customer was
// forgotten.
const erasedText = "[erased]"

func address(ad *ordersv1.Address) string {
	if ad == nil {
		return "-"
	}
	if ad.GetErased() {
		return erasedText
	}
	var parts []string
	for _, p := range []string{ad.GetName(), ad.GetLine1(), ad.GetLine2(), ad.GetPostalCode() + " " + ad.GetCity(), ad.GetRegion(), ad.GetCountry()} {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", ")
}

// tracking shows a tracking number, or that it was erased.
func tracking(number string, erased bool) string {
	if erased {
		return erasedText
	}
	return number
}

// printOrder shows one order as a key/value block and its lines as a table.
func (a *app) printOrder(o *ordersv1.Order, position uint64) error {
	w := table(a.io.Out)
	cur := o.GetCurrency()
	fmt.Fprintf(w, "ORDER\t%s\n", o.GetOrderId())
	fmt.Fprintf(w, "CUSTOMER\t%s\n", o.GetCustomerId())
	fmt.Fprintf(w, "STATUS\t%s\n", a.statusText(o.GetStatus()))
	fmt.Fprintf(w, "TOTAL\t%s\n", money.Format(o.GetTotal(), cur))
	if o.GetTax() != 0 {
		fmt.Fprintf(w, "TAX\t%s\n", money.Format(o.GetTax(), cur))
		fmt.Fprintf(w, "TO CHARGE\t%s\n", money.Format(o.GetGrandTotal(), cur))
	}
	fmt.Fprintf(w, "SHIP TO\t%s\n", address(o.GetShippingAddress()))
	if o.GetPaymentRef() != "" {
		fmt.Fprintf(w, "PAYMENT\t%s\n", o.GetPaymentRef())
	}
	if o.GetDeclineReason() != "" {
		fmt.Fprintf(w, "DECLINED\t%s\n", o.GetDeclineReason())
	}
	if o.GetCancelReason() != "" {
		fmt.Fprintf(w, "CANCELLED\t%s\n", o.GetCancelReason())
	}
	if o.GetRefundRef() != "" {
		// A refund is of the whole paid amount.
		fmt.Fprintf(w, "REFUNDED\t%s ref %s\n", money.Format(o.GetPaidAmount(), cur), o.GetRefundRef())
	}
	if o.GetCarrier() != "" || o.GetTrackingNumber() != "" || o.GetTrackingNumberErased() {
		fmt.Fprintf(w, "SHIPPED BY\t%s %s\n", o.GetCarrier(), tracking(o.GetTrackingNumber(), o.GetTrackingNumberErased()))
	}
	fmt.Fprintf(w, "CREATED\t%s\n", ts(o.GetCreatedAt()))
	fmt.Fprintf(w, "UPDATED\t%s\n", ts(o.GetUpdatedAt()))
	fmt.Fprintf(w, "REVISION\t%d\n", o.GetRevision())
	if position != 0 {
		fmt.Fprintf(w, "POSITION\t%d\n", position)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(o.GetLines()) == 0 {
		return nil
	}
	fmt.Fprintln(a.io.Out)
	w = table(a.io.Out)
	fmt.Fprintln(w, "SKU\tQTY\tUNIT PRICE\tLINE TOTAL")
	for _, l := range o.GetLines() {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", l.GetSku(), l.GetQuantity(), money.Format(l.GetUnitPrice(), cur), money.Format(l.GetLineTotal(), cur))
	}
	return w.Flush()
}

func (a *app) printOrderList(orders []*ordersv1.Order) error {
	w := table(a.io.Out)
	fmt.Fprintf(w, "ORDER\tCUSTOMER\t%s\tTOTAL\tLINES\tCREATED\n", a.plain("STATUS"))
	for _, o := range orders {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", o.GetOrderId(), o.GetCustomerId(), a.statusText(o.GetStatus()),
			money.Format(o.GetTotal(), o.GetCurrency()), len(o.GetLines()), ts(o.GetCreatedAt()))
	}
	return w.Flush()
}
