// Package natsauth holds the tests of deploy/nats/auth.conf, the example
// authorization of Tripline's NATS cluster (see docs/nats.md), and Start, which
// runs an in-process nats-server from such a configuration file.
package natsauth

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tripline/tripline/internal/embednats"
)

// Start loads a nats-server configuration file (accounts, users,
// permissions…) and runs it in process with JetStream on a random local port,
// storing in storeDir. Variables the file reads from the environment must be
// set before the call.
func Start(configFile, storeDir string) (*server.Server, error) {
	loaded, err := server.ProcessConfigFile(configFile)
	if err != nil {
		return nil, fmt.Errorf("nats config %s: %w", configFile, err)
	}
	return embednats.Start(embednats.Options{
		StoreDir: storeDir,
		Port:     -1,
		Configure: func(o *server.Options) {
			host, port, maxPayload := o.Host, o.Port, o.MaxPayload
			*o = *loaded
			o.Host, o.Port, o.MaxPayload = host, port, maxPayload
			o.JetStream, o.StoreDir = true, storeDir
			o.NoLog, o.NoSigs = true, true
			o.HTTPPort, o.Cluster.Port = 0, 0
		},
	})
}
