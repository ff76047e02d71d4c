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
