package api

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Server limits of HTTPServer.
const (
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout = 15 * time.Second
	IdleTimeout = 2 * time.Minute
	// MaxHeaderBytes bounds request headers (net/http adds 4 KiB of slack).
	MaxHeaderBytes = 16 << 10
	// ShutdownTimeout is how long Serve waits for requests in flight.
	ShutdownTimeout = 10 * time.Second
)

// HTTPServer returns an *http.Server serving s with every timeout and limit
// set: ReadHeaderTimeout, ReadTimeout, WriteTimeout (the request timeout
// plus ReadTimeout and a margin, so a timed-out request still gets its
// 503), IdleTimeout and MaxHeaderBytes; TLS 1.2 or later with the
// configured certificate. Its own errors (bad TLS handshakes and the like)
// go to the logger at debug level.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      s.opts.Timeout + ReadTimeout + 5*time.Second,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		TLSConfig:         s.tlsConf,
		ErrorLog:          log.New(debugWriter{s.log}, "", 0),
	}
}

// Serve serves on ln (HTTPS when TLS is configured) until ctx is done, then
// shuts down, waiting up to ShutdownTimeout for requests in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := s.HTTPServer()
	if s.tlsConf == nil && !loopback(ln.Addr()) {
		s.log.Warn().Str("listen", ln.Addr().String()).
			Msg("api: plain HTTP on a non-loopback address: bearer tokens cross the network in clear; configure TLS (docs/api.md)")
	}
	errc := make(chan error, 1)
	go func() {
		if s.tlsConf != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

func loopback(a net.Addr) bool {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// debugWriter logs net/http's server errors at debug level.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
