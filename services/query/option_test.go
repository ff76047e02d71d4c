package query_test

import (
	"errors"
	"testing"

	"github.com/orderstream/orderstream/projections"
	"github.com/orderstream/orderstream/services/query"
)

// newQuery returns a query service on p, failing the test when New refuses
// opts.
func newQuery(t testing.TB, p query.Projection, opts ...query.Option) *query.Service {
	t.Helper()
	svc, err := query.New(p, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// An option given a value it does not accept makes New fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	for name, opt := range map[string]query.Option{
		"zero buffer":     query.WithWatchBuffer(0),
		"negative buffer": query.WithWatchBuffer(-3),
		"nil feed":        query.WithFeed(nil),
		"nil history":     query.WithHistory(nil),
		"nil head":        query.WithHead(nil),
	} {
		if svc, err := query.New(nil, nil, opt); !errors.Is(err, query.ErrInvalidOption) || svc != nil {
			t.Errorf("%s: New = %v, %v; want nil, ErrInvalidOption", name, svc, err)
		}
	}
	if _, err := query.New(nil, nil, query.WithWatchBuffer(1), query.WithFeed(projections.NewFeed(0))); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func TestInvalidAdminOptionsAreRejected(t *testing.T) {
	if a, err := query.NewAdmin(nil, nil, nil, query.WithForgetter(nil)); !errors.Is(err, query.ErrInvalidOption) || a != nil {
		t.Errorf("NewAdmin(WithForgetter(nil)) = %v, %v; want nil, ErrInvalidOption", a, err)
	}
}
