package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/writewait"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Live updates are Server-Sent Events fed by the query service's watch
// streams: the server renders the changed part of the page and sends it as
// one event whose id is the log position it reflects, so a browser's
// EventSource that reconnects (Last-Event-ID) resumes after it.

// eventStream writes Server-Sent Events, and a heartbeat comment while
// idle: a proxy's idle timeout (nginx's is 60 s) would otherwise cut a
// stream on a page where nothing changes, and each cut costs a reconnect
// and a watch opened again.
type eventStream struct {
	mu    sync.Mutex        // one writer at a time: the handler or the heartbeat
	w     *writewait.Writer // each write waits on the client for a while at most
	rc    *http.ResponseController
	every time.Duration
	// closing is set by close: no write starts after it.
	closing atomic.Bool
	beat    *time.Ticker
	stop    chan struct{}
	beaten  chan struct{}
}

// newEventStream answers the request with an event stream and starts its
// heartbeat, every every; a heartbeat that cannot be written (the client is
// gone, or took nothing for wait) calls gone, which ends the watch feeding
// the stream. close must be called before the handler returns.
func newEventStream(w http.ResponseWriter, every, wait time.Duration, gone func()) *eventStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store") // as every console page: personal data
	h.Set("X-Accel-Buffering", "no")   // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	e := &eventStream{w: writewait.NewWriter(w, wait), rc: http.NewResponseController(w), every: every, beat: time.NewTicker(every),
		stop: make(chan struct{}), beaten: make(chan struct{})}
	_ = e.rc.Flush()
	go e.heartbeat(gone)
	return e
}

func (e *eventStream) heartbeat(gone func()) {
	defer close(e.beaten)
	defer e.beat.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-e.beat.C:
			if e.write([]byte(": heartbeat\n\n"), true) != nil {
				gone()
				return
			}
		}
	}
}

// close stops the heartbeat; the stream is not written after it returns.
// A heartbeat stuck writing to a client that reads nothing is cut by a
// write deadline after a second, rather than holding the handler (and a
// shutdown) until the connection dies.
func (e *eventStream) close() {
	e.closing.Store(true)
	close(e.stop)
	select {
	case <-e.beaten:
		return
	case <-time.After(time.Second):
	}
	_ = e.rc.SetWriteDeadline(time.Now())
	<-e.beaten
}

// send writes one event; data may span lines.
func (e *eventStream) send(event string, id uint64, data []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "id: %d\nevent: %s\n", id, event)
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		fmt.Fprintf(&b, "data: %s\n", strings.TrimRight(line, "\r"))
	}
	b.WriteString("\n")
	return e.write(b.Bytes(), false)
}

// position sends an event "position" of id at (and data at), when at is
// past *sent, the last id sent, which it then is: a watch's message of no
// order says every change it follows up to at was sent, and the page's
// script resumes from the last id it got, which without it stayed at the
// last change, whatever changed elsewhere meanwhile (refused once that
// fell out of the watch's history, after a restart, or read back from the
// log).
func (e *eventStream) position(sent *uint64, at uint64) error {
	if at <= *sent {
		return nil
	}
	*sent = at
	return e.send("position", at, strconv.AppendUint(nil, at, 10))
}

// write writes b and flushes it; a write other than a heartbeat puts the
// next heartbeat a whole period off. None starts once close has begun.
//
// Each piece of a write, and the flush, has a deadline wait ahead
// (package writewait): a browser that keeps its connection open but takes
// nothing would otherwise hold the handler, the heartbeat and the watch
// until the connection died.
func (e *eventStream) write(b []byte, heartbeat bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing.Load() {
		return errClosing
	}
	if _, err := e.w.Write(b); err != nil {
		return err
	}
	if !heartbeat {
		e.beat.Reset(e.every)
	}
	return e.w.FlushError()
}

// errClosing is a write after close began.
var errClosing = errors.New("console: the stream is closing")

// since is where a live stream resumes: the browser's Last-Event-ID when
// it reconnects, else the position the page was rendered at.
func since(r *http.Request) (uint64, error) {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return strconv.ParseUint(id, 10, 64)
	}
	return strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
}

// liveContext is the context of one of session s's streams: the request's,
// also ended by Shutdown and by the session's sign-out.
func (c *Console) liveContext(s *session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(s.streamCtx)
	// Keyed by the browser's CSRF token, of its own CSRF cookie and its
	// session cookie: not by the session cookie alone, which two
	// browsers signed in with one token share, and the sign-out of one
	// would end the other's streams (a live list, an export, a rebuild).
	forget := c.streams.add(s.csrf, cancel)
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
		forget()
	}()
	return ctx, cancel
}

// sessionStreams holds the cancel functions of each session's open
// streams, by session key.
type sessionStreams struct {
	mu sync.Mutex
	m  map[string]map[*context.CancelFunc]struct{}
}

// add registers cancel under key; the function it returns forgets it.
func (ss *sessionStreams) add(key string, cancel context.CancelFunc) (forget func()) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]map[*context.CancelFunc]struct{}{}
	}
	if ss.m[key] == nil {
		ss.m[key] = map[*context.CancelFunc]struct{}{}
	}
	p := &cancel
	ss.m[key][p] = struct{}{}
	return func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		delete(ss.m[key], p)
		if len(ss.m[key]) == 0 {
			delete(ss.m, key)
		}
	}
}

// end cancels every stream of key.
func (ss *sessionStreams) end(key string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for p := range ss.m[key] {
		(*p)()
	}
}

