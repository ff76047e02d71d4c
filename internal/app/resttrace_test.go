package app_test

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/telemetry/otlptest"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func otlpAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			v := kv.GetValue()
			if v.GetStringValue() != "" {
				return v.GetStringValue()
			}
			return strconv.FormatInt(v.GetIntValue(), 10)
		}
	}
	return ""
}

// The trace of a REST PlaceOrder, as an OTLP receiver gets it: the HTTP
// span named after its route template; the gRPC call; the append, a
// producer with OpenTelemetry's messaging attributes; the payment job, a
// consumer process span linked to that append and enclosing the charge and
// the recording of its outcome; and the projection batch, a consumer linked
// to it. The test logs the spans' names, kinds, parents and links.
func TestRESTPlaceOrderTraceOverOTLP(t *testing.T) {
	c, endpoint := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	addrs, stop := run(t, t.TempDir())
	placeAndAwaitPayment(t, addrs, "otlp-trace")
	stop() // shutdown flushes the exporter

	spans := c.Spans()
	var trace []byte
	for _, s := range spans {
		if s.GetName() == "POST /v1/orders/{order_id}:place" {
			trace = s.GetTraceId()
		}
	}
	if trace == nil {
		t.Fatalf("no span named after the route template; got %v", c.Names())
	}
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		byID[string(s.GetSpanId())] = s
	}
	name := func(spanID []byte) string {
		if s, ok := byID[string(spanID)]; ok {
			return s.GetName()
		}
		return hex.EncodeToString(spanID)
	}
	var lines []string
	var found = map[string]*tracepb.Span{}
	for _, s := range spans {
		linked := []string{}
		for _, l := range s.GetLinks() {
			if string(l.GetTraceId()) == string(trace) {
				linked = append(linked, name(l.GetSpanId()))
			}
		}
		if string(s.GetTraceId()) != string(trace) && len(linked) == 0 {
			continue
		}
		if s.GetName() == "projection.apply_batch" && len(linked) == 0 {
			continue
		}
		parent := "-"
		if len(s.GetParentSpanId()) > 0 {
			parent = name(s.GetParentSpanId())
		}
		where := "in trace"
		if string(s.GetTraceId()) != string(trace) {
			where = "own trace"
		}
		lines = append(lines, fmt.Sprintf("%-48s %-9s %-9s parent=%-45s links=%v", s.GetName(),
			strings.TrimPrefix(s.GetKind().String(), "SPAN_KIND_"), where, parent, linked))
		found[s.GetName()+" "+s.GetKind().String()] = s
	}
	t.Logf("trace of a REST PlaceOrder (%s), and the spans linked to it:\n%s", hex.EncodeToString(trace), strings.Join(lines, "\n"))

	must := func(n string, kind tracepb.Span_SpanKind) *tracepb.Span {
		t.Helper()
		s, ok := found[n+" "+kind.String()]
		if !ok {
			t.Fatalf("no %s span %q in or linked to the trace", kind, n)
		}
		return s
	}
	http := must("POST /v1/orders/{order_id}:place", tracepb.Span_SPAN_KIND_SERVER)
	if otlpAttr(http, "http.route") != "/v1/orders/{order_id}:place" {
		t.Errorf("the HTTP span's http.route is %q", otlpAttr(http, "http.route"))
	}
	must("orders.v1.OrderCommandService/PlaceOrder", tracepb.Span_SPAN_KIND_SERVER)
	must("eventstore.append", tracepb.Span_SPAN_KIND_PRODUCER)
	// The placement's append: its message id is the request id's first.
	var appendSpan *tracepb.Span
	for _, s := range spans {
		if s.GetName() == "eventstore.append" && otlpAttr(s, "messaging.message.id") == "otlp-trace-2:0" {
			appendSpan = s
		}
	}
	if appendSpan == nil || otlpAttr(appendSpan, "messaging.system") != "nats" || otlpAttr(appendSpan, "messaging.destination.template") != "orders.{order_id}" ||
		otlpAttr(appendSpan, "messaging.operation.type") != "send" || appendSpan.GetKind() != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Fatalf("no producer span of the placement's append with the messaging attributes: %v", appendSpan)
	}
	job := must("payment.job", tracepb.Span_SPAN_KIND_CONSUMER)
	if otlpAttr(job, "messaging.operation.type") != "process" || len(job.GetLinks()) != 1 || string(job.GetLinks()[0].GetSpanId()) != string(appendSpan.GetSpanId()) {
		t.Errorf("the payment job is not a process span linked to the append: %v %v", job.GetAttributes(), job.GetLinks())
	}
	for _, n := range []string{"payment.charge SPAN_KIND_INTERNAL", "orders.v1.OrderCommandService/RecordPayment SPAN_KIND_CLIENT"} {
		s := found[n]
		if s == nil || !within(byID, s, job) {
			t.Errorf("%s is not inside the payment job", n)
		}
	}
	must("projection.apply_batch", tracepb.Span_SPAN_KIND_CONSUMER)
}

// within reports whether s descends from ancestor.
func within(byID map[string]*tracepb.Span, s, ancestor *tracepb.Span) bool {
	for p := s; p != nil; p = byID[string(p.GetParentSpanId())] {
		if string(p.GetParentSpanId()) == string(ancestor.GetSpanId()) {
			return true
		}
	}
	return false
}
