package streamcfg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// APIPrefix is the JetStream API's subject prefix for o.
func APIPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	default:
		return "$JS.API."
	}
}

// MsgGetSubject is the subject of stream's message get API, which only its
// leader answers.
func MsgGetSubject(o jetstream.JetStreamOptions, stream string) string {
	return APIPrefix(o) + "STREAM.MSG.GET." + stream
}

// MsgGetRequest is nats-server's JSApiMsgGetRequest, reduced to the fields
// of a non-direct get.
type MsgGetRequest struct {
	Seq       uint64 `json:"seq,omitempty"`
	LastFor   string `json:"last_by_subj,omitempty"`
	NextFor   string `json:"next_by_subj,omitempty"`
	NoHeaders bool   `json:"no_hdr,omitempty"`
	// StartTime, with NextFor and without Seq, asks for the first
	// message stored at or after it.
	StartTime *time.Time `json:"start_time,omitempty"`
}

// msgGetResponse is nats-server's JSApiMsgGetResponse.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs,omitempty"`
		Data     []byte    `json:"data,omitempty"`
		Time     time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// ErrBadHeaders reports a message whose headers do not decode.
var ErrBadHeaders = errors.New("message headers do not decode")

// LeaderGet runs one non-direct message get on subject (MsgGetSubject). In
// a cluster only the stream leader answers it (followers stay silent, and
// the server answers "cluster not available" while the stream has no
// leader), so it reads the state every acknowledged write has reached.
// found is false when the stream has no such message. Errors: the
// server's, or one wrapping ErrBadHeaders.
//
// It is a request of its own rather than jetstream.Stream.GetMsg, which
// switches to direct gets, answered by any replica, when the stream allows
// them. Without a deadline on ctx it waits at most wait (the JetStream
// context's default timeout, as its own requests do): the client fails a
// bare request only when its connection closes, so one whose answer was
// lost (a link that dropped it, then came back) held its caller for ever.
func LeaderGet(ctx context.Context, nc *nats.Conn, subject string, req MsgGetRequest, wait time.Duration) (*jetstream.RawStreamMsg, bool, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, false, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	m, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return nil, false, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, false, fmt.Errorf("message get %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, false, nil
	case resp.Error != nil:
		return nil, false, resp.Error
	case resp.Message == nil:
		return nil, false, fmt.Errorf("message get %s: %w", subject, jetstream.ErrInvalidJetStreamResponse)
	}
	raw := &jetstream.RawStreamMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Sequence, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if raw.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, false, fmt.Errorf("%w: at position %d: %w", ErrBadHeaders, raw.Sequence, err)
		}
	}
	return raw, true, nil
}

// DropConsumer deletes a finished read's consumer from stream, within
// dropConsumerWait, however the read ended. nats.go stops pulling but
// leaves the consumer until its inactive threshold (minutes for a read),
// and the server allows 1,000 consumers a stream: a few hundred reads
// within that time (audit exports, runner restarts, deadline lists) would
// then refuse every new one. A consumer the deletion misses still goes at
// its threshold.
func DropConsumer(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropConsumerWait)
	defer cancel()
	_ = js.DeleteConsumer(dctx, stream, info.Name)
}

// dropConsumerWait bounds the deletion of a read's consumer.
const dropConsumerWait = 2 * time.Second
