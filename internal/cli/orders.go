package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/money"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// mutation holds the flags every command RPC shares.
type mutation struct {
	a         *app
	requestID string
	expected  int64
}

func (m *mutation) flags(c *cobra.Command) {
	c.Flags().StringVar(&m.requestID, "request-id", "", "idempotency key (default: a new UUID, the same for ordersctl's own retries); repeat it to retry safely")
	c.Flags().Int64Var(&m.expected, "expected-revision", -1, "fail with a conflict unless the order is still at this revision")
	// Unset is -1 inside, so a negative value given would have meant no
	// check at all.
	c.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("expected-revision") && m.expected < 0 {
			return usagef("--expected-revision %d: a revision is 0 or more", m.expected)
		}
		return nil
	}
}

// rid is the request's idempotency key: --request-id, or else a new UUID
// made on first use and kept, so that every try of the call (retry) sends
// the same one (and, should they all fail, the user is told it).
func (m *mutation) rid() string {
	if m.requestID == "" {
		m.requestID = m.a.madeRequestID()
	}
	return m.requestID
}

func (m *mutation) rev() *uint64 {
	if m.expected < 0 {
		return nil
	}
	v := uint64(m.expected)
	return &v
}

type commandResponse interface {
	proto.Message
	GetOrder() *ordersv1.Order
	GetPosition() uint64
}

// runCommand calls one command RPC and prints its answer.
func (a *app) runCommand(cmd *cobra.Command, call func(context.Context, ordersv1.OrderCommandServiceClient) (commandResponse, error)) error {
	return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (commandResponse, error) {
		return call(ctx, ordersv1.NewOrderCommandServiceClient(conn))
	}, func(res commandResponse) error { return a.printOrder(res.GetOrder(), res.GetPosition()) })
}

func (a *app) ordersCmd() *cobra.Command {
	c := &cobra.Command{Use: "orders", Aliases: []string{"order"}, Short: "Create, change and query orders"}
	c.AddCommand(a.createCmd(), a.addItemCmd(), a.removeItemCmd(), a.setQtyCmd(), a.placeCmd(), a.payCmd(),
		a.cancelCmd(), a.shipCmd(), a.deliverCmd(), a.getCmd(), a.listCmd(), a.addressCmd(), a.watchCmd())
	return c
}

// parseItem reads SKU:QTY:PRICE with PRICE in the currency's major unit.
// The quantity and the price are the last two fields: a SKU may hold ':'
// itself (any printable ASCII), and neither number can.
func parseItem(s, currency string) (*ordersv1.LineItem, error) {
	rest, priceText, ok1 := cutLast(s, ":")
	sku, qtyText, ok2 := cutLast(rest, ":")
	if !ok1 || !ok2 || sku == "" {
		return nil, usagef("--item %q: want SKU:QTY:PRICE, e.g. BOOK-1:2:12.50", s)
	}
	qty, err := strconv.ParseInt(qtyText, 10, 64)
	if err != nil {
		return nil, usagef("--item %q: quantity %q is not a whole number", s, qtyText)
	}
	price, err := money.Parse(priceText, currency)
	if err != nil {
		return nil, usagef("--item %q: %v", s, err)
	}
	return &ordersv1.LineItem{Sku: sku, Quantity: qty, UnitPrice: price}, nil
}

// cutLast is strings.Cut at the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

type addressFlags struct{ name, line1, line2, city, region, postal, country string }

func (f *addressFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.name, "name", "", "recipient name")
	c.Flags().StringVar(&f.line1, "line1", "", "address line 1")
	c.Flags().StringVar(&f.line2, "line2", "", "address line 2")
	c.Flags().StringVar(&f.city, "city", "", "city")
	c.Flags().StringVar(&f.region, "region", "", "region or state")
	c.Flags().StringVar(&f.postal, "postal-code", "", "postal code")
	c.Flags().StringVar(&f.country, "country", "", "ISO 3166 country code, e.g. GB")
}

func (f *addressFlags) address() *ordersv1.Address { return f.over(nil) }