// ended reports whether a watch ended the way streams end (the page went
// away, the server is shutting down) rather than by failing.
func ended(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

// opened waits for a watch to be accepted: the query service sends the
// stream's response headers once it has subscribed, before any change, so
// a refusal (OUT_OF_RANGE for a position too old, a refused token) comes
// here and the page's stream can be answered at once rather than with the
// first change. A watch that ended before it began says why through Recv.
func opened[M any](stream grpc.ServerStreamingClient[M]) error {
	md, err := stream.Header()
	if err == nil && md == nil {
		if _, err = stream.Recv(); err == nil {
			err = errors.New("the watch sent a change before its headers")
		}
	}
	return err
}

// ordersEvents streams the list page's rows and its page links again
// (event "rows") each time an order matching its filters changes after the
// position the page was rendered at (or the last event the browser got):
// the next page goes on from the last row shown, so orders that new ones
// push off this page are on the next. The response starts as soon as the
// watch is accepted, not with the first change.
func (c *Console) ordersEvents(w http.ResponseWriter, r *http.Request, s *session) {
	from, err := since(r)
	req, rerr := listRequest(r.URL.Query())
	if err != nil || rerr != nil {
		http.Error(w, "bad live request", http.StatusBadRequest)
		return
	}
	ctx, cancel := c.liveContext(s)
	defer cancel()
	// The page's position, 0 included (a page rendered on an empty log):
	// resumed after, not "now", which would miss what changed since.
	watch := &ordersv1.WatchOrdersRequest{CustomerId: req.CustomerId, Status: req.Status, FromPosition: &from}
	stream, err := c.query.WatchOrders(ctx, watch)
	if err == nil {
		err = opened(stream)
	}
	resync := false
	if status.Code(err) == codes.OutOfRange {
		// Too far behind to resume: list afresh and watch from now.
		watch.FromPosition, resync = nil, true
		if stream, err = c.query.WatchOrders(ctx, watch); err == nil {
			err = opened(stream)
		}
	}
	if err != nil {
		if !ended(err) {
			c.fail(w, r, s, err)
		}
		return
	}
	es := newEventStream(w, c.heartbeat, c.writeTimeout, cancel)
	defer es.close()
	// sent is the last event id sent: the page resumes from it.
	sent := from
	// rows sends the rows as the read model has them once it applied
	// the change at position, with the read model's position as the
	// event id.
	rows := func(position uint64) error {
		ctx, cancel := context.WithTimeout(ctx, c.callTimeout)
		defer cancel()
		res, err := c.list(&session{user: s.user, ctx: ctx, csrf: s.csrf}, req, position)
		if err != nil {
			return err
		}
		d := &ordersData{}
		d.page(r.URL.Query(), req, res)
		html, err := c.execute("orders", "listing", s.view("", "", d))
		if err != nil {
			return err
		}
		sent = res.GetPosition()
		return es.send("rows", sent, html)
	}
	for first := true; ; first = false {
		m, err := stream.Recv()
		if err != nil {
			if !ended(err) {
				c.log.Warn("console: orders watch ended", "code", status.Code(err).String())
			}
			return
		}
		switch {
		case first && resync:
			// The position the watch from now starts after: the rows
			// are read there, not as whichever replica answers has
			// them now, which may be before it (the changes between
			// would be in neither).
			err = rows(m.GetPosition())
		case m.GetOrder() == nil:
			// Nothing changed up to there: the page resumes from it
			// (a shutdown's, or a quiet watch's every 15 s).
			err = es.position(&sent, m.GetPosition())
		default:
			err = rows(m.GetPosition())
		}
		if err != nil {
			return
		}
	}
}

// orderEvents streams a notice (event "changed") each time the order
// changes away from the revision its page shows (rev), or its personal
// data is erased while the page shows it (erased=1: the page shows it
// erased already). Like ordersEvents, it answers as soon as the watch is
// accepted.
func (c *Console) orderEvents(w http.ResponseWriter, r *http.Request, s *session) {
	from, err1 := since(r)
	rev, err2 := strconv.ParseUint(r.URL.Query().Get("rev"), 10, 64)
	erased := r.URL.Query().Get("erased") == "1" // the page shows the order erased
	if err1 != nil || err2 != nil {
		http.Error(w, "bad live request", http.StatusBadRequest)
		return
	}
	ctx, cancel := c.liveContext(s)
	defer cancel()
	stream, err := c.query.WatchOrder(ctx, &ordersv1.WatchOrderRequest{OrderId: r.PathValue("id"), FromPosition: from})
	if err == nil {
		err = opened(stream)
	}
	if err != nil {
		if !ended(err) {
			c.fail(w, r, s, err)
		}
		return
	}
	es := newEventStream(w, c.heartbeat, c.writeTimeout, cancel)
	defer es.close()
	sent := from // the last event id sent: the page resumes from it
	for {
		m, err := stream.Recv()
		if err != nil {
			if !ended(err) {
				c.log.Warn("console: order watch ended", "code", status.Code(err).String())
			}
			return
		}
		// A message of no order only tells how far the watch has got,
		// where the page resumes from; the page's own revision is no
		// change, unless the order's personal data was erased since: an
		// erasure is recorded beside the order's events, and leaves its
		// revision as it was.
		if m.GetOrder() == nil {
			if es.position(&sent, m.GetPosition()) != nil {
				return
			}
			continue
		}
		if m.GetRevision() == rev && m.GetOrder().GetPersonalDataErased() == erased {
			continue
		}
		html, err := c.execute("order", "changed", s.view("", "", &orderData{Order: m.GetOrder()}))
		if err != nil || es.send("changed", m.GetPosition(), html) != nil {
			return
		}
		sent = m.GetPosition()
	}
}
