package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/writewait"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// eventTypes are the names of every event type, as the log and the audit
// service name them.
var eventTypes = func() []string {
	var out []string
	fields := (&ordersv1.Event{}).ProtoReflect().Descriptor().Oneofs().Get(0).Fields()
	for i := range fields.Len() {
		out = append(out, string(fields.Get(i).Message().Name()))
	}
	return out
}()

// auditData is the audit page.
type auditData struct {
	Types []option
	// The export form as last submitted.
	FromPosition, ToPosition, FromTime, ToTime, Orders string
}

func (c *Console) auditPage(w http.ResponseWriter, _ *http.Request, s *session) {
	c.render(w, http.StatusOK, "audit", s.view("Audit", "audit", newAuditData(url.Values{})))
}

func newAuditData(q url.Values) *auditData {
	d := &auditData{FromPosition: q.Get("from_position"), ToPosition: q.Get("to_position"),
		FromTime: q.Get("from_time"), ToTime: q.Get("to_time"), Orders: q.Get("orders")}
	for _, t := range eventTypes {
		d.Types = append(d.Types, option{Value: t, Label: t, Selected: slices.Contains(q["type"], t)})
	}
	return d
}

// verifyLog verifies every order's hash chain, streaming progress and each
// broken order to the page's script.
func (c *Console) verifyLog(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.liveContext(s) // a shutdown ends it
	defer cancel()
	stream, err := c.audit.VerifyLog(ctx, &ordersv1.VerifyLogRequest{})
	p := newProgress(w, c.writeTimeout)
	for err == nil {
		var m *ordersv1.VerifyLogResponse
		if m, err = stream.Recv(); err != nil {
			break
		}
		switch {
		case m.GetBroken() != nil:
			b := m.GetBroken()
			p.send(progressLine{Item: fmt.Sprintf("Order %s: %s at version %d: %s", b.GetOrderId(),
				strings.ToLower(strings.TrimPrefix(b.GetFirstBreak().GetKind().String(), "CHAIN_BREAK_KIND_")),
				b.GetFirstBreak().GetVersion(), b.GetFirstBreak().GetDetail())})
		case m.GetProgress() != nil:
			g := m.GetProgress()
			p.send(progressLine{Percent: percent(g.GetPosition(), g.GetHead()), Text: verifyText(g)})
		case m.GetSummary() != nil:
			g := m.GetSummary()
			verdict := "Every chain verifies."
			if g.GetOrdersBroken() > 0 {
				verdict = fmt.Sprintf("%d order(s) have a broken chain.", g.GetOrdersBroken())
			}
			p.send(progressLine{Percent: 100, Text: verifyText(g) + " " + verdict, Done: true})
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		_, msg := c.userError(err)
		p.send(progressLine{Error: msg, Text: msg, Done: true})
	}
}

func verifyText(g *ordersv1.VerifyLogProgress) string {
	return fmt.Sprintf("%d events of %d orders checked, up to position %d of %d.", g.GetEventsChecked(), g.GetOrdersChecked(), g.GetPosition(), g.GetHead())
}

func percent(done, of uint64) float64 {
	if of == 0 {
		return 100
	}
	return min(100, float64(done)*100/float64(of))
}

// exportRange is the export form, checked.
type exportRange struct {
	req        *ordersv1.StreamEventsRequest
	toPosition uint64 // 0: no end but the head
	toTime     time.Time
}

// maxExportOrders is the audit service's limit of order ids per stream.
const maxExportOrders = 100

func parseExport(q url.Values) (*exportRange, error) {
	e := &exportRange{req: &ordersv1.StreamEventsRequest{}}
	var err error
	if v := q.Get("from_position"); v != "" {
		if e.req.FromPosition, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, errors.New("the first position must be a whole number")
		}
	}
	if v := q.Get("to_position"); v != "" {
		if e.toPosition, err = strconv.ParseUint(v, 10, 64); err != nil || e.toPosition == 0 {
			return nil, errors.New("the last position must be a whole number above 0")
		}
	}
	if v := q.Get("from_time"); v != "" {
		t, err := time.Parse(timeInput, v)
		if err != nil {
			return nil, errors.New("the start time must be a date and time")
		}
		e.req.FromTime = timestamppb.New(t)
	}
	if v := q.Get("to_time"); v != "" {
		if e.toTime, err = time.Parse(timeInput, v); err != nil {
			return nil, errors.New("the end time must be a date and time")
		}
	}
	for _, t := range q["type"] {
		if !slices.Contains(eventTypes, t) {
			return nil, errors.New("unknown event type")
		}
		e.req.EventTypes = append(e.req.EventTypes, t)
	}
	// Spaces and line breaks only: a comma may be part of an order id.
	e.req.OrderIds = append(e.req.OrderIds, strings.Fields(q.Get("orders"))...)
	if len(e.req.OrderIds) > maxExportOrders {
		return nil, fmt.Errorf("at most %d order ids", maxExportOrders)
	}
	// A range that can hold nothing is a slip in the form, not an
	// export of nothing.
	if e.toPosition > 0 && e.req.GetFromPosition() > e.toPosition {
		return nil, errors.New("the first position is after the last")
	}
	if e.req.FromTime != nil && !e.toTime.IsZero() && e.req.GetFromTime().AsTime().After(e.toTime) {
		return nil, errors.New("the start time is after the end time")
	}
	return e, nil
}

