package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	ordersv1 "github.com/orderstream/orderstream/api/orders/v1"
	"github.com/orderstream/orderstream/internal/httpapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pendingWatch is a query service whose watches never start: they wait,
// without sending headers, until their call ends (as a real watch waits
// for its consistency.minPosition or from_position to be read).
type pendingWatch struct {
	ordersv1.UnimplementedOrderQueryServiceServer
	entered chan struct{}
}

func (p pendingWatch) WatchOrder(_ *ordersv1.WatchOrderRequest, s grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	p.entered <- struct{}{}
	<-s.Context().Done()
	return status.FromContextError(s.Context().Err()).Err()
}

// shuttingDownFront serves the gateway as ordersd's streamEnder does:
// each request under a context that end cancels with UNAVAILABLE as its
// cause.
func shuttingDownFront(t *testing.T, gw http.Handler) (base string, end func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rctx, rcancel := context.WithCancelCause(r.Context())
		defer rcancel(nil)
		defer context.AfterFunc(ctx, func() {
			rcancel(status.Error(codes.Unavailable, "the server is shutting down; retry"))
		})()
		gw.ServeHTTP(w, r.WithContext(rctx))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, cancel
}

// A watch that a shutdown ends before it started (its service had not yet
// sent its headers) is answered with the shutdown's status, 503
// UNAVAILABLE, which the client retries, whether it asked for
// newline-delimited JSON or Server-Sent Events. As Server-Sent Events it
// was answered 499 CANCELLED "context canceled", as if its client had gone
// away: an EventSource (which does not reconnect after an answer other
// than 200) gave up for good.
func TestSSEWatchEndedBeforeItStartsAnswersTheShutdownStatus(t *testing.T) {
	for _, accept := range []string{"application/x-ndjson", "text/event-stream"} {
		t.Run(strings.ReplaceAll(accept, "/", "-"), func(t *testing.T) {
			entered := make(chan struct{}, 1)
			gs := grpc.NewServer()
			ordersv1.RegisterOrderQueryServiceServer(gs, pendingWatch{entered: entered})
			gw, err := httpapi.New(t.Context(), serve(t, gs), httpapi.WithLogger(quiet()))
			if err != nil {
				t.Fatal(err)
			}
			base, end := shuttingDownFront(t, gw)
			type answer struct {
				code int
				ct   string
				body string
			}
			got := make(chan answer, 1)
			go func() {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/orders/o-1:watch", nil)
				req.Header.Set("Accept", accept)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					got <- answer{body: err.Error()}
					return
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				got <- answer{res.StatusCode, res.Header.Get("Content-Type"), string(b)}
			}()
			<-entered // the watch is open and waiting for its start
			end()
			a := <-got
			var st struct {
				Code  int `json:"code"`
				Error struct {
					Code int `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal([]byte(a.body), &st)
			code := st.Code
			if accept == "application/x-ndjson" {
				code = st.Error.Code
			}
			if a.code != http.StatusServiceUnavailable || code != int(codes.Unavailable) {
				t.Errorf("Accept %s, watch ended by shutdown before it started: HTTP %d %s %q; want 503 with code %d (UNAVAILABLE), the shutdown's status",
					accept, a.code, a.ct, strings.TrimSpace(a.body), codes.Unavailable)
			}
		})
	}
}

// endedWatch is a query service whose watches end at once, successfully
// and without a message (a trailers-only OK answer).
type endedWatch struct {
	ordersv1.UnimplementedOrderQueryServiceServer
}

func (endedWatch) WatchOrder(*ordersv1.WatchOrderRequest, grpc.ServerStreamingServer[ordersv1.WatchOrderResponse]) error {
	return nil
}

// A watch its service ends successfully before sending anything is an
// empty 200 stream, as newline-delimited JSON and as Server-Sent Events;
// as the latter it answered 500 "internal error" (and the gateway logged
// io.EOF as an error withheld from the client): the io.EOF of the
// stream's end was taken for a failure.
func TestSSEWatchEndedCleanlyBeforeItStartsIsAnEmptyStream(t *testing.T) {
	gs := grpc.NewServer()
	ordersv1.RegisterOrderQueryServiceServer(gs, endedWatch{})
	base, c := gatewayOver(t, serve(t, gs))
	nd := do(t, c, "GET", base+"/v1/orders/o-1:watch", "")
	sse := do(t, c, "GET", base+"/v1/orders/o-1:watch", "", "Accept", "text/event-stream")
	if nd.code != http.StatusOK {
		t.Fatalf("NDJSON control: HTTP %d %s", nd.code, nd.raw)
	}
	if sse.code != http.StatusOK {
		t.Errorf("SSE watch ended successfully by its service: HTTP %d %s; the same watch as NDJSON is HTTP %d %q", sse.code, strings.TrimSpace(sse.raw), nd.code, nd.raw)
	}
}
