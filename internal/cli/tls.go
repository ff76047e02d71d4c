package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
)

// clientTLS builds the client's TLS configuration. A client certificate
// needs both --cert and --key; giving one without the other is an error
// naming the missing flag.
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no certificate found in --ca file")
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile == "":
		return nil, errors.New("--cert needs --key")
	case keyFile != "" && certFile == "":
		return nil, errors.New("--key needs --cert")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
