package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/writewait"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// opsData is the operations page.
type opsData struct {
	Projection *projectionView
	Parked     []*ordersv1.ParkedPayment
	ParkedErr  string
	// ParkedMore is how many parked jobs the page does not list.
	ParkedMore int
	Deadlines  *ordersv1.ListDeadlinesResponse
	// DeadlinesErr says why the deadlines are not shown.
	DeadlinesErr string
	Health       []healthView
}

// maxDeadlines is how many pending deadlines the page lists, soonest first.
const maxDeadlines = 50

// maxParked is how many parked payment jobs the page lists, oldest first;
// "Retry all" retries the others too.
const maxParked = 100

// projectionView is the read model's state against the log.
type projectionView struct {
	Status    *ordersv1.GetProjectionStatusResponse
	LagEvents uint64
	// LagTime is how long the oldest event not yet applied has waited.
	LagTime string
	Err     string
}

// healthView is one service's health as its gRPC health check reports it.
type healthView struct {
	Service, Status string
	OK              bool
}

func (c *Console) opsPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := &opsData{Projection: c.projection(s)}
	if res, err := c.pay.ListParkedPayments(s.ctx, &ordersv1.ListParkedPaymentsRequest{Limit: maxParked}); err != nil {
		_, d.ParkedErr = c.userError(err)
	} else {
		d.Parked = res.GetParked()
		d.ParkedMore = max(int(res.GetParkedCount())-len(d.Parked), 0)
	}
	if res, err := c.dl.ListDeadlines(s.ctx, &ordersv1.ListDeadlinesRequest{Limit: maxDeadlines}); err != nil {
		_, d.DeadlinesErr = c.userError(err)
	} else {
		d.Deadlines = res
	}
	d.Health = c.healthOf(s.ctx)
	v := s.view("Operations", "operations", d)
	q := r.URL.Query()
	switch {
	case q.Has("retried"):
		done, _ := strconv.Atoi(q.Get("retried"))
		again, _ := strconv.Atoi(q.Get("parked"))
		v.Flash = &flash{Text: fmt.Sprintf("Retried: %d completed, %d parked again.", done, again), Error: again > 0}
	case q.Has("rebuilt"):
		v.Flash = &flash{Text: "The read model was rebuilt and swapped in."}
	case q.Has("settled"):
		v.Flash = &flash{Text: fmt.Sprintf("The parked job of order %s was removed as settled.", q.Get("settled"))}
	}
	c.render(w, http.StatusOK, "operations", v)
}

// opsProjection answers the page's periodic refresh of the projection
// panel.
func (c *Console) opsProjection(w http.ResponseWriter, _ *http.Request, s *session) {
	c.fragment(w, "operations", "projection", s.view("", "", &opsData{Projection: c.projection(s)}))
}

// projection reads the projection's status, and how old the oldest event
// it has not applied yet is (from the log).
func (c *Console) projection(s *session) *projectionView {
	p := &projectionView{}
	st, err := c.admin.GetProjectionStatus(s.ctx, &ordersv1.GetProjectionStatusRequest{})
	if err != nil {
		_, p.Err = c.userError(err)
		return p
	}
	p.Status = st
	if st.GetHead() <= st.GetPosition() {
		p.LagTime = "none"
		return p
	}
	p.LagEvents = st.GetHead() - st.GetPosition()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	stream, err := c.audit.StreamEvents(ctx, &ordersv1.StreamEventsRequest{FromPosition: st.GetPosition() + 1})
	if err == nil {
		var ev *ordersv1.StreamEventsResponse
		if ev, err = stream.Recv(); err == nil {
			p.LagTime = sinceText(time.Since(ev.GetEvent().GetRecordedAt().AsTime()))
		}
	}
	if err != nil {
		p.LagTime = "unknown"
	}
	return p
}

// healthOf checks every service's gRPC health at once.
func (c *Console) healthOf(ctx context.Context) []healthView {
	out := make([]healthView, len(c.health))
	var wg sync.WaitGroup
	for i, t := range c.health {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			h := healthView{Service: t.service}
			res, err := t.client.Check(ctx, &healthpb.HealthCheckRequest{Service: t.service})
			switch {
			case status.Code(err) == codes.NotFound:
				h.Status = "not served at the address this console calls"
			case err != nil:
				h.Status = "unreachable"
			default:
				h.OK = res.GetStatus() == healthpb.HealthCheckResponse_SERVING
				h.Status = map[bool]string{true: "serving", false: "not serving"}[h.OK]
			}
			out[i] = h
		})
	}
	wg.Wait()
	return out
}

// progressLine is one line of the NDJSON progress the console's script
// reads while a rebuild or a verification runs.
type progressLine struct {
	Percent float64 `json:"percent"`
	// Text says where it is, for the user.
	Text string `json:"text"`
	// Item is a finding to list (a broken order).
	Item  string `json:"item,omitempty"`
	Error string `json:"error,omitempty"`
	Done  bool   `json:"done,omitempty"`
}

