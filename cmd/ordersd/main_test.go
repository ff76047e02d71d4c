package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/internal/config"
)

func TestHealthcheckSubcommand(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	cfg, err := config.FromMap(map[string]string{"HTTP_ADDR": strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	if code := subcommand(t.Context(), cfg, "healthcheck"); code != 0 {
		t.Fatalf("healthy server: exit %d", code)
	}
	healthy = false
	if code := subcommand(t.Context(), cfg, "healthcheck"); code != 1 {
		t.Fatalf("unhealthy server: exit %d", code)
	}
	if code := subcommand(t.Context(), cfg, "dance"); code != 2 {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:8080": "127.0.0.1:8080", ":50051": "127.0.0.1:50051", "10.0.0.5:1": "10.0.0.5:1"} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}