// over returns base with the fields the flags give in place of its own
// (base itself when they give none; nil for neither): --file's address
// with --country GB is that address in GB, not an address of a country
// alone.
func (f *addressFlags) over(base *ordersv1.Address) *ordersv1.Address {
	if *f == (addressFlags{}) {
		return base
	}
	a := &ordersv1.Address{}
	if base != nil {
		a = proto.CloneOf(base)
	}
	for _, p := range []struct {
		flag string
		to   *string
	}{{f.name, &a.Name}, {f.line1, &a.Line1}, {f.line2, &a.Line2}, {f.city, &a.City}, {f.region, &a.Region}, {f.postal, &a.PostalCode}, {f.country, &a.Country}} {
		if p.flag != "" {
			*p.to = p.flag
		}
	}
	return a
}

func (a *app) createCmd() *cobra.Command {
	m := mutation{a: a}
	var addr addressFlags
	var orderID, customer, currency, file string
	var items []string
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a draft order",
		Example: `  ordersctl orders create --customer cust-42 --currency EUR --item BOOK-1:2:12.50 --item PEN-9:3:1.99
  ordersctl orders create --file order.json    # a CreateOrderRequest in JSON
  ordersctl orders create --file order.json --request-id batch-7 --customer cust-7   # a template`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &ordersv1.CreateOrderRequest{}
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return usagef("--file: %v", err)
				}
				if err := protojson.Unmarshal(b, req); err != nil {
					return usagef("--file %s: %v", file, err)
				}
			}
			if customer != "" {
				req.CustomerId = customer
			}
			if currency != "" {
				req.Currency = strings.ToUpper(currency)
			}
			if orderID != "" {
				req.OrderId = orderID
			}
			for _, it := range items {
				li, err := parseItem(it, req.GetCurrency())
				if err != nil {
					return err
				}
				req.Lines = append(req.Lines, li)
			}
			req.ShippingAddress = addr.over(req.GetShippingAddress())
			// --request-id wins over the file's; without either, a new one.
			if m.requestID != "" || req.GetRequestId() == "" {
				req.RequestId = m.rid()
			}
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.CreateOrder(ctx, req)
			})
		},
	}
	c.Flags().StringVar(&customer, "customer", "", "customer id")
	c.Flags().StringVar(&currency, "currency", "", "ISO 4217 currency, e.g. EUR")
	c.Flags().StringVar(&orderID, "order-id", "", "order id (default: generated by the server)")
	c.Flags().StringArrayVar(&items, "item", nil, "line as SKU:QTY:PRICE, PRICE in major units (repeatable)")
	c.Flags().StringVar(&file, "file", "", "JSON file holding a CreateOrderRequest; flags override its fields (--request-id its requestId, an address flag that field of its address)")
	c.Flags().StringVar(&m.requestID, "request-id", "", "idempotency key (default: the --file's requestId, else a new UUID); repeat it to retry safely")
	addr.register(c)
	return c
}

