package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// pubAck is what the server's answer to a publish says: the stream and the
// position it stored the message at, and whether it had it already.
type pubAck struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// pubAckResponse is the answer as jetstream.PublishMsg decodes it: an
// acknowledgement (all of jetstream.PubAck's fields, so that a value of the
// wrong type in one this store does not use fails the decode as it does
// jetstream's) or the server's refusal.
type pubAckResponse struct {
	Type  string              `json:"type"`
	Error *jetstream.APIError `json:"error,omitempty"`
	jetstream.PubAck
}

// parsePubAck reads the server's answer to a publish as
// jetstream.PublishMsg does: a refusal is returned as a *jetstream.APIError
// (wrapped), and an answer that is no acknowledgement as
// jetstream.ErrInvalidJSAck.
//
// Why not jetstream.PublishMsg itself: its encoding/json decode of this
// answer of about 30 bytes took twice the CPU of the request that fetched
// it, 2.3% of ordersd's under the mixed load (BENCHMARKS.md). An
// acknowledgement is a flat object of a few known fields, which
// scanPubAck reads without reflection; anything else (a refusal, an
// escape, a field it does not know) is left to encoding/json.
func parsePubAck(data []byte) (pubAck, error) {
	if a, ok := scanPubAck(data); ok {
		return a, nil
	}
	var r pubAckResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return pubAck{}, fmt.Errorf("nats: %w", r.Error)
	}
	if r.Stream == "" {
		return pubAck{}, jetstream.ErrInvalidJSAck
	}
	return pubAck{Stream: r.Stream, Sequence: r.Sequence, Duplicate: r.Duplicate}, nil
}

// scanPubAck reads an acknowledgement that is a JSON object of the fields
// stream and domain (strings without escapes), seq (a plain unsigned
// integer that fits uint64) and duplicate (a boolean), each spelled as the
// server spells it, with a non-empty stream. It reports false for anything
// else, which encoding/json then reads: whatever it accepts, it reads as
// encoding/json would.
func scanPubAck(b []byte) (a pubAck, ok bool) {
	s := ackScanner{b: b}
	if !s.byte('{') {
		return pubAck{}, false
	}
	if !s.byte('}') {
		for {
			key, ok := s.str()
			if !ok || !s.byte(':') {
				return pubAck{}, false
			}
			switch string(key) {
			case "stream":
				v, ok := s.str()
				if !ok {
					return pubAck{}, false
				}
				a.Stream = string(v)
			case "domain":
				if _, ok := s.str(); !ok {
					return pubAck{}, false
				}
			case "seq":
				if a.Sequence, ok = s.uint(); !ok {
					return pubAck{}, false
				}
			case "duplicate":
				if a.Duplicate, ok = s.bool(); !ok {
					return pubAck{}, false
				}
			default:
				return pubAck{}, false
			}
			if s.byte('}') {
				break
			}
			if !s.byte(',') {
				return pubAck{}, false
			}
		}
	}
	s.space()
	return a, s.i == len(b) && a.Stream != ""
}

// ackScanner reads JSON tokens from b at i, skipping the white space
// before each.
type ackScanner struct {
	b []byte
	i int
}

func (s *ackScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// byte consumes c if it comes next.
func (s *ackScanner) byte(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string of printable ASCII without escapes.
func (s *ackScanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	end := bytes.IndexByte(s.b[s.i:], '"')
	if end < 0 {
		return nil, false
	}
	v := s.b[s.i : s.i+end]
	for _, c := range v {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return nil, false
		}
	}
	s.i += end + 1
	return v, true
}

// uint reads an unsigned integer without sign, fraction or exponent, and
// without a leading zero unless it is 0, that fits uint64.
func (s *ackScanner) uint() (uint64, bool) {
	s.space()
	start := s.i
	var n uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
		s.i++
	}
	digits := s.i - start
	if digits == 0 || (digits > 1 && s.b[start] == '0') {
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return n, true
}

// bool reads true or false.
func (s *ackScanner) bool() (bool, bool) {
	s.space()
	for _, lit := range [...]string{"true", "false"} {
		if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
			s.i += len(lit)
			return lit == "true", true
		}
	}
	return false, false
}
