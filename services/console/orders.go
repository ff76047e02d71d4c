package console

import (
	"cmp"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/money"
	"github.com/orderstream/orderstream/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// pageSize is the number of orders per page of the list.
const pageSize = 25

// liveWait is how long a live update waits for the read model to apply
// the change it was told of; the query service allows at most 10 s.
const liveWait = 10 * time.Second

// timeInput is the format of an <input type="datetime-local">, read as UTC.
const timeInput = "2006-01-02T15:04"

// ordersData is the orders list page.
type ordersData struct {
	Customer, Status, From, To string
	Statuses                   []option
	Orders                     []*ordersv1.Order
	Position                   uint64
	// Live: the list was read, so the page follows its changes; a page
	// whose filter or page token was refused shows no rows and follows
	// nothing (its Query would be empty, which is every order).
	Live bool
	// Query is the filter (and page) as a query string, for the live
	// updates of this very page.
	Query     string
	Next      string
	FirstPage string
}

// option is one <option> of a <select>.
type option struct {
	Value, Label string
	Selected     bool
}

// erasedText stands for personal data erased because its customer was
// forgotten.
const erasedText = "[erased]"

// listRequest reads the list's filters from the query string.
func listRequest(q url.Values) (*ordersv1.ListOrdersRequest, error) {
	req := &ordersv1.ListOrdersRequest{CustomerId: strings.TrimSpace(q.Get("customer")), PageSize: pageSize, PageToken: q.Get("page")}
	if st := q.Get("status"); st != "" {
		v, ok := ordersv1.OrderStatus_value[st]
		if !ok || v == 0 {
			return nil, errors.New("unknown status")
		}
		req.Status = ordersv1.OrderStatus(v)
	}
	for _, f := range []struct {
		param string
		dst   **timestamppb.Timestamp
	}{{"from", &req.CreatedAfter}, {"to", &req.CreatedBefore}} {
		if v := q.Get(f.param); v != "" {
			t, err := time.Parse(timeInput, v)
			if err != nil {
				return nil, fmt.Errorf("%s: want a date and time", f.param)
			}
			*f.dst = timestamppb.New(t)
		}
	}
	return req, nil
}

func (c *Console) ordersPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := &ordersData{Customer: q.Get("customer"), Status: q.Get("status"), From: q.Get("from"), To: q.Get("to")}
	d.Statuses = append(d.Statuses, option{"", "any", d.Status == ""})
	for v := int32(1); ; v++ {
		name, ok := ordersv1.OrderStatus_name[v]
		if !ok {
			break
		}
		d.Statuses = append(d.Statuses, option{name, statusName(ordersv1.OrderStatus(v)), name == d.Status})
	}
	v := s.view("Orders", "orders", d)
	req, err := listRequest(q)
	if err != nil {
		v.Flash = flashError("Filter not understood: " + err.Error() + ".")
		c.render(w, http.StatusBadRequest, "orders", v)
		return
	}
	res, err := c.list(s, req, 0)
	if err != nil {
		if code, msg := c.userError(err); code == http.StatusBadRequest {
			// A stale or foreign page token, most likely.
			v.Flash = flashError(msg)
			c.render(w, code, "orders", v)
			return
		}
		c.fail(w, r, s, err)
		return
	}
	d.Position = res.GetPosition()
	filter := d.page(q, req, res)
	if req.PageToken != "" {
		filter.Set("page", req.PageToken)
	}
	d.Query, d.Live = filter.Encode(), true
	c.render(w, http.StatusOK, "orders", v)
}

// page sets the page's rows and its links to the first and the next page
// from res, the list that q (the page's query) asked for with req, and
// returns q's filter.
func (d *ordersData) page(q url.Values, req *ordersv1.ListOrdersRequest, res *ordersv1.ListOrdersResponse) url.Values {
	d.Orders = res.GetOrders()
	filter := url.Values{}
	for _, k := range []string{"customer", "status", "from", "to"} {
		if q.Get(k) != "" {
			filter.Set(k, q.Get(k))
		}
	}
	if req.PageToken != "" {
		d.FirstPage = "?" + filter.Encode()
	}
	if res.GetNextPageToken() != "" {
		next := url.Values{"page": {res.GetNextPageToken()}}
		for k, vs := range filter {
			next[k] = vs
		}
		d.Next = "?" + next.Encode()
	}
	return filter
}

// list calls ListOrders, waiting for the read model to reach atLeast when
// it is not 0: a change's own position, 1 included (the first change of a
// log), so that the list shows it whichever query node answers.
func (c *Console) list(s *session, req *ordersv1.ListOrdersRequest, atLeast uint64) (*ordersv1.ListOrdersResponse, error) {
	if atLeast > 0 {
		req.Consistency = &ordersv1.Consistency{MinPosition: atLeast, MaxWait: durationpb.New(liveWait)}
	}
	return c.query.ListOrders(s.ctx, req)
}

