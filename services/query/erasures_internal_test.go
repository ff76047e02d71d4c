package query

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/orderstream/orderstream/api/convert"
	"github.com/orderstream/orderstream/eventstore"
	"github.com/orderstream/orderstream/order"
)

// customersSubject is the customers' subject as History reads it, each
// read's position kept.
type customersSubject struct {
	recs   []eventstore.Recorded
	afters []uint64
}

func (c *customersSubject) LoadLatest(ctx context.Context, id string) ([]eventstore.Recorded, error) {
	return c.LoadLatestAfter(ctx, id, 0)
}

func (c *customersSubject) LoadLatestAfter(_ context.Context, _ string, after uint64) ([]eventstore.Recorded, error) {
	c.afters = append(c.afters, after)
	var out []eventstore.Recorded
	for _, r := range c.recs {
		if r.Position > after {
			out = append(out, r)
		}
	}
	return out, nil
}

func (c *customersSubject) forget(t *testing.T, customerID string, position uint64) {
	t.Helper()
	typ, data, err := convert.EncodeEvent(order.CustomerForgotten{CustomerID: customerID})
	if err != nil {
		t.Fatal(err)
	}
	c.recs = append(c.recs, eventstore.Recorded{OrderID: order.CustomersSubjectID, Position: position, Type: typ, Data: data})
}

// More erasures than maxHeldErasures are not held: the resume that read
// them is answered, and the next reads from its order's creation again.
// A service held every erasure read since the oldest order resumed.
func TestErasuresPastTheBoundAreNotHeld(t *testing.T) {
	was := maxHeldErasures
	maxHeldErasures = 2
	t.Cleanup(func() { maxHeldErasures = was })
	h := &customersSubject{}
	for i, c := range []string{"a", "b", "c"} {
		h.forget(t, c, uint64(2+i))
	}
	var e erasures
	got, err := e.of(t.Context(), h, "c", 1)
	if err != nil || len(got) != 1 || got[0].Position != 4 {
		t.Fatalf("c's erasures after 1: %v, %v; want the one at 4", got, err)
	}
	if e.byCustomer != nil || e.held != 0 {
		t.Fatalf("%d erasures held past a bound of %d", e.held, maxHeldErasures)
	}
	h.forget(t, "a", 5)
	got, err = e.of(t.Context(), h, "a", 1)
	if err != nil || len(got) != 2 || got[0].Position != 2 || got[1].Position != 5 {
		t.Fatalf("a's erasures after 1: %v, %v; want those at 2 and 5", got, err)
	}
	if h.afters[1] != 1 {
		t.Fatalf("the resume after letting go read the subject after %d, want after its order's creation (1)", h.afters[1])
	}
}

// heldSubject is customersSubject whose read number held (from 1) is held
// as a leader's answer is during an election: it tells entered, waits
// for release or its caller's leaving (release nil: until it leaves), and
// then fails with fail, when set, or reads. Every other read calls before
// first, when set.
type heldSubject struct {
	customersSubject
	held             int
	entered, release chan struct{}
	fail             error
	before           func()
	mu               sync.Mutex
	n                int
}

func (h *heldSubject) LoadLatestAfter(ctx context.Context, id string, after uint64) ([]eventstore.Recorded, error) {
	h.mu.Lock()
	h.n++
	n := h.n
	h.mu.Unlock()
	if n == h.held {
		close(h.entered)
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if h.fail != nil {
			return nil, h.fail
		}
	} else if h.before != nil {
		h.before()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.customersSubject.LoadLatestAfter(ctx, id, after)
}

// afters is the positions the reads started after, in the order made.
func (h *heldSubject) afters() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.customersSubject.afters)
}

// A resume does not wait for another's read of what follows the cache:
// each held the lock across its read, and every resume on the node
// queued behind one slow answer (and did not leave when its caller did).
func TestResumesDoNotWaitForEachOthersRead(t *testing.T) {
	h := &heldSubject{held: 2, entered: make(chan struct{}), release: make(chan struct{})}
	h.forget(t, "a", 2)
	h.forget(t, "b", 3)
	var e erasures
	if _, err := e.of(t.Context(), h, "a", 1); err != nil { // fills the cache
		t.Fatal(err)
	}
	first := resume(t.Context(), &e, h, "a")
	<-h.entered
	// Only should the second read wait for the first: then it ends.
	bound := time.AfterFunc(time.Minute, func() { close(h.release) })
	got, err := e.of(t.Context(), h, "b", 1)
	// The first read is still held: only the bound, run out, let it go.
	if !bound.Stop() {
		t.Fatal("the second resume came back only after the first's read")
	}
	close(h.release)
	if err != nil || len(got) != 1 || got[0].Position != 3 {
		t.Fatalf("b's erasures after 1: %v, %v; want the one at 3", got, err)
	}
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
}

