package main

import (
	"fmt"
	"os"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/spf13/pflag"

	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/history"
)

// chFlags are the flags of every command that reads Tripline's history.
type chFlags struct {
	addr, database         string
	username, passwordFile string
}

func (f *chFlags) add(fl *pflag.FlagSet) {
	addr := os.Getenv("CLICKHOUSE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:9000"
	}
	fl.StringVar(&f.addr, "clickhouse", addr, "ClickHouse native-protocol address host:port ($CLICKHOUSE_ADDR when set)")
	fl.StringVar(&f.database, "database", "tripline", "ClickHouse database that holds Tripline's history")
	fl.StringVar(&f.username, "username", "", "ClickHouse user (default: the server's default user)")
	fl.StringVar(&f.passwordFile, "password-file", "", "file holding the ClickHouse password")
}

// connect opens the connection the flags describe; a bad database name is
// a usage error.
func (f *chFlags) connect() (driver.Conn, error) {
	if !validDatabase(f.database) {
		return nil, usageError(fmt.Errorf("--database %q: letters, digits and _ only", f.database))
	}
	conn, err := history.Connect(config.ClickHouse{Database: f.database, Username: f.username, PasswordFile: f.passwordFile}, f.addr)
	if err != nil {
		return nil, usageError(err)
	}
	return conn, nil
}
