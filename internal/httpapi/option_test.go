package httpapi_test

import (
	"context"
	"errors"
	"testing"

	"github.com/orderstream/orderstream/internal/httpapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// An option given a value it does not accept makes New fail with
// ErrInvalidOption rather than being ignored.
func TestInvalidOptionsAreRejected(t *testing.T) {
	// grpc.NewClient does not connect, so no server is needed.
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ok := func(context.Context) error { return nil }
	for name, opt := range map[string]httpapi.Option{
		"zero body limit":     httpapi.WithBodyLimit(0),
		"negative body limit": httpapi.WithBodyLimit(-1),
		"zero body timeout":   httpapi.WithBodyTimeout(0),
		"zero heartbeat":      httpapi.WithHeartbeat(0),
		"nil logger":          httpapi.WithLogger(nil),
		"unknown service":     httpapi.WithServiceConn("orders.v1.NoSuchService", conn),
		"unnamed check":       httpapi.WithReadinessCheck("", ok),
		"nil check":           httpapi.WithReadinessCheck("store", nil),
		"nil admission":       httpapi.WithAdmission(nil),
	} {
		if h, err := httpapi.New(t.Context(), conn, opt); !errors.Is(err, httpapi.ErrInvalidOption) || h != nil {
			t.Errorf("%s: New = %v, %v; want nil, ErrInvalidOption", name, h, err)
		}
	}
	if _, err := httpapi.New(t.Context(), conn, httpapi.WithBodyLimit(1), httpapi.WithReadinessCheck("store", ok)); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
