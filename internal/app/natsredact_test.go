package app_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/orderstream/orderstream/internal/app"
	"github.com/orderstream/orderstream/internal/app/apptest"
	"github.com/orderstream/orderstream/internal/testlog"
)

// A password in NATS_URL is in no log line and no start-up error, also
// when the URL has no scheme ("user:pass@host:port", which nats.go dials
// as nats://user:pass@host:port), is not the first of the list, or is
// malformed.
func TestExternalNATSURLPasswordIsNotLogged(t *testing.T) {
	const password = "s3cret-pw"
	ns := securedNATS(t, func(o *server.Options) { o.Username, o.Password = "alice", password })
	host := ns.Addr().String()

	runLogged := func(t *testing.T, natsURL string) (log string, ready bool, err error) {
		t.Helper()
		cfg := apptest.Config(t, map[string]string{"NATS_URL": natsURL, "ROLES": "command", "NATS_CONNECT_TIMEOUT": "10s"})
		var out testlog.Buffer
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- app.Run(ctx, cfg, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})),
				func(app.Addrs) { ready = true; cancel() })
		}()
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			cancel()
			<-done
			t.Fatalf("ordersd with NATS_URL %s neither ready nor failed after 30 s", natsURL)
		}
		return out.String(), ready, err
	}

	for name, natsURL := range map[string]string{
		"without a scheme":   "alice:" + password + "@" + host,
		"second of the list": "nats://alice:" + password + "@" + host + ", alice:" + password + "@" + host,
		"with a scheme":      "nats://alice:" + password + "@" + host,
		"malformed":          "alice:" + password + "@127.0.0.1:42x2",
		"malformed password": "nats://alice:" + password + "/x@" + host,
	} {
		t.Run(name, func(t *testing.T) {
			log, ready, err := runLogged(t, natsURL)
			malformed := strings.HasPrefix(name, "malformed")
			if ready == malformed {
				t.Fatalf("ready %v with NATS_URL %s (err %v)", ready, natsURL, err)
			}
			if ready && !strings.Contains(log, "external ") {
				t.Fatalf("no start-up line naming the external NATS:\n%s", log)
			}
			if err != nil && (!malformed || !strings.Contains(err.Error(), "NATS_URL")) {
				t.Fatalf("NATS_URL %s: %v", natsURL, err)
			}
			for _, text := range []string{log, errText(err)} {
				if strings.Contains(text, password) {
					t.Errorf("the password is shown:\n%s", text)
				}
			}
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
