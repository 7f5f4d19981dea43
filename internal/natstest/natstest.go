// Package natstest starts a real in-process nats-server with JetStream for
// tests: random port, storage in t.TempDir(), shut down by t.Cleanup.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/internal/embednats"
)

// Server is a running test server.
type Server struct {
	*server.Server
	URL string
}

// Start runs a JetStream server for the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := embednats.Start(embednats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return &Server{Server: s, URL: s.ClientURL()}
}

// Connect opens a client connection closed by t.Cleanup.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