// orderData is the order page.
type orderData struct {
	Order    *ordersv1.Order
	Position uint64
	// At is the version shown when looking back in history (0: now),
	// with the event that made that state.
	At      uint32
	AtEvent *ordersv1.RecordedEvent
	// Versions is the number of events the order has.
	Versions  uint32
	Timeline  *timeline
	Verify    *ordersv1.VerifyOrderResponse
	VerifyErr string
	Commands  []commandForm
	RequestID string
	// Typed is what the user typed into a command's form that was
	// refused: shown again in its fields, not lost.
	Typed url.Values
}

// timeline is an order's events for the timeline table.
type timeline struct {
	// OrderID names the order in the rows' links to earlier states,
	// which are absolute: the page may be shown at a command's URL.
	OrderID string
	Events  []eventRow
	Err     string
}

// eventRow is one event of the timeline.
type eventRow struct {
	*ordersv1.RecordedEvent
	Summary  string
	TraceURL string
}

// commandForm is one command button with its fields.
type commandForm struct {
	Name, Label string
	Fields      []formField
	Danger      bool
}

type formField struct{ Name, Label string }

var (
	placeCmd   = commandForm{Name: "place", Label: "Place order"}
	cancelCmd  = commandForm{Name: "cancel", Label: "Cancel order", Danger: true, Fields: []formField{{"reason", "Reason (optional)"}}}
	shipCmd    = commandForm{Name: "ship", Label: "Mark shipped", Fields: []formField{{"carrier", "Carrier"}, {"tracking_number", "Tracking number"}}}
	deliverCmd = commandForm{Name: "deliver", Label: "Confirm delivery"}
)

// commandsFor lists the commands the order's status allows, in the order's
// lifecycle order (the rules are the order package's; the service checks
// them again).
func commandsFor(st ordersv1.OrderStatus) []commandForm {
	switch st {
	case ordersv1.OrderStatus_ORDER_STATUS_DRAFT:
		return []commandForm{placeCmd, cancelCmd}
	case ordersv1.OrderStatus_ORDER_STATUS_PLACED, ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED:
		return []commandForm{cancelCmd}
	case ordersv1.OrderStatus_ORDER_STATUS_PAID:
		return []commandForm{shipCmd, cancelCmd}
	case ordersv1.OrderStatus_ORDER_STATUS_SHIPPED:
		return []commandForm{deliverCmd}
	}
	return nil
}

// doneText is the message after a command succeeded, by command name.
var doneText = map[string]string{"place": "Order placed.", "cancel": "Order cancelled.", "ship": "Order marked shipped.", "deliver": "Delivery confirmed."}

func (c *Console) orderPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	var fl *flash
	if t, ok := doneText[q.Get("done")]; ok {
		fl = &flash{Text: t}
	}
	after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
	at, err := strconv.ParseUint(cmp.Or(q.Get("at"), "0"), 10, 32)
	if err != nil {
		c.errorPage(w, r, s, http.StatusBadRequest, "The version to show must be a number.")
		return
	}
	c.showOrder(w, r, s, r.PathValue("id"), after, uint32(at), http.StatusOK, fl)
}

// showOrder renders the order page: the order now (read-your-writes up to
// after) or, with at, as it was after that many events. A version past the
// order's history is answered 400 with the order as it is now, saying how
// many versions it has.
func (c *Console) showOrder(w http.ResponseWriter, r *http.Request, s *session, id string, after uint64, at uint32, code int, fl *flash) {
	d := &orderData{At: at, RequestID: rand.Text()}
	if r.Method == http.MethodPost {
		d.Typed = r.PostForm // a command refused: its page again, with what was typed
	}
	var err error
	d.Order, d.Position, err = c.currentOrder(s, id, after)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Versions = d.Order.GetVersion()
	var beyond uint32
	if at > 0 {
		if !s.CanAudit() {
			c.errorPage(w, r, s, http.StatusForbidden, "Earlier states come from the audit log: your roles do not allow it.")
			return
		}
		res, err := c.audit.GetOrderAt(s.ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Version{Version: at}})
		switch {
		case status.Code(err) == codes.OutOfRange:
			beyond, at, d.At = at, 0, 0
		case err != nil:
			c.fail(w, r, s, err)
			return
		default:
			d.Order, d.AtEvent = res.GetOrder(), res.GetLastEvent()
		}
	}
	if at == 0 && s.CanCommand() {
		d.Commands = commandsFor(d.Order.GetStatus())
	}
	if s.CanAudit() {
		d.Timeline = c.timeline(s, id, d.Order.GetCurrency())
		if at == 0 {
			d.Versions = max(d.Versions, uint32(len(d.Timeline.Events)))
		}
		if v, err := c.audit.VerifyOrder(s.ctx, &ordersv1.VerifyOrderRequest{OrderId: id}); err != nil {
			_, d.VerifyErr = c.userError(err)
		} else {
			d.Verify = v
		}
	}
	if beyond > 0 {
		code, fl = http.StatusBadRequest, flashError(fmt.Sprintf(
			"There is no version %d of this order: it has %d version(s). It is shown as it is now.", beyond, d.Versions))
	}
	v := s.view("Order "+id, "orders", d)
	v.Flash, v.TraceUI = fl, c.traceUI
	c.render(w, code, "order", v)
}