// orderCurrency finds an order's currency to interpret major-unit prices.
// given (the --currency flag) is taken without a lookup that waits: one
// read of the read model, not retried, checks it, and a --currency other
// than the one the order has is a usage error (read in another currency's
// decimals, 1200 JPY on an EUR order was recorded as 12.00 EUR); when that
// read gets no answer the flag is trusted. Otherwise the read model
// answers: the currency never changes, so any version of the order will
// do. An order the read model does not have yet (or a node without the
// query role) falls back to the audit log; if that is refused too, the
// read model's answer is returned, with a hint to pass --currency.
func (a *app) orderCurrency(ctx context.Context, orderID, given string) (string, error) {
	conn, err := a.dial()
	if err != nil {
		return "", err
	}
	if given != "" {
		given = strings.ToUpper(given)
		cctx, cancel := a.callCtx(ctx)
		defer cancel()
		res, err := ordersv1.NewOrderQueryServiceClient(conn).GetOrder(cctx, &ordersv1.GetOrderRequest{OrderId: orderID})
		cur := res.GetOrder().GetCurrency()
		if status.Code(err) == codes.NotFound {
			// An order just created may not be in the read model yet;
			// the log has it (for a token with the auditor role). A
			// price read in another currency's decimals would be
			// recorded in the order's: AddItem carries no currency
			// for the server to check.
			hist, herr := ordersv1.NewOrderAuditServiceClient(conn).GetOrderHistory(cctx, firstEvent(orderID))
			if c, ok := createdCurrency(hist); herr == nil && ok {
				cur, err = c, nil
			}
		}
		if err == nil && cur != "" && cur != given {
			return "", usagef("--currency %s: order %s is in %s", given, orderID, cur)
		}
		return given, nil
	}
	res, qerr := retried(a, ctx, func(ctx context.Context) (*ordersv1.GetOrderResponse, error) {
		return ordersv1.NewOrderQueryServiceClient(conn).GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: orderID})
	})
	if qerr == nil {
		return res.GetOrder().GetCurrency(), nil
	}
	switch status.Code(qerr) {
	case codes.NotFound, codes.Unimplemented, codes.PermissionDenied:
	default:
		return "", qerr
	}
	hist, aerr := retried(a, ctx, func(ctx context.Context) (*ordersv1.GetOrderHistoryResponse, error) {
		return ordersv1.NewOrderAuditServiceClient(conn).GetOrderHistory(ctx, firstEvent(orderID))
	})
	switch status.Code(aerr) {
	case codes.OK:
	case codes.Unimplemented, codes.PermissionDenied:
		st := status.Convert(qerr)
		return "", status.Errorf(st.Code(), "%s (looking up the order's currency; give --currency to skip it)", st.Message())
	default:
		return "", aerr
	}
	if cur, ok := createdCurrency(hist); ok {
		return cur, nil
	}
	return "", status.Error(codes.NotFound, "order not found")
}

// firstEvent asks for the first event of orderID's history, its
// OrderCreated.
func firstEvent(orderID string) *ordersv1.GetOrderHistoryRequest {
	return &ordersv1.GetOrderHistoryRequest{OrderId: orderID, PageSize: 1}
}

// createdCurrency is the currency a history's first event (firstEvent)
// created its order in; false for an order the log does not have.
func createdCurrency(hist *ordersv1.GetOrderHistoryResponse) (string, bool) {
	evs := hist.GetEvents()
	if len(evs) == 0 {
		return "", false
	}
	return evs[0].GetEvent().GetOrderCreated().GetCurrency(), true
}

// orderAmount parses an amount in major units of the order's currency
// (given, or looked up as orderCurrency does); a malformed amount is a
// usage error naming what, the flag or argument it came from.
func (a *app) orderAmount(ctx context.Context, orderID, given, what, amount string) (int64, error) {
	cur, err := a.orderCurrency(ctx, orderID, given)
	if err != nil {
		return 0, err
	}
	n, err := money.Parse(amount, cur)
	if err != nil {
		return 0, usagef("%s: %v", what, err)
	}
	return n, nil
}

func (a *app) addItemCmd() *cobra.Command {
	m := mutation{a: a}
	var currency string
	c := &cobra.Command{
		Use:   "add-item ORDER SKU QTY PRICE",
		Short: "Add a line to a draft order (PRICE in the order currency's major unit)",
		Example: `  ordersctl orders add-item 7d3f0c2a-... PEN-9 3 1.99
  ordersctl orders add-item 7d3f0c2a-... TEA 2 1200 --currency JPY   # stated: checked by one read (of the log, for an order not yet in the read model), not retried`,
		Args: cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			qty, err := strconv.ParseInt(args[2], 10, 64)
			if err != nil {
				return usagef("QTY %q is not a whole number", args[2])
			}
			price, err := a.orderAmount(cmd.Context(), args[0], currency, "PRICE", args[3])
			if err != nil {
				return err
			}
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.AddItem(ctx, &ordersv1.AddItemRequest{RequestId: m.rid(), OrderId: args[0], Sku: args[1], Quantity: qty, UnitPrice: price, ExpectedRevision: m.rev()})
			})
		},
	}
	currencyFlag(c, &currency)
	m.flags(c)
	return c
}

