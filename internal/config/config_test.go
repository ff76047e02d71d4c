package config_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/internal/config"
	"github.com/orderstream/orderstream/services/deadlines"
	"github.com/orderstream/orderstream/services/payments"
)

func TestDefaults(t *testing.T) {
	c, err := config.FromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.NATSURL != "" || c.DataDir != "./data" || c.GRPCAddr != "127.0.0.1:50051" || c.NATSListen != "127.0.0.1:4222" ||
		c.NATSSync != "interval" || c.StreamReplicas != 1 || c.DuplicateWindow != 30*time.Second || c.LogLevel != slog.LevelInfo || c.LogFlushInterval != 100*time.Millisecond ||
		c.MaxInFlight != 1024 || c.MaxStreams != 64 || c.GRPCStreamWorkers != 256 {
		t.Fatalf("defaults: %+v", c)
	}
}

// ordersd's payment retries by default are the payments manager's own
// defaults, which its documentation (and the budget they make) describes.
func TestPaymentRetryDefaultsAreTheManagers(t *testing.T) {
	c, err := config.FromMap(map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if config.MaxPaymentAckWait != payments.MaxAckWait {
		t.Errorf("PAYMENT_ACK_WAIT up to %v, the manager's WithAckWait up to %v", config.MaxPaymentAckWait, payments.MaxAckWait)
	}
	if c.PaymentMaxAttempts != payments.DefaultMaxAttempts || c.PaymentBackoffBase != payments.DefaultBackoffBase ||
		c.PaymentBackoffMax != payments.DefaultBackoffMax || c.PaymentAttemptTimeout != payments.DefaultAttemptTimeout ||
		c.PaymentAckWait != payments.DefaultAckWait || c.PaymentOutageLimit != payments.DefaultOutageLimit {
		t.Fatalf("payment defaults %d attempts, %v to %v, %v per attempt, ack wait %v, outage limit %v; the manager's %d, %v to %v, %v, %v, %v",
			c.PaymentMaxAttempts, c.PaymentBackoffBase, c.PaymentBackoffMax, c.PaymentAttemptTimeout, c.PaymentAckWait, c.PaymentOutageLimit,
			payments.DefaultMaxAttempts, payments.DefaultBackoffBase, payments.DefaultBackoffMax, payments.DefaultAttemptTimeout, payments.DefaultAckWait, payments.DefaultOutageLimit)
	}
}

func TestOverrides(t *testing.T) {
	c, err := config.FromMap(map[string]string{
		"NATS_URL": "nats://a:4222,nats://b:4222", "STREAM_REPLICAS": "3",
		"DUPLICATE_WINDOW": "10m", "LOG_LEVEL": "debug", "GRPC_ADDR": "0.0.0.0:9000", "ALLOW_INSECURE": "true",
		"EVENT_HEADERS": "separate", "GRPC_STREAM_WORKERS": "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.EventHeaders != "separate" || c.GRPCStreamWorkers != 0 || c.StreamReplicas != 3 || c.DuplicateWindow != 10*time.Minute || c.LogLevel != slog.LevelDebug || c.GRPCAddr != "0.0.0.0:9000" {
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
		"LOG_FLUSH_INTERVAL":       "-1s",
		"PAYMENT_ACK_WAIT":         "2h",
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
// ROLES set but empty is refused, naming the variable: the parser took it
// for unset and ran every role (a deployment's ${ROLES} left unset, say).
func TestEmptyRolesIsRefused(t *testing.T) {
	for _, v := range []string{"", "  "} {
		if _, err := config.FromMap(map[string]string{"ROLES": v}); err == nil || !strings.Contains(err.Error(), "ROLES") {
			t.Errorf("ROLES=%q: %v, want an error naming ROLES", v, err)
		}
	}
	if c, err := config.FromMap(map[string]string{}); err != nil || len(c.Roles) != 6 {
		t.Errorf("ROLES unset: %v, %v; want every role", c.Roles, err)
	}
}

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

// The embedded server is a single nats-server: a stream with more than one
// replica cannot be placed on it, so STREAM_REPLICAS above 1 needs NATS_URL
// and is refused as configuration, naming both, rather than failing start-up
// later with the server's words.
func TestStreamReplicasNeedACluster(t *testing.T) {
	for _, n := range []string{"2", "3", "5"} {
		_, err := config.FromMap(map[string]string{"STREAM_REPLICAS": n})
		if err == nil || !strings.Contains(err.Error(), "STREAM_REPLICAS:") || !strings.Contains(err.Error(), "NATS_URL") {
			t.Errorf("STREAM_REPLICAS=%s without NATS_URL: %v, want an error naming STREAM_REPLICAS and NATS_URL", n, err)
		}
	}
	for _, ok := range []map[string]string{
		{"STREAM_REPLICAS": "1"},
		{"STREAM_REPLICAS": "3", "NATS_URL": "nats://n1:4222,nats://n2:4222,nats://n3:4222"},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

// The payment simulator takes what the README documents: a latency that is
// not negative, a failure rate between 0 and 1 (NaN is not), a decline
// limit in minor units that is not negative (0: none).
func TestPaymentSimulatorValuesInRange(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"PAYMENT_SIM_LATENCY", "-5s"},
		{"PAYMENT_SIM_FAILURE_RATE", "NaN"},
		{"PAYMENT_SIM_FAILURE_RATE", "-0.1"},
		{"PAYMENT_SIM_FAILURE_RATE", "+Inf"},
		{"PAYMENT_SIM_DECLINE_OVER", "-1"},
	} {
		_, err := config.FromMap(map[string]string{tc.name: tc.value})
		if err == nil || !strings.Contains(err.Error(), tc.name+":") {
			t.Errorf("%s=%s: %v, want an error naming %s", tc.name, tc.value, err, tc.name)
		}
	}
	for _, ok := range []map[string]string{
		{"PAYMENT_SIM_LATENCY": "0s", "PAYMENT_SIM_FAILURE_RATE": "0", "PAYMENT_SIM_DECLINE_OVER": "0"},
		{"PAYMENT_SIM_LATENCY": "1m", "PAYMENT_ATTEMPT_TIMEOUT": "2m", "PAYMENT_SIM_FAILURE_RATE": "1", "PAYMENT_SIM_DECLINE_OVER": "100000"},
		{"PAYMENT_SIM_FAILURE_RATE": "0.25"},
		// No payments role here: the simulator is not called.
		{"ROLES": "command,query", "PAYMENT_SIM_LATENCY": "1m"},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

// The simulator answers after its latency, each call: one that is not
// below the attempt timeout would have every attempt time out and every
// charge parked (README: "the attempt timeout must outlast the latency").
// Start-up took it.
func TestSimulatorLatencyOutlastingTheAttemptIsRefused(t *testing.T) {
	for _, bad := range []map[string]string{
		{"PAYMENT_SIM_LATENCY": "6s"}, // the attempt timeout's default is 5s
		{"PAYMENT_SIM_LATENCY": "1m"},
		{"PAYMENT_SIM_LATENCY": "2s", "PAYMENT_ATTEMPT_TIMEOUT": "2s"},
	} {
		_, err := config.FromMap(bad)
		if err == nil || !strings.Contains(err.Error(), "PAYMENT_SIM_LATENCY, PAYMENT_ATTEMPT_TIMEOUT:") {
			t.Errorf("%v: %v, want an error naming both", bad, err)
		}
	}
}

// Two listeners of one process on one port are refused at start-up,
// naming both: the second to listen failed as if another process held
// the port, naming only itself. A wildcard host overlaps every host; port
// 0 takes any free port; NATS_LISTEN is no listener with NATS_URL.
func TestListenersOnOnePortAreRefused(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"GRPC_ADDR": "127.0.0.1:50999", "HTTP_ADDR": "127.0.0.1:50999"}, "GRPC_ADDR, HTTP_ADDR:"},
		{map[string]string{"NATS_LISTEN": "127.0.0.1:8080"}, "HTTP_ADDR, NATS_LISTEN:"},
		{map[string]string{"DEBUG_ADDR": "127.0.0.1:50051"}, "GRPC_ADDR, DEBUG_ADDR:"},
		{map[string]string{"GRPC_ADDR": ":7000", "HTTP_ADDR": "127.0.0.1:7000", "ALLOW_INSECURE": "true"}, "GRPC_ADDR, HTTP_ADDR:"},
		// The same address spelt otherwise.
		{map[string]string{"GRPC_ADDR": "localhost:7000", "HTTP_ADDR": "127.0.0.1:7000"}, "GRPC_ADDR, HTTP_ADDR:"},
		{map[string]string{"GRPC_ADDR": "LocalHost:7000", "HTTP_ADDR": "127.0.0.1:7000", "ALLOW_INSECURE": "true"}, "GRPC_ADDR, HTTP_ADDR:"},
		{map[string]string{"GRPC_ADDR": "[::1]:7000", "HTTP_ADDR": "[0:0:0:0:0:0:0:1]:7000"}, "GRPC_ADDR, HTTP_ADDR:"},
		{map[string]string{"GRPC_ADDR": "127.0.0.1:http", "HTTP_ADDR": "127.0.0.1:80"}, "GRPC_ADDR, HTTP_ADDR:"},
		{map[string]string{"GRPC_ADDR": "127.0.0.1:07000", "HTTP_ADDR": "127.0.0.1:7000"}, "GRPC_ADDR, HTTP_ADDR:"},
		{map[string]string{"GRPC_ADDR": "[::]:7000", "HTTP_ADDR": "127.0.0.1:7000", "ALLOW_INSECURE": "true"}, "GRPC_ADDR, HTTP_ADDR:"},
	} {
		_, err := config.FromMap(tc.vars)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.vars, err, tc.want)
		}
	}
	for _, ok := range []map[string]string{
		{"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "NATS_LISTEN": "127.0.0.1:0"},
		{"GRPC_ADDR": "127.0.0.1:7000", "HTTP_ADDR": "127.0.0.2:7000"},
		// Go listens on 127.0.0.1 for localhost: [::1] is free beside it.
		{"GRPC_ADDR": "localhost:7000", "HTTP_ADDR": "[::1]:7000"},
		{"NATS_URL": "nats://nats:4222", "NATS_LISTEN": "127.0.0.1:8080"},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

// With authentication on, the payments role presents a token made by this
// process only when its calls go to this process's own command role
// (COMMAND_ADDR empty): a command service elsewhere, even beside a command
// role here, would refuse it after the charge was made. So PAYMENTS_TOKEN
// is required whenever COMMAND_ADDR is set, or the command role is not here.
func TestPaymentsTokenWhenCommandCallsLeaveTheProcess(t *testing.T) {
	const tokens = "/etc/orders/tokens"
	for _, bad := range []map[string]string{
		{"ROLES": "command,payments", "COMMAND_ADDR": "command:50051", "AUTH_TOKENS_FILE": tokens},
		{"COMMAND_ADDR": "command:50051", "AUTH_TOKENS_FILE": tokens}, // every role
		{"ROLES": "payments", "COMMAND_ADDR": "command:50051", "AUTH_JWKS_FILE": "/etc/orders/jwks.json"},
	} {
		_, err := config.FromMap(bad)
		if !errors.Is(err, config.ErrPaymentsTokenRequired) {
			t.Errorf("%v: %v, want ErrPaymentsTokenRequired", bad, err)
		}
	}
	for _, ok := range []map[string]string{
		// This process's own command role: ordersd makes the token.
		{"ROLES": "command,payments", "AUTH_TOKENS_FILE": tokens},
		{"AUTH_TOKENS_FILE": tokens},
		{"ROLES": "command,payments", "COMMAND_ADDR": "command:50051", "AUTH_TOKENS_FILE": tokens, "PAYMENTS_TOKEN": "t"},
		// Without authentication no token is presented at all.
		{"ROLES": "command,payments", "COMMAND_ADDR": "command:50051"},
		// No payments role here.
		{"ROLES": "command,query,audit", "COMMAND_ADDR": "command:50051", "AUTH_TOKENS_FILE": tokens},
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

// The TLS settings of this process's own clients are used whenever they are
// set, with or without TLS_CERT (a gateway may call TLS upstreams without
// serving TLS itself): each file must exist, and a client certificate
// comes with its key. Errors name the variables.
func TestClientTLSSettingsAreChecked(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for _, f := range []string{ca, cert, key} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		vars map[string]string
		want []string // variables the error must name
	}{
		{map[string]string{"TLS_CA": missing}, []string{"TLS_CA"}},
		{map[string]string{"TLS_CA": dir}, []string{"TLS_CA"}},
		{map[string]string{"TLS_CLIENT_CERT": cert}, []string{"TLS_CLIENT_CERT, TLS_CLIENT_KEY"}},
		{map[string]string{"TLS_CLIENT_KEY": key}, []string{"TLS_CLIENT_CERT, TLS_CLIENT_KEY"}},
		{map[string]string{"TLS_CLIENT_CERT": missing, "TLS_CLIENT_KEY": key}, []string{"TLS_CLIENT_CERT"}},
		{map[string]string{"TLS_CLIENT_CERT": cert, "TLS_CLIENT_KEY": missing}, []string{"TLS_CLIENT_KEY"}},
		// The review's gateway: a CA that does not exist, a certificate
		// without its key.
		{map[string]string{"ROLES": "gateway", "COMMAND_ADDR": "c:50051", "QUERY_ADDR": "q:50051", "AUDIT_ADDR": "a:50051", "PAYMENTS_ADDR": "p:50051",
			"TLS_CA": missing, "TLS_CLIENT_CERT": cert, "TLS_SERVER_NAME": "orders.internal"}, []string{"TLS_CA", "TLS_CLIENT_CERT, TLS_CLIENT_KEY"}},
	} {
		_, err := config.FromMap(tc.vars)
		for _, name := range tc.want {
			if err == nil || !strings.Contains(err.Error(), name+":") {
				t.Errorf("%v: %v, want an error naming %s", tc.vars, err, name)
			}
		}
	}
	for _, ok := range []map[string]string{
		{"TLS_CA": ca},
		{"TLS_CA": ca, "TLS_CLIENT_CERT": cert, "TLS_CLIENT_KEY": key, "TLS_SERVER_NAME": "orders.internal"},
		{"TLS_SERVER_NAME": "orders.internal"},
	} {
		c, err := config.FromMap(ok)
		if err != nil {
			t.Errorf("%v without TLS_CERT: %v", ok, err)
			continue
		}
		if !c.ClientTLS() {
			t.Errorf("%v: calls to other processes would not use TLS", ok)
		}
	}
	if c, err := config.FromMap(map[string]string{}); err != nil || c.ClientTLS() {
		t.Errorf("defaults: ClientTLS %v, %v; want plaintext", c.ClientTLS(), err)
	}
}

// TLS_CLIENT_CA makes this process's listener ask every client for a
// certificate, its own roles included: one that calls another role here
// without TLS_CLIENT_CERT would fail every call while /readyz said ready,
// so the configuration is refused, naming the variables. With the
// client certificate, or with every upstream elsewhere, it is accepted.
func TestClientCAWithOwnCallsNeedsAClientCertificate(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for _, n := range []string{"TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA", "TLS_CLIENT_CERT", "TLS_CLIENT_KEY"} {
		files[n] = filepath.Join(dir, n)
		if err := os.WriteFile(files[n], nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := func(extra ...string) map[string]string {
		m := map[string]string{"TLS_CERT": files["TLS_CERT"], "TLS_KEY": files["TLS_KEY"], "TLS_CLIENT_CA": files["TLS_CLIENT_CA"]}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	if _, err := config.FromMap(base("ROLES", "command,query,audit,gateway")); err == nil || !strings.Contains(err.Error(), "TLS_CLIENT_CA:") || !strings.Contains(err.Error(), "TLS_CLIENT_CERT") {
		t.Errorf("a gateway calling its own listener without a client certificate: %v; want an error naming TLS_CLIENT_CA and TLS_CLIENT_CERT", err)
	}
	for _, ok := range []map[string]string{
		base("ROLES", "command,query,audit,gateway", "TLS_CLIENT_CERT", files["TLS_CLIENT_CERT"], "TLS_CLIENT_KEY", files["TLS_CLIENT_KEY"]),
		base("ROLES", "command,query,audit"),
		base("ROLES", "payments", "COMMAND_ADDR", "c:50051"),
	} {
		if _, err := config.FromMap(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}

// The embedded server is reached in process, without TLS or credentials:
// NATS_* settings for a server at NATS_URL are refused without it, naming
// the variable, rather than accepted and then failing start-up after
// NATS_CONNECT_TIMEOUT with an error naming NATS_URL.
func TestNATSClientSettingsNeedNATSURL(t *testing.T) {
	for _, name := range []string{"NATS_CA", "NATS_CERT", "NATS_KEY", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD"} {
		_, err := config.FromMap(map[string]string{name: "x"})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s without NATS_URL: %v, want an error naming it", name, err)
		}
	}
}

// NATS_SYNC=always sets the embedded server's fsync: with NATS_URL it is
// refused, naming the variable, rather than accepted while the servers at
// NATS_URL sync as their own configuration says.
func TestNATSSyncAlwaysNeedsTheEmbeddedServer(t *testing.T) {
	_, err := config.FromMap(map[string]string{"NATS_SYNC": "always", "NATS_URL": "nats://127.0.0.1:4222"})
	if err == nil || !strings.HasPrefix(err.Error(), "NATS_SYNC:") {
		t.Fatalf("NATS_SYNC=always with NATS_URL: %v, want an error naming NATS_SYNC", err)
	}
	for _, env := range []map[string]string{
		{"NATS_SYNC": "always"},
		{"NATS_SYNC": "interval", "NATS_URL": "nats://127.0.0.1:4222"},
	} {
		if c, err := config.FromMap(env); err != nil || c.NATSSync != env["NATS_SYNC"] {
			t.Errorf("%v: %v, NATS_SYNC read as %q", env, err, c.NATSSync)
		}
	}
}

// A role named twice is refused: the process would register its services
// twice, and a node running one role alone is told apart by counting them
// (a payments-only node makes its payment circuit required).
func TestRoleNamedTwiceIsRefused(t *testing.T) {
	for _, env := range []map[string]string{
		{"ROLES": "query,query"},
		{"ROLES": "payments,payments", "COMMAND_ADDR": "127.0.0.1:50051"},
	} {
		if _, err := config.FromMap(env); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("%v: %v, want the role refused as named twice", env, err)
		}
	}
	if _, err := config.FromMap(map[string]string{"ROLES": "payments", "COMMAND_ADDR": "127.0.0.1:50051"}); err != nil {
		t.Fatalf("ROLES=payments: %v", err)
	}
}

// An upstream address gRPC would dial wrongly (a bare host on port 443) or
// not at all (a URL, a port that is no number from 1 to 65535 nor a
// service name) fails start-up naming its variable, rather than every call
// after it; the forms gRPC dials are taken, a named port among them.
func TestUpstreamAddressesAreCheckedAsGRPCDialsThem(t *testing.T) {
	for _, bad := range []struct {
		env  map[string]string
		name string // the variable refused
	}{
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "command"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "http://command:50051"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": ":50051"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "unix:"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "command:5O051"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "command:99999"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "payments", "COMMAND_ADDR": "command:0"}, "COMMAND_ADDR"},
		{map[string]string{"ROLES": "gateway", "COMMAND_ADDR": "command:50051", "QUERY_ADDR": "query", "AUDIT_ADDR": "audit:50051", "PAYMENTS_ADDR": "payments:50051"}, "QUERY_ADDR"},
		{map[string]string{"ROLES": "gateway", "COMMAND_ADDR": "command:50051", "QUERY_ADDR": "query:50051", "AUDIT_ADDR": "dns:///audit", "PAYMENTS_ADDR": "payments:50051"}, "AUDIT_ADDR"},
	} {
		_, err := config.FromMap(bad.env)
		if err == nil || !strings.Contains(err.Error(), bad.name) {
			t.Errorf("%v: %v, want an error naming %s", bad.env, err, bad.name)
		}
	}
	for _, good := range []string{"command:50051", "10.0.0.7:50051", "[::1]:50051", "dns:///command:50051", "dns://10.0.0.2/command:50051", "unix:///run/ordersd.sock", "unix:ordersd.sock", "command:https", "dns:///command:https"} {
		if _, err := config.FromMap(map[string]string{"ROLES": "payments", "COMMAND_ADDR": good}); err != nil {
			t.Errorf("COMMAND_ADDR=%s: %v", good, err)
		}
	}
}

// A payment timeout or shipping SLA the server's timers cannot hold (past
// 2262) would fire at once: cancelling every order as it is placed. An
// outage limit past a quarter of what a time.Duration holds made the
// simulator's key lifetime, four of them, overflow to its least, an hour:
// a job kept waiting longer was charged again under a key forgotten.
func TestDeadlinesAreBounded(t *testing.T) {
	if config.MaxDeadline != deadlines.MaxTimeout {
		t.Errorf("PAYMENT_TIMEOUT up to %v, the deadlines' WithTimeouts up to %v", config.MaxDeadline, deadlines.MaxTimeout)
	}
	for _, name := range []string{"PAYMENT_TIMEOUT", "SHIPPING_SLA", "PAYMENT_OUTAGE_LIMIT"} {
		if _, err := config.FromMap(map[string]string{name: "2562047h"}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=2562047h: %v, want an error naming it", name, err)
		}
		if _, err := config.FromMap(map[string]string{name: "87600h"}); err != nil {
			t.Errorf("%s=87600h: %v", name, err)
		}
	}
}

// A variable with a default set but empty (a deployment's ${GRPC_ADDR}
// left unset) fails naming it, rather than taking the default: loopback
// in a container meant to be reached, a data directory outside the volume
// meant for the log.
func TestSetButEmptyIsRefused(t *testing.T) {
	for _, name := range []string{"GRPC_ADDR", "HTTP_ADDR", "NATS_LISTEN", "DATA_DIR", "STREAM_REPLICAS", "PAYMENT_TIMEOUT", "ROLES"} {
		for _, v := range []string{"", " "} {
			if _, err := config.FromMap(map[string]string{name: v}); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: %v, want an error naming it", name, v, err)
			}
		}
	}
	// Variables without a default may be empty: unset.
	if _, err := config.FromMap(map[string]string{"NATS_URL": "", "PII_MASTER_KEY_FILE": "", "AUTH_TOKENS_FILE": ""}); err != nil {
		t.Errorf("empty variables without a default: %v", err)
	}
}
