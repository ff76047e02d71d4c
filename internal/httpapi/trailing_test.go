package httpapi_test

import "testing"

// A body holding anything after its JSON value is refused with 400 and
// writes nothing; trailing whitespace is still one JSON value.
func TestTrailingDataAfterTheBodyIsRefused(t *testing.T) {
	e := start(t)
	head := func() uint64 {
		t.Helper()
		h, err := e.store.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := head()
	for name, trailer := range map[string]string{
		"second object": ` {"x":1}`,
		"second value":  `1`,
		"garbage":       `garbage`,
		"bracket":       `}`,
	} {
		r := e.do(t, "POST", "/v1/orders", newOrder+trailer, "Idempotency-Key", key())
		if r.code != 400 {
			t.Errorf("%s after the body: %d %s", name, r.code, r.raw)
		}
	}
	if got := head(); got != before {
		t.Fatalf("refused bodies wrote events: head %d → %d", before, got)
	}
	expect(t, e.do(t, "POST", "/v1/orders", newOrder+" \n\t", "Idempotency-Key", key()), 200)
}