// currencyFlag lets a caller state the order's currency instead of having
// it looked up.
func currencyFlag(c *cobra.Command, v *string) {
	c.Flags().StringVar(v, "currency", "", "the order's ISO 4217 currency (default: looked up from the order)")
}

func (a *app) removeItemCmd() *cobra.Command {
	m := mutation{a: a}
	c := &cobra.Command{
		Use: "remove-item ORDER SKU", Short: "Remove a line from a draft order", Args: cobra.ExactArgs(2),
		Example: "  ordersctl orders remove-item 7d3f0c2a-... PEN-9",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.RemoveItem(ctx, &ordersv1.RemoveItemRequest{RequestId: m.rid(), OrderId: args[0], Sku: args[1], ExpectedRevision: m.rev()})
			})
		},
	}
	m.flags(c)
	return c
}

func (a *app) setQtyCmd() *cobra.Command {
	m := mutation{a: a}
	c := &cobra.Command{
		Use: "set-qty ORDER SKU QTY", Short: "Change a line's quantity in a draft order", Args: cobra.ExactArgs(3),
		Example: "  ordersctl orders set-qty 7d3f0c2a-... PEN-9 5 --expected-revision 3",
		RunE: func(cmd *cobra.Command, args []string) error {
			qty, err := strconv.ParseInt(args[2], 10, 64)
			if err != nil {
				return usagef("QTY %q is not a whole number", args[2])
			}
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.ChangeItemQuantity(ctx, &ordersv1.ChangeItemQuantityRequest{RequestId: m.rid(), OrderId: args[0], Sku: args[1], Quantity: qty, ExpectedRevision: m.rev()})
			})
		},
	}
	m.flags(c)
	return c
}

func (a *app) addressCmd() *cobra.Command {
	m := mutation{a: a}
	var addr addressFlags
	c := &cobra.Command{
		Use: "set-address ORDER", Short: "Set or replace the shipping address before payment", Args: cobra.ExactArgs(1),
		Example: `  ordersctl orders set-address 7d3f0c2a-... --name Ada --line1 "1 Analytical Way" \
      --postal-code NW1 --city London --country GB`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.SetShippingAddress(ctx, &ordersv1.SetShippingAddressRequest{RequestId: m.rid(), OrderId: args[0], ShippingAddress: addr.address(), ExpectedRevision: m.rev()})
			})
		},
	}
	addr.register(c)
	m.flags(c)
	return c
}

func (a *app) placeCmd() *cobra.Command {
	m := mutation{a: a}
	var tax, currency string
	c := &cobra.Command{
		Use: "place ORDER", Short: "Place a draft order", Args: cobra.ExactArgs(1),
		Example: `  ordersctl orders place 7d3f0c2a-... --request-id place-7d3f0c2a   # safe to repeat
  ordersctl orders place 7d3f0c2a-... --tax 5.89`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &ordersv1.PlaceOrderRequest{OrderId: args[0], ExpectedRevision: m.rev()}
			if tax != "" {
				var err error
				if req.Tax, err = a.orderAmount(cmd.Context(), args[0], currency, "--tax", tax); err != nil {
					return err
				}
			}
			// Made once nothing but the command is left to fail: a
			// made request id is the "may have been applied" hint's.
			req.RequestId = m.rid()
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.PlaceOrder(ctx, req)
			})
		},
	}
	c.Flags().StringVar(&tax, "tax", "", "tax on the order in major units, charged on top of the lines")
	currencyFlag(c, &currency)
	m.flags(c)
	return c
}

