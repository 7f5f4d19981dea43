// Package embednats runs an in-process nats-server with JetStream: the
// default for `tripline dev` and for integration tests. Production uses a
// NATS cluster (deploy/nats).
package embednats

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for an embedded server.
type Options struct {
	// StoreDir holds JetStream's file storage.
	StoreDir string
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// ServerName; a cluster needs unique names.
	ServerName string
	// Configure, if set, adjusts the server options before start (accounts,
	// cluster routes, TLS…).
	Configure func(*server.Options)
}

// Start runs a server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.Port == 0 {
		o.Port = -1
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		// Leave room for large batches of events.
		MaxPayload: 8 << 20,
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s (store %s)", o.StoreDir)
	}
	return s, nil
}
