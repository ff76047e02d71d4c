package eventstore

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// decodeLikeJetStream is how jetstream.PublishMsg reads an answer, the
// reference parsePubAck must agree with.
func decodeLikeJetStream(data []byte) (pubAck, error) {
	var r struct {
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return pubAck{}, r.Error
	}
	if r.PubAck == nil || r.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return pubAck{Stream: r.Stream, Sequence: r.Sequence, Duplicate: r.Duplicate}, nil
}

var pubAckSamples = []string{
	`{"stream":"ORDERS","seq":1}`,
	`{"stream":"ORDERS","seq":18446744073709551615,"duplicate":true}`,
	`{"stream":"ORDERS","domain":"hub","seq":42}`,
	` { "stream" : "ORDERS" , "seq" : 7 , "duplicate" : false } `,
	`{"seq":3,"stream":"S","seq":4}`,
	`{"stream":"ORDERS","seq":18446744073709551616}`,
	`{"stream":"ORDERS","seq":01}`,
	`{"stream":"ORDERS","seq":1.0}`,
	`{"stream":"ORDERS","seq":1e3}`,
	`{"stream":"ORDERS","seq":-1}`,
	`{"stream":"ORDERS","seq":1,}`,
	`{"stream":"ORDERS","seq":1}x`,
	`{"stream":"","seq":1}`,
	`{"seq":1}`,
	`{}`,
	``,
	`null`,
	`{"Stream":"ORDERS","SEQ":9}`,
	`{"stream":"OR\u0044ERS","seq":2}`,
	`{"stream":"ORDERS","seq":2,"duplicate":null}`,
	`{"stream":"ORDERS","seq":2,"duplicate":truex}`,
	`{"stream":"ORDERS","seq":2,"val":"1"}`,
	`{"stream":"ORDERS","seq":2,"val":5}`,
	`{"stream":"ORDERS","seq":2,"domain":5}`,
	`{"stream":"ORDERS","seq":2,"type":5}`,
	`{"stream":"ORDERS","seq":2,"type":"io.nats.jetstream.api.v1.pub_ack"}`,
	`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"},"stream":"ORDERS","seq":0}`,
	`{"error":{"code":503,"err_code":10023,"description":"insufficient resources"}}`,
}

// TestParsePubAckAgreesWithJetStream checks that the answers the scanner
// reads itself and those it leaves to encoding/json come out as
// jetstream.PublishMsg would read them.
func TestParsePubAckAgreesWithJetStream(t *testing.T) {
	for _, in := range pubAckSamples {
		checkPubAck(t, []byte(in))
	}
	a, err := parsePubAck([]byte(`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}}`))
	if apiErrorCode(err) != codeStreamWrongLastSequence || !errors.Is(classify("append", err), ErrConflict) {
		t.Fatalf("refusal: %+v, %v; want the server's error %d, a conflict", a, err, codeStreamWrongLastSequence)
	}
	if a, ok := scanPubAck([]byte(`{"stream":"ORDERS","seq":9,"duplicate":true}`)); !ok || a != (pubAck{Stream: "ORDERS", Sequence: 9, Duplicate: true}) {
		t.Fatalf("the scanner left a plain acknowledgement to encoding/json, or misread it: %+v, %v", a, ok)
	}
}

func checkPubAck(t *testing.T, in []byte) {
	t.Helper()
	got, gerr := parsePubAck(in)
	want, werr := decodeLikeJetStream(in)
	if got != want || (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: got %+v, %v; jetstream reads %+v, %v", in, got, gerr, want, werr)
	}
	if werr == nil {
		return
	}
	if wapi, ok := errors.AsType[*jetstream.APIError](werr); ok {
		if gapi, ok := errors.AsType[*jetstream.APIError](gerr); !ok || *gapi != *wapi {
			t.Fatalf("%q: got %v, want the server's %v", in, gerr, wapi)
		}
	} else if !errors.Is(gerr, jetstream.ErrInvalidJSAck) {
		t.Fatalf("%q: got %v, want jetstream.ErrInvalidJSAck", in, gerr)
	}
}

func FuzzParsePubAck(f *testing.F) {
	for _, in := range pubAckSamples {
		f.Add([]byte(in))
	}
	f.Fuzz(checkPubAck)
}