func (a *app) payCmd() *cobra.Command {
	m := mutation{a: a}
	var ref, amount, reason, currency string
	var declined bool
	c := &cobra.Command{
		Use:   "pay ORDER",
		Short: "Record a payment outcome for a placed order",
		Example: `  ordersctl orders pay 7d3f0c2a-... --ref psp-123 --amount 30.97
  ordersctl orders pay 7d3f0c2a-... --declined --reason "insufficient funds"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &ordersv1.RecordPaymentRequest{OrderId: args[0], PaymentRef: ref, Reason: reason, ExpectedRevision: m.rev()}
			if declined {
				if amount != "" {
					return usagef("--amount is for an authorized payment, not with --declined")
				}
				req.Outcome = ordersv1.PaymentOutcome_PAYMENT_OUTCOME_DECLINED
			} else {
				req.Outcome = ordersv1.PaymentOutcome_PAYMENT_OUTCOME_AUTHORIZED
				if amount == "" {
					return usagef("--amount is required for an authorized payment")
				}
				var err error
				if currency != "" {
					// The payment's own currency, read without a look at
					// the order: the command side refuses one other than
					// the order's (below).
					if req.Amount, err = money.Parse(amount, strings.ToUpper(currency)); err != nil {
						return usagef("--amount: %v", err)
					}
				} else if req.Amount, err = a.orderAmount(cmd.Context(), args[0], currency, "--amount", amount); err != nil {
					return err
				}
				// Sent, so that the command side refuses a payment in
				// another currency than the order's rather than record
				// its amount in the order's.
				req.Currency = strings.ToUpper(currency)
			}
			req.RequestId = m.rid() // as place's: once the look-up is done
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.RecordPayment(ctx, req)
			})
		},
	}
	c.Flags().StringVar(&ref, "ref", "", "payment provider reference")
	c.Flags().StringVar(&amount, "amount", "", "authorized amount in major units; must equal the order total with tax")
	c.Flags().BoolVar(&declined, "declined", false, "record a declined payment")
	c.Flags().StringVar(&reason, "reason", "", "why the payment was declined")
	currencyFlag(c, &currency)
	m.flags(c)
	return c
}

func (a *app) cancelCmd() *cobra.Command {
	m := mutation{a: a}
	var reason string
	c := &cobra.Command{
		Use: "cancel ORDER", Short: "Cancel an order", Args: cobra.ExactArgs(1),
		Example: `  ordersctl orders cancel 7d3f0c2a-... --reason "customer changed their mind"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{RequestId: m.rid(), OrderId: args[0], Reason: reason, ExpectedRevision: m.rev()})
			})
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why the order is cancelled")
	m.flags(c)
	return c
}

func (a *app) shipCmd() *cobra.Command {
	m := mutation{a: a}
	var carrier, tracking string
	c := &cobra.Command{
		Use: "ship ORDER", Short: "Record that a paid order shipped", Args: cobra.ExactArgs(1),
		Example: "  ordersctl orders ship 7d3f0c2a-... --carrier DHL --tracking JD014600003828",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.ShipOrder(ctx, &ordersv1.ShipOrderRequest{RequestId: m.rid(), OrderId: args[0], Carrier: carrier, TrackingNumber: tracking, ExpectedRevision: m.rev()})
			})
		},
	}
	c.Flags().StringVar(&carrier, "carrier", "", "carrier name")
	c.Flags().StringVar(&tracking, "tracking", "", "tracking number")
	m.flags(c)
	return c
}

func (a *app) deliverCmd() *cobra.Command {
	m := mutation{a: a}
	c := &cobra.Command{
		Use: "deliver ORDER", Short: "Record delivery of a shipped order", Args: cobra.ExactArgs(1),
		Example: "  ordersctl orders deliver 7d3f0c2a-...",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runCommand(cmd, func(ctx context.Context, c ordersv1.OrderCommandServiceClient) (commandResponse, error) {
				return c.ConfirmDelivery(ctx, &ordersv1.ConfirmDeliveryRequest{RequestId: m.rid(), OrderId: args[0], ExpectedRevision: m.rev()})
			})
		},
	}
	m.flags(c)
	return c
}

func consistency(minPos uint64, wait time.Duration) *ordersv1.Consistency {
	if minPos == 0 {
		return nil
	}
	c := &ordersv1.Consistency{MinPosition: minPos}
	if wait > 0 {
		c.MaxWait = durationpb.New(wait)
	}
	return c
}

// checkMaxWait refuses a --max-wait that would be dropped without a word:
// negative (the server refuses one), or without --min-position (nothing to
// wait for).
func checkMaxWait(minPos uint64, wait time.Duration) error {
	switch {
	case wait < 0:
		return usagef("--max-wait must not be negative, not %v", wait)
	case wait > 0 && minPos == 0:
		return usagef("--max-wait needs --min-position: it is how long the server waits for that position")
	}
	return nil
}

