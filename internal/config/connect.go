package config

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tripline/tripline/internal/embednats"
)

// Conn is a NATS connection and, in dev mode, the embedded server behind it.
type Conn struct {
	*nats.Conn
	Server *server.Server // nil unless embedded
	URL    string
}

// Close closes the connection, then the embedded server.
func (c *Conn) Close() {
	if c.Conn != nil {
		_ = c.Drain()
		c.Conn.Close()
	}
	if c.Server != nil {
		c.Server.Shutdown()
		c.Server.WaitForShutdown()
	}
}

// Connect opens the connection the config describes, starting the embedded
// server first if there is one. It reconnects forever: a detector must
// outlive a NATS restart.
func (n NATS) Connect(extra ...nats.Option) (*Conn, error) {
	c := &Conn{URL: n.URL}
	if n.Embedded != nil && n.URL == "" {
		s, err := embednats.Start(embednats.Options{StoreDir: n.Embedded.StoreDir, Host: n.Embedded.Host, Port: n.Embedded.Port})
		if err != nil {
			return nil, err
		}
		c.Server, c.URL = s, s.ClientURL()
	}
	opts := []nats.Option{
		nats.Name(n.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("nats nkey: %w", err)
		}
		opts = append(opts, o)
	}
	if n.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(n.InboxPrefix))
	}
	if n.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(n.TLS.CA))
	}
	if n.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(n.TLS.Cert, n.TLS.Key))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.URL, err)
	}
	c.Conn = nc
	return c, nil
}
