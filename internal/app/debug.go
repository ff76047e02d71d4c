package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startDebug serves net/http/pprof on addr (DEBUG_ADDR, validated to be
// loopback) on a mux of its own, so the profiles never appear on the API's
// listener. It returns the address it listens on and a function that stops
// it. A profile or trace runs for as long as its seconds parameter asks,
// so the server has no write timeout.
func startDebug(addr string, log *slog.Logger) (string, func(), error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("DEBUG_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(log)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug listener stopped", "err", err)
		}
	}()
	log.Info("profiling on /debug/pprof/", "debug", lis.Addr().String())
	return lis.Addr().String(), func() {
		// Profiles in progress are cut short: they are diagnostics, and
		// shutdown must not wait the 30 s a CPU profile may ask for.
		_ = srv.Close()
		<-done
	}, nil
}
