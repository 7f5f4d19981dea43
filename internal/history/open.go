package history

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tripline/tripline/internal/chserver"
	"github.com/tripline/tripline/internal/config"
)

// Store is an open, migrated history database, and the local server it
// started, if any.
type Store struct {
	*Schema
	Server *chserver.Server // nil when connected to an existing server
}

// Open connects to the configured ClickHouse (starting the embedded child
// server when the configuration asks for one) and migrates the schema.
func Open(ctx context.Context, c config.ClickHouse) (*Store, error) {
	st := &Store{}
	addr := c.Addr
	if addr == "" {
		if c.Embedded == nil {
			return nil, errors.New("history: no ClickHouse configured (clickhouse.addr or clickhouse.embedded)")
		}
		srv, err := chserver.Start(ctx, chserver.Options{Dir: c.Embedded.Dir})
		if err != nil {
			return nil, err
		}
		st.Server = srv
		addr = srv.Addr()
	}
	conn, err := Connect(c, addr)
	if err != nil {
		st.Close()
		return nil, err
	}
	s, err := Migrate(ctx, conn, c.Database, SchemaOptions{RetentionDays: c.RetentionDays})
	if err != nil {
		conn.Close()
		st.Close()
		return nil, err
	}
	st.Schema = s
	return st, nil
}

// Close closes the connection and stops the embedded server.
func (st *Store) Close() error {
	if st.Schema != nil {
		st.Conn.Close()
	}
	if st.Server != nil {
		return st.Server.Stop()
	}
	return nil
}

// Connect opens a connection pool to addr with the configuration's
// credentials and TLS settings. The password is read from its file and
// goes nowhere else.
func Connect(c config.ClickHouse, addr string) (driver.Conn, error) {
	opts := &clickhouse.Options{
		Addr:            strings.Split(addr, ","),
		Auth:            clickhouse.Auth{Database: "default", Username: c.Username},
		DialTimeout:     5 * time.Second,
		ReadTimeout:     60 * time.Second,
		MaxOpenConns:    16,
		MaxIdleConns:    8,
		ConnMaxLifetime: time.Hour,
		Compression:     &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("history: clickhouse.password_file: %w", err)
		}
		opts.Auth.Password = strings.TrimSpace(string(b))
	}
	if c.TLS.CA != "" || c.TLS.Cert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.TLS.CA != "" {
			pem, err := os.ReadFile(c.TLS.CA)
			if err != nil {
				return nil, fmt.Errorf("history: clickhouse.tls.ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("history: clickhouse.tls.ca: no certificate in %s", c.TLS.CA)
			}
		}
		if c.TLS.Cert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
			if err != nil {
				return nil, fmt.Errorf("history: clickhouse.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts.TLS = tc
	}
	return clickhouse.Open(opts)
}