// progressWriter streams progress lines, each flushed at once, each write
// and flush waiting at most the console's write timeout on the browser.
type progressWriter struct {
	w   *writewait.Writer
	enc *json.Encoder
}

func newProgress(w http.ResponseWriter, wait time.Duration) *progressWriter {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: pass each line on at once
	w.WriteHeader(http.StatusOK)
	lw := writewait.NewWriter(w, wait)
	return &progressWriter{w: lw, enc: json.NewEncoder(lw)}
}

// send writes l. A browser that stopped taking the lines (its connection
// open, nothing read) ends the request, and with it the verification or
// rebuild it watches, as leaving the page does; a client gone away ends
// the call through its context.
func (p *progressWriter) send(l progressLine) {
	if p.enc.Encode(l) != nil || p.w.FlushError() != nil {
		panic(http.ErrAbortHandler)
	}
}

// wantsProgress tells the script (which reads progress lines) from a plain
// form post (which gets a page when it is done).
func wantsProgress(r *http.Request) bool { return r.Header.Get("Accept") == "application/x-ndjson" }

// rebuild runs a read-model rebuild, streaming its progress. The rebuild
// is bound to the request, as it is to the RPC: leaving the page cancels
// it and the live read model stays as it was.
func (c *Console) rebuild(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.liveContext(s) // a shutdown ends it, as leaving the page does
	defer cancel()
	stream, err := c.admin.RebuildReadModel(ctx, &ordersv1.RebuildReadModelRequest{})
	var p *progressWriter
	for err == nil {
		var m *ordersv1.RebuildReadModelResponse
		if m, err = stream.Recv(); err != nil {
			break
		}
		if p == nil && wantsProgress(r) {
			p = newProgress(w, c.writeTimeout)
		}
		if p == nil {
			continue
		}
		line := progressLine{Percent: m.GetPercent(), Text: fmt.Sprintf("%d of %d events applied (%.0f events/s)", m.GetEventsDone(), m.GetTargetPosition(), m.GetEventsPerSecond())}
		if m.GetSwapped() {
			line.Percent, line.Done = 100, true
			line.Text = fmt.Sprintf("Rebuilt from %d events and swapped in.", m.GetEventsDone())
			if n := m.GetNode(); n != "" {
				line.Text = fmt.Sprintf("Rebuilt from %d events and swapped in on %s.", m.GetEventsDone(), n)
			}
		}
		p.send(line)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	switch {
	case err == nil && p == nil:
		http.Redirect(w, r, Prefix+"operations?rebuilt=1", http.StatusSeeOther)
	case err == nil:
	case p != nil || wantsProgress(r):
		msg := "A rebuild is already running."
		if status.Code(err) != codes.FailedPrecondition {
			_, msg = c.userError(err)
		}
		if p == nil {
			p = newProgress(w, c.writeTimeout)
		}
		p.send(progressLine{Error: msg, Text: msg, Done: true})
	default:
		c.fail(w, r, s, err)
	}
}

// settleParked removes one order's parked job of one kind without running
// it, once the operator confirms its money was settled by hand with the
// provider (the form's confirm box): no retry can undo a refund made
// twice. The payments node refuses a settle while a retry of the job runs
// (ABORTED) and names a job that is not parked (NOT_FOUND); its log says
// who settled.
func (c *Console) settleParked(w http.ResponseWriter, r *http.Request, s *session) {
	kind, ok := ordersv1.PaymentJobKind_value[r.PostFormValue("kind")]
	if !ok || kind == int32(ordersv1.PaymentJobKind_PAYMENT_JOB_KIND_UNSPECIFIED) || r.PostFormValue("order_id") == "" {
		c.errorPage(w, r, s, http.StatusBadRequest, "Say which order's job, charge or refund, to settle.")
		return
	}
	if r.PostFormValue("confirm") != "on" {
		c.errorPage(w, r, s, http.StatusBadRequest, "Confirm that the job's money was settled with the provider: a settled job is removed without running.")
		return
	}
	orderID := r.PostFormValue("order_id")
	if _, err := c.pay.SettleParkedPayment(s.ctx, &ordersv1.SettleParkedPaymentRequest{OrderId: orderID, Kind: ordersv1.PaymentJobKind(kind)}); err != nil {
		c.fail(w, r, s, err)
		return
	}
	q := url.Values{"settled": {orderID}}
	http.Redirect(w, r, Prefix+"operations?"+q.Encode(), http.StatusSeeOther)
}

// retryParked retries one order's parked payment job, or all. A retry
// lasts as long as its jobs do (all of them, one after another, each with
// its attempts and their waits), as a rebuild does: not the page's
// deadline, under which "Retry all" gave up part-way from about the third
// job that failed again.
func (c *Console) retryParked(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.liveContext(s)
	defer cancel()
	res, err := c.pay.RetryParkedPayment(ctx, &ordersv1.RetryParkedPaymentRequest{OrderId: r.PostFormValue("order_id")})
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("%soperations?retried=%d&parked=%d", Prefix, res.GetCompleted(), res.GetParkedAgain()), http.StatusSeeOther)
}
