package rpcerr_test

import (
	"testing"

	"github.com/orderstream/orderstream/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		limit int32
		want  int
		code  codes.Code
	}{{0, 100, codes.OK}, {1, 1, codes.OK}, {1000, 1000, codes.OK}, {1001, 0, codes.InvalidArgument}, {-1, 0, codes.InvalidArgument}} {
		got, err := rpcerr.Limit("limit", tc.limit, 100, 1000)
		if got != tc.want || status.Code(err) != tc.code {
			t.Errorf("Limit(%d) = %d, %v; want %d, %v", tc.limit, got, err, tc.want, tc.code)
		}
	}
}

func TestFit(t *testing.T) {
	size := func(n int) func(int) int { return func(int) int { return n } }
	for _, c := range []struct {
		name    string
		n, each int
		want    int
	}{
		{"none", 0, 100, 0},
		{"all small", 500, 1000, 500},
		{"one larger than a page", 3, rpcerr.MaxPageBytes * 2, 1},
		{"as many as fit", 10, rpcerr.MaxPageBytes/4 - 4, 4},
		{"one byte over", 10, rpcerr.MaxPageBytes/4 - 3, 3},
	} {
		if got := rpcerr.Fit(c.n, size(c.each)); got != c.want {
			t.Errorf("%s: %d of %d items of %d bytes fit, want %d", c.name, got, c.n, c.each, c.want)
		}
	}
}