func (a *app) getCmd() *cobra.Command {
	var minPos uint64
	var wait time.Duration
	c := &cobra.Command{
		Use: "get ORDER", Short: "Show an order from the read model", Args: cobra.ExactArgs(1),
		Example: "  ordersctl orders get 7d3f0c2a-... --min-position 42   # read your own write",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkMaxWait(minPos, wait); err != nil {
				return err
			}
			return unary(a, cmd, func(ctx context.Context, conn *grpc.ClientConn) (*ordersv1.GetOrderResponse, error) {
				return ordersv1.NewOrderQueryServiceClient(conn).GetOrder(ctx, &ordersv1.GetOrderRequest{OrderId: args[0], Consistency: consistency(minPos, wait)})
			}, func(res *ordersv1.GetOrderResponse) error { return a.printOrder(res.GetOrder(), 0) })
		},
	}
	c.Flags().Uint64Var(&minPos, "min-position", 0, "wait until the read model has applied this log position")
	c.Flags().DurationVar(&wait, "max-wait", 0, "how long the server waits for --min-position per try (server default 2s); a read model still behind is retried within --timeout")
	return c
}

func parseTime(flag, s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, usagef("--%s %q: want RFC 3339, e.g. 2026-01-31T12:00:00Z", flag, s)
	}
	return timestamppb.New(t), nil
}

func (a *app) listCmd() *cobra.Command {
	var customer, statusFlag, after, before, token string
	var size int32
	var all bool
	var minPos uint64
	var wait time.Duration
	c := &cobra.Command{
		Use: "list", Short: "List orders, newest first", Args: cobra.NoArgs,
		Example: "  ordersctl orders list --customer cust-42 --status placed --all",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkMaxWait(minPos, wait); err != nil {
				return err
			}
			req := &ordersv1.ListOrdersRequest{CustomerId: customer, PageSize: size, PageToken: token, Consistency: consistency(minPos, wait)}
			var err error
			if req.Status, err = parseStatus(statusFlag); err != nil {
				return err
			}
			if req.CreatedAfter, err = parseTime("after", after); err != nil {
				return err
			}
			if req.CreatedBefore, err = parseTime("before", before); err != nil {
				return err
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			var orders []*ordersv1.Order
			position, last, err := a.listPages(cmd.Context(), ordersv1.NewOrderQueryServiceClient(conn), req, all, func(res *ordersv1.ListOrdersResponse) error {
				orders = append(orders, res.GetOrders()...)
				return nil
			})
			if err != nil {
				return err
			}
			if a.output == "json" {
				out := &ordersv1.ListOrdersResponse{Orders: orders, Position: position}
				if !all {
					out.NextPageToken = last.GetNextPageToken()
				}
				return a.printJSON(out)
			}
			if err := a.printOrderList(orders); err != nil {
				return err
			}
			if !all && last.GetNextPageToken() != "" {
				fmt.Fprintf(a.io.Err, "more: --page-token %s (or --all)\n", last.GetNextPageToken())
			}
			return nil
		},
	}
	c.Flags().StringVar(&customer, "customer", "", "only this customer's orders")
	c.Flags().StringVar(&statusFlag, "status", "", "only orders in this status (draft, placed, paid, ...)")
	c.Flags().StringVar(&after, "after", "", "only orders created at or after this RFC 3339 time")
	c.Flags().StringVar(&before, "before", "", "only orders created before this RFC 3339 time")
	c.Flags().Int32Var(&size, "page-size", 0, "orders per page (server default 50, at most 500)")
	c.Flags().StringVar(&token, "page-token", "", "continue from a previous page")
	c.Flags().BoolVar(&all, "all", false, "fetch every page")
	c.Flags().Uint64Var(&minPos, "min-position", 0, "wait until the read model has committed this log position")
	c.Flags().DurationVar(&wait, "max-wait", 0, "how long the server waits for --min-position per try (server default 2s); a read model still behind is retried within --timeout")
	return c
}
