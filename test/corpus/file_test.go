package corpus_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/orderstream/orderstream/eventstore"
)

// root is the corpus directory, relative to this package.
const root = "../../testdata/events"

// storedMsg is one stream message as it sits in the corpus: what the server
// stored, nothing decoded.
type storedMsg struct {
	Subject  string              `json:"subject"`
	Sequence uint64              `json:"sequence"`
	Time     time.Time           `json:"time"`
	Headers  map[string][]string `json:"headers"`
	Data     []byte              `json:"data"` // base64 in the file
}

// readSet reads every message of one corpus set (a subdirectory), in file
// name order, which is log order.
func readSet(t *testing.T, set string) (names []string, recs []eventstore.Recorded) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, set, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m storedMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		rec, err := eventstore.RecordedFromMsg(m.Subject, m.Sequence, m.Time, nats.Header(m.Headers), m.Data, eventstore.DefaultSubjectPrefix)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		names = append(names, filepath.Base(p))
		recs = append(recs, rec)
	}
	return names, recs
}
