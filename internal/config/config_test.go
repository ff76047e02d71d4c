package config_test

import (
	"log/slog"
	"slices"
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
		c.NATSSync != "interval" || c.StreamReplicas != 1 || c.DuplicateWindow != 30*time.Second || c.LogLevel != slog.LevelInfo ||
		c.MaxInFlight != 1024 || c.MaxStreams != 64 || c.GRPCStreamWorkers != 256 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestOverrides(t *testing.T) {
	c, err := config.FromMap(map[string]string{
		"NATS_URL": "nats://a:4222,nats://b:4222", "NATS_SYNC": "always", "STREAM_REPLICAS": "3",
		"DUPLICATE_WINDOW": "10m", "LOG_LEVEL": "debug", "GRPC_ADDR": "0.0.0.0:9000", "ALLOW_INSECURE": "true",
		"EVENT_HEADERS": "separate", "GRPC_STREAM_WORKERS": "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSSync != "always" || c.EventHeaders != "separate" || c.GRPCStreamWorkers != 0 || c.StreamReplicas != 3 || c.DuplicateWindow != 10*time.Minute || c.LogLevel != slog.LevelDebug || c.GRPCAddr != "0.0.0.0:9000" {
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
		"EVENT_HEADERS":            "binary",
		"GRPC_ADDR":                "nowhere",
		"NATS_LISTEN":              "4222",
		"SHUTDOWN_TIMEOUT":         "0s",
		"ROLES":                    "command,kitchen",
		"WORKER_POOL_SIZE":         "0",
		"PAYMENT_SIM_FAILURE_RATE": "2",
		"MAX_IN_FLIGHT":            "0",
		"MAX_STREAMS":              "0",
		"GRPC_STREAM_WORKERS":      "-1",
		"COMMAND_HISTORIES":        "-1",
		"READ_MODEL_BULK_CATCHUP":  "-1",
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

// The embedded NATS server has no authentication, and AUTH_* tokens do not
// guard it: beyond loopback it needs ALLOW_INSECURE, even with auth on.
func TestNATSListenBeyondLoopbackNeedsConsent(t *testing.T) {
	for _, bad := range []map[string]string{
		{"NATS_LISTEN": "0.0.0.0:4222"},
		{"NATS_LISTEN": "10.1.2.3:4222", "AUTH_TOKENS_FILE": "/etc/orders/tokens"},
	} {
		_, err := config.FromMap(bad)
		if err == nil || !strings.Contains(err.Error(), "NATS_LISTEN") {
			t.Errorf("%v: %v, want an error naming NATS_LISTEN", bad, err)
		}
	}
	for _, ok := range []map[string]string{
		{"NATS_LISTEN": "0.0.0.0:4222", "ALLOW_INSECURE": "true"},
		{"NATS_LISTEN": "[::1]:0"},
		// With NATS_URL no embedded server runs.
		{"NATS_LISTEN": "0.0.0.0:4222", "NATS_URL": "nats://n:4222"},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

// The profiling listener is off by default and never leaves loopback, not
// even with ALLOW_INSECURE or authentication configured.
func TestDebugAddrLoopbackOnly(t *testing.T) {
	c, err := config.FromMap(map[string]string{})
	if err != nil || c.DebugAddr != "" {
		t.Fatalf("default DEBUG_ADDR %q, %v: want off", c.DebugAddr, err)
	}
	for _, bad := range []map[string]string{
		{"DEBUG_ADDR": "0.0.0.0:6060"},
		{"DEBUG_ADDR": ":6060"},
		{"DEBUG_ADDR": "10.1.2.3:6060", "ALLOW_INSECURE": "true"},
		{"DEBUG_ADDR": "[::]:6060", "AUTH_TOKENS_FILE": "/etc/orders/tokens"},
		{"DEBUG_ADDR": "6060"},
	} {
		_, err := config.FromMap(bad)
		if err == nil || !strings.Contains(err.Error(), "DEBUG_ADDR") {
			t.Errorf("%v: %v, want an error naming DEBUG_ADDR", bad, err)
		}
	}
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:0", "localhost:6060"} {
		if _, err := config.FromMap(map[string]string{"DEBUG_ADDR": ok}); err != nil {
			t.Errorf("DEBUG_ADDR=%s: %v", ok, err)
		}
	}
}

// A role that calls another role's gRPC services needs that role in the
// same process or its address; otherwise it would call its own listener,
// which does not serve them.
func TestRolesNeedTheirUpstreams(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want []string // variables the error must name
	}{
		{map[string]string{"ROLES": "payments"}, []string{"COMMAND_ADDR"}},
		{map[string]string{"ROLES": "payments,query"}, []string{"COMMAND_ADDR"}},
		{map[string]string{"ROLES": "gateway"}, []string{"COMMAND_ADDR", "QUERY_ADDR", "AUDIT_ADDR", "PAYMENTS_ADDR"}},
		{map[string]string{"ROLES": "gateway,command", "QUERY_ADDR": "q:50051"}, []string{"AUDIT_ADDR"}},
		// compose.yaml's front end before PAYMENTS_ADDR: the admin routes
		// of payments went to COMMAND_ADDR, which does not serve them.
		{map[string]string{"ROLES": "gateway,console", "COMMAND_ADDR": "c:50051", "QUERY_ADDR": "q:50051", "AUDIT_ADDR": "a:50051"}, []string{"PAYMENTS_ADDR"}},
		{map[string]string{"ROLES": "console,query,audit", "COMMAND_ADDR": "c:50051"}, []string{"PAYMENTS_ADDR"}},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "c:50051", "AUTH_TOKENS_FILE": "/etc/orders/tokens"}, []string{"PAYMENTS_TOKEN"}},
	} {
		_, err := config.FromMap(tc.vars)
		if err == nil {
			t.Errorf("%v accepted", tc.vars)
			continue
		}
		for _, name := range tc.want {
			if !strings.Contains(err.Error(), name+":") {
				t.Errorf("%v: error does not name %s: %v", tc.vars, name, err)
			}
		}
		for _, name := range []string{"COMMAND_ADDR", "QUERY_ADDR", "AUDIT_ADDR", "PAYMENTS_ADDR", "PAYMENTS_TOKEN"} {
			if !slices.Contains(tc.want, name) && strings.Contains(err.Error(), name+":") {
				t.Errorf("%v: error names %s, which is not missing: %v", tc.vars, name, err)
			}
		}
	}
	for _, ok := range []map[string]string{
		{},
		{"ROLES": "command,payments"},
		{"ROLES": "payments", "COMMAND_ADDR": "command:50051"},
		{"ROLES": "gateway", "COMMAND_ADDR": "c:50051", "QUERY_ADDR": "q:50051", "AUDIT_ADDR": "a:50051", "PAYMENTS_ADDR": "p:50051"},
		{"ROLES": "gateway,query,audit", "COMMAND_ADDR": "c:50051", "PAYMENTS_ADDR": "p:50051"},
		{"ROLES": "gateway,payments", "COMMAND_ADDR": "c:50051", "QUERY_ADDR": "q:50051", "AUDIT_ADDR": "a:50051"},
		// Beside the command role, without payments anywhere (as the
		// development examples run): the admin routes answer from here.
		{"ROLES": "command,query,audit,gateway"},
		{"ROLES": "command,console", "QUERY_ADDR": "q:50051", "AUDIT_ADDR": "a:50051"},
		{"ROLES": "payments", "COMMAND_ADDR": "c:50051", "AUTH_TOKENS_FILE": "/etc/orders/tokens", "PAYMENTS_TOKEN": "t"},
		{"ROLES": "command"}, {"ROLES": "query"}, {"ROLES": "audit"},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, r := range config.AllRoles {
		for _, up := range config.Needs(r) {
			if config.AddrVariable(up) == "" {
				t.Errorf("role %s needs %s, which has no address variable", r, up)
			}
		}
	}
}