// export downloads a range of the log as newline-delimited JSON, one
// RecordedEvent (as the REST API spells it) per line, in log order.
func (c *Console) export(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	e, err := parseExport(q)
	if err != nil {
		v := s.view("Audit", "audit", newAuditData(q))
		v.Flash = flashError("Export not started: " + err.Error() + ".")
		c.render(w, http.StatusBadRequest, "audit", v)
		return
	}
	ctx, cancel := c.liveContext(s) // a shutdown ends it
	defer cancel()
	stream, err := c.audit.StreamEvents(ctx, e.req)
	var first *ordersv1.StreamEventsResponse
	if err == nil {
		first, err = stream.Recv()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if code, msg := c.userError(err); code == http.StatusBadRequest {
			// The audit service's refusal of what was typed: the form
			// again, as typed, as for the console's own refusals.
			v := s.view("Audit", "audit", newAuditData(q))
			v.Flash = flashError("Export not started: " + msg)
			c.render(w, http.StatusBadRequest, "audit", v)
			return
		}
		c.fail(w, r, s, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Disposition", `attachment; filename="orderstream-events.ndjson"`)
	// A browser that stops taking the file ends the export (a write that
	// waited out the write timeout fails) rather than holding it, and the
	// read of the log, until its connection dies.
	bw := bufio.NewWriter(writewait.NewWriter(w, c.writeTimeout))
	for m := first; m != nil; {
		ev := m.GetEvent()
		if (e.toPosition > 0 && ev.GetPosition() > e.toPosition) || (!e.toTime.IsZero() && ev.GetRecordedAt().AsTime().After(e.toTime)) {
			break
		}
		// The stream starts at the start time when there is one, whatever
		// the first position: the form's bounds hold together, so the
		// events before that position are left out here.
		if ev.GetPosition() >= e.req.GetFromPosition() {
			// Every field, zero values too, as the REST API and
			// ordersctl write an event.
			b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(ev)
			if err != nil {
				c.log.Error("console: export: encoding an event", "position", ev.GetPosition(), "err", err)
				panic(http.ErrAbortHandler)
			}
			if _, err := bw.Write(append(b, '\n')); err != nil {
				panic(http.ErrAbortHandler) // the browser took nothing: gone
			}
		}
		if m, err = stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			// Headers are out: cutting the connection tells the
			// browser the download failed, rather than leaving a
			// file that silently ends early.
			c.log.Warn("console: export cut short", "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	if bw.Flush() != nil {
		panic(http.ErrAbortHandler)
	}
}