// currentOrder reads the order from the read model. An order the read
// model does not have (yet) is looked up in the log: when it is there, the
// read model is asked again to catch up with its last event (live updates
// need the read model's position), and if it cannot, the state folded from
// the log is shown. A user who may read only the audit log gets that state.
func (c *Console) currentOrder(s *session, id string, after uint64) (*ordersv1.Order, uint64, error) {
	get := func(minPosition uint64) (*ordersv1.Order, uint64, error) {
		req := &ordersv1.GetOrderRequest{OrderId: id}
		if minPosition > 0 {
			req.Consistency = &ordersv1.Consistency{MinPosition: minPosition}
		}
		res, err := c.query.GetOrder(s.ctx, req)
		return res.GetOrder(), res.GetPosition(), err
	}
	if s.CanRead() {
		o, pos, err := get(after)
		if err == nil || status.Code(err) != codes.NotFound || !s.CanAudit() {
			return o, pos, err
		}
	}
	res, err := c.audit.GetOrderAt(s.ctx, &ordersv1.GetOrderAtRequest{OrderId: id, Point: &ordersv1.GetOrderAtRequest_Time{Time: timestamppb.Now()}})
	if err != nil {
		return nil, 0, err
	}
	if s.CanRead() {
		if o, pos, err := get(res.GetLastEvent().GetPosition()); err == nil {
			return o, pos, nil
		}
	}
	return res.GetOrder(), 0, nil
}

// maxTimelinePages bounds the history read for one page (1,000 events a
// page); an order's history is far shorter.
const maxTimelinePages = 10

