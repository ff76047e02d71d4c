package config_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/config"
)

func TestDefaults(t *testing.T) {
	c, err := config.FromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != "" || c.DataDir != "./data" || c.GRPCAddr != "127.0.0.1:50051" || c.NATSListen != "127.0.0.1:4222" ||
		c.NATSSync != "interval" || c.StreamReplicas != 1 || c.DuplicateWindow != 2*time.Minute || c.LogLevel != slog.LevelInfo {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestOverrides(t *testing.T) {
	c, err := config.FromMap(map[string]string{
		"NATS_URL": "nats://a:4222,nats://b:4222", "NATS_SYNC": "always", "STREAM_REPLICAS": "3",
		"DUPLICATE_WINDOW": "10m", "LOG_LEVEL": "debug", "GRPC_ADDR": "0.0.0.0:9000", "ALLOW_INSECURE": "true",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSSync != "always" || c.StreamReplicas != 3 || c.DuplicateWindow != 10*time.Minute || c.LogLevel != slog.LevelDebug || c.GRPCAddr != "0.0.0.0:9000" {
		t.Fatalf("overrides: %+v", c)
	}
}

// Every bad value is reported under the variable's name, the name an
// operator typed.
func TestBadValuesNameTheVariable(t *testing.T) {
	for name, value := range map[string]string{
		"STREAM_REPLICAS":          "three",
		"DUPLICATE_WINDOW":         "soon",
		"LOG_LEVEL":                "loud",
		"NATS_SYNC":                "sometimes",
		"GRPC_ADDR":                "nowhere",
		"NATS_LISTEN":              "4222",
		"SHUTDOWN_TIMEOUT":         "0s",
		"ROLES":                    "command,kitchen",
		"WORKER_POOL_SIZE":         "0",
		"PAYMENT_SIM_FAILURE_RATE": "2",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.FromMap(map[string]string{name: value})
			if err == nil {
				t.Fatalf("%s=%s accepted", name, value)
			}
			if !strings.Contains(err.Error(), name) {
				t.Fatalf("error does not name %s: %v", name, err)
			}
		})
	}
}

// Without authentication ordersd stays on loopback unless told otherwise.
func TestBeyondLoopbackNeedsAuthOrConsent(t *testing.T) {
	if _, err := config.FromMap(map[string]string{"GRPC_ADDR": "0.0.0.0:50051"}); err == nil || !strings.Contains(err.Error(), "GRPC_ADDR") {
		t.Fatalf("0.0.0.0 without auth: %v", err)
	}
	if _, err := config.FromMap(map[string]string{"HTTP_ADDR": "10.1.2.3:8080"}); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Fatalf("private address without auth: %v", err)
	}
	for _, ok := range []map[string]string{
		{"GRPC_ADDR": "0.0.0.0:50051", "ALLOW_INSECURE": "true"},
		{"GRPC_ADDR": "0.0.0.0:50051", "AUTH_TOKENS_FILE": "/etc/orders/tokens"},
		{"GRPC_ADDR": "localhost:50051"},
		{"GRPC_ADDR": "[::1]:50051"},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Fatalf("%v: %v", ok, err)
		}
	}
}