// Resumes that would each read the whole subject (on an empty cache, as
// every watch comes back after a restart) read it once: the others wait
// for that read and then read only what follows it, or leave when their
// caller does. Each read it all, at once.
func TestResumesOnAnEmptyCacheReadTheSubjectOnce(t *testing.T) {
	h := &heldSubject{held: 1, entered: make(chan struct{}), release: make(chan struct{})}
	h.forget(t, "a", 2)
	h.forget(t, "b", 3)
	var e erasures
	first := resume(t.Context(), &e, h, "a")
	<-h.entered
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.of(gone, h, "b", 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("a resume whose caller left, waiting for the whole read: %v, want context.Canceled", err)
	}
	second := resumeWaiting(t, &e, h, "b")
	close(h.release)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	if r := <-second; r.err != nil || len(r.got) != 1 || r.got[0].Position != 3 {
		t.Fatalf("b's erasures after 1: %v, %v; want the one at 3", r.got, r.err)
	}
	if a := h.afters(); !slices.Equal(a, []uint64{1, 3}) {
		t.Fatalf("the reads started after %v, want [1 3]: one whole read, then what followed it", a)
	}
}

// An erasure recorded before position after is not returned, read from
// the log or held: an order created after it is not its customer's
// order yet.
func TestErasuresBeforeAfterAreNotReturned(t *testing.T) {
	h := &customersSubject{}
	h.forget(t, "a", 2)
	var e erasures
	if _, err := e.of(t.Context(), h, "b", 1); err != nil { // holds (1, 2]
		t.Fatal(err)
	}
	h.forget(t, "a", 5)
	if got, err := e.of(t.Context(), h, "a", 6); err != nil || len(got) != 0 {
		t.Fatalf("a's erasures after 6: %v, %v; want none", got, err)
	}
}

// doneWatched is a context that tells when Done is first asked for: a
// resume waiting for another's read asks for it as it starts to wait.
type doneWatched struct {
	context.Context
	asked chan struct{}
	once  sync.Once
}

func (d *doneWatched) Done() <-chan struct{} {
	d.once.Do(func() { close(d.asked) })
	return d.Context.Done()
}

// resumed is what a resume's erasures.of returned.
type resumed struct {
	got []eventstore.Recorded
	err error
}

// resume asks e, in a goroutine, for customer's erasures after position
// 1 (its order's creation); the answer comes on the channel.
func resume(ctx context.Context, e *erasures, h History, customer string) <-chan resumed {
	c := make(chan resumed, 1)
	go func() {
		got, err := e.of(ctx, h, customer, 1)
		c <- resumed{got, err}
	}()
	return c
}

// resumeWaiting is resume of one that waits for a whole read in flight:
// it returns once that one waits.
func resumeWaiting(t *testing.T, e *erasures, h History, customer string) <-chan resumed {
	t.Helper()
	ctx := &doneWatched{Context: t.Context(), asked: make(chan struct{})}
	c := resume(ctx, e, h, customer)
	<-ctx.asked
	return c
}

// A resume that waited for another's whole read which then failed reads
// by itself, registering no read for the others to wait on: each such
// resume waited for the one before, one read at a time, when the reads
// failed during an election.
func TestResumeWhoseAwaitedReadFailedReadsByItself(t *testing.T) {
	var e erasures
	// Whether a whole read was registered for others to wait on while
	// each later read ran.
	var registered []bool
	h := &heldSubject{held: 1, entered: make(chan struct{}), release: make(chan struct{}), fail: errors.New("leader election"),
		before: func() {
			e.mu.Lock()
			registered = append(registered, e.filling != nil)
			e.mu.Unlock()
		}}
	h.forget(t, "b", 3)
	first := resume(t.Context(), &e, h, "a")
	<-h.entered
	second := resumeWaiting(t, &e, h, "b")
	close(h.release)
	if r := <-first; r.err == nil {
		t.Fatal("the first read's failure was not returned")
	}
	if r := <-second; r.err != nil || len(r.got) != 1 || r.got[0].Position != 3 {
		t.Fatalf("b's erasures after 1: %v, %v; want the one at 3", r.got, r.err)
	}
	if len(registered) != 1 || registered[0] {
		t.Fatalf("reads after the failed one registered for others to wait on: %v, want [false]", registered)
	}
}

// A whole read whose caller leaves (its watcher disconnects) is no
// failure of the log's: one of the resumes waiting for it reads in its
// place and the others wait for that one, as before. Each of them read
// the whole subject at once.
func TestResumesWaitingForAReadWhoseCallerLeftReadItOnce(t *testing.T) {
	h := &heldSubject{held: 1, entered: make(chan struct{})} // held until its caller leaves
	h.forget(t, "a", 2)
	h.forget(t, "b", 3)
	var e erasures
	gone, leave := context.WithCancel(t.Context())
	first := resume(gone, &e, h, "a")
	<-h.entered
	waiting := []<-chan resumed{resumeWaiting(t, &e, h, "a"), resumeWaiting(t, &e, h, "b")}
	leave()
	if r := <-first; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the read whose caller left: %v, want context.Canceled", r.err)
	}
	for _, c := range waiting {
		if r := <-c; r.err != nil || len(r.got) != 1 {
			t.Fatalf("a waiting resume: %v, %v; want its customer's erasure", r.got, r.err)
		}
	}
	if a := h.afters(); !slices.Equal(a, []uint64{1, 3}) {
		t.Fatalf("the reads after the one whose caller left started after %v, want [1 3]: one whole read in its place, then what followed it", a)
	}
}