// timeline reads an order's history for the timeline; an error is shown in
// its place rather than failing the page.
func (c *Console) timeline(s *session, id, currency string) *timeline {
	t := &timeline{OrderID: id}
	token := ""
	for range maxTimelinePages {
		res, err := c.audit.GetOrderHistory(s.ctx, &ordersv1.GetOrderHistoryRequest{OrderId: id, PageSize: 1000, PageToken: token})
		if err != nil {
			_, t.Err = c.userError(err)
			return t
		}
		for _, e := range res.GetEvents() {
			t.Events = append(t.Events, eventRow{RecordedEvent: e, Summary: summary(e.GetEvent(), currency), TraceURL: traceLink(c.traceUI, e.GetTraceId())})
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	return t
}

// orderTimeline answers the order page's script with the timeline alone.
func (c *Console) orderTimeline(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	cur := r.URL.Query().Get("currency")
	v := s.view("", "", &orderData{Timeline: c.timeline(s, id, cur)})
	v.TraceUI = c.traceUI
	c.fragment(w, "order", "timeline", v)
}

// orderCommand runs one command from the order page with the revision the
// page showed, then shows the order as the command left it. A stale page
// (ABORTED) or a status that no longer allows the command is shown on the
// order's current page with what happened.
func (c *Console) orderCommand(w http.ResponseWriter, r *http.Request, s *session) {
	id, name := r.PathValue("id"), r.PathValue("command")
	if _, ok := doneText[name]; !ok {
		c.errorPage(w, r, s, http.StatusNotFound, "There is no such command.")
		return
	}
	rev, err := strconv.ParseUint(r.PostFormValue("expected_revision"), 10, 64)
	if err != nil {
		c.errorPage(w, r, s, http.StatusBadRequest, "The form did not say which revision it was for: reload the page.")
		return
	}
	reqID := r.PostFormValue("request_id")
	if reqID == "" || len(reqID) > 64 {
		// The form carries one so that sending it twice is one command.
		reqID = rand.Text()
	}
	var position uint64
	switch name {
	case "place":
		res, e := c.cmd.PlaceOrder(s.ctx, &ordersv1.PlaceOrderRequest{RequestId: reqID, OrderId: id, ExpectedRevision: &rev})
		position, err = res.GetPosition(), e
	case "cancel":
		res, e := c.cmd.CancelOrder(s.ctx, &ordersv1.CancelOrderRequest{RequestId: reqID, OrderId: id, Reason: r.PostFormValue("reason"), ExpectedRevision: &rev})
		position, err = res.GetPosition(), e
	case "ship":
		res, e := c.cmd.ShipOrder(s.ctx, &ordersv1.ShipOrderRequest{RequestId: reqID, OrderId: id,
			Carrier: r.PostFormValue("carrier"), TrackingNumber: r.PostFormValue("tracking_number"), ExpectedRevision: &rev})
		position, err = res.GetPosition(), e
	case "deliver":
		res, e := c.cmd.ConfirmDelivery(s.ctx, &ordersv1.ConfirmDeliveryRequest{RequestId: reqID, OrderId: id, ExpectedRevision: &rev})
		position, err = res.GetPosition(), e
	}
	switch status.Code(err) {
	case codes.OK:
		http.Redirect(w, r, fmt.Sprintf("%sorders/%s?after=%d&done=%s", Prefix, url.PathEscape(id), position, name), http.StatusSeeOther)
	case codes.Aborted:
		// Read where the refusal says the order is: a read model that has
		// not applied the change yet would show the revision acted on,
		// and acting on it again would be refused again.
		_, at, _ := rpcerr.RevisionChanged(status.Convert(err))
		c.showOrder(w, r, s, id, at, 0, http.StatusConflict, flashError(fmt.Sprintf(
			"This order changed meanwhile: you acted on revision %d, which is no longer current. Nothing was done. Review the order as it is now and try again.", rev)))
	case codes.FailedPrecondition:
		// The domain's reason, written for the client: a draft without
		// an address or lines cannot be placed, which no status says.
		c.showOrder(w, r, s, id, 0, 0, http.StatusConflict, flashError("Not possible now: "+status.Convert(err).Message()+". Nothing was done."))
	case codes.InvalidArgument:
		_, msg := c.userError(err)
		c.showOrder(w, r, s, id, 0, 0, http.StatusBadRequest, flashError(msg))
	default:
		c.fail(w, r, s, err)
	}
}

// summary is an event's key fields in a few words.
func summary(e *ordersv1.Event, currency string) string {
	switch {
	case e.GetOrderCreated() != nil:
		v := e.GetOrderCreated()
		return fmt.Sprintf("customer %s, %s, %d line(s)", v.GetCustomerId(), v.GetCurrency(), len(v.GetLines()))
	case e.GetItemAdded() != nil:
		v := e.GetItemAdded()
		return fmt.Sprintf("%s × %d at %s", v.GetSku(), v.GetQuantity(), money.Format(v.GetUnitPrice(), currency))
	case e.GetItemRemoved() != nil:
		return e.GetItemRemoved().GetSku()
	case e.GetItemQuantityChanged() != nil:
		v := e.GetItemQuantityChanged()
		return fmt.Sprintf("%s → %d", v.GetSku(), v.GetQuantity())
	case e.GetShippingAddressSet() != nil:
		a := e.GetShippingAddressSet().GetShippingAddress()
		if a.GetErased() {
			return erasedText
		}
		return fmt.Sprintf("%s, %s", a.GetCity(), a.GetCountry())
	case e.GetOrderPlaced() != nil:
		if p := e.GetOrderPlaced(); p.GetTax() != 0 {
			return "total " + money.Format(p.GetTotal(), currency) + " including tax " + money.Format(p.GetTax(), currency)
		}
		return "total " + money.Format(e.GetOrderPlaced().GetTotal(), currency)
	case e.GetPaymentAuthorized() != nil:
		v := e.GetPaymentAuthorized()
		return fmt.Sprintf("%s, ref %s", money.Format(v.GetAmount(), currency), v.GetPaymentRef())
	case e.GetPaymentDeclined() != nil:
		v := e.GetPaymentDeclined()
		return strings.TrimSpace(v.GetReason() + " " + v.GetPaymentRef())
	case e.GetOrderCancelled() != nil:
		return e.GetOrderCancelled().GetReason()
	case e.GetOrderShipped() != nil:
		v := e.GetOrderShipped()
		if v.GetTrackingNumberErased() {
			return strings.TrimSpace(v.GetCarrier() + " " + erasedText)
		}
		return strings.TrimSpace(v.GetCarrier() + " " + v.GetTrackingNumber())
	case e.GetCustomerForgotten() != nil:
		return "customer " + e.GetCustomerForgotten().GetCustomerId()
	case e.GetRefundIssued() != nil:
		v := e.GetRefundIssued()
		return fmt.Sprintf("%s, ref %s", money.Format(v.GetAmount(), currency), v.GetRefundRef())
	}
	return ""
}
