// Package chtest gives tests a real ClickHouse: the server named by
// CLICKHOUSE_ADDR, or else one clickhouse-server child process per test
// binary (started on first use, stopped by Main, and killed by the kernel
// if the test binary dies first). Every test gets a database of its own.
//
// There is no skip: a test that needs ClickHouse fails when none can be
// found or started (`make test` installs the server package first).
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tripline/tripline/internal/chserver"
)

var (
	once    sync.Once
	shared  *chserver.Server
	dir     string
	addr    string
	initErr error
)

// Main runs the package's tests and then stops the shared server. Use it
// from TestMain: func TestMain(m *testing.M) { chtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// Addr returns the address of the shared ClickHouse server, starting it on
// first use.
func Addr(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		if a := os.Getenv("CLICKHOUSE_ADDR"); a != "" {
			addr = a
			return
		}
		dir, initErr = os.MkdirTemp("", "tripline-chtest-")
		if initErr != nil {
			return
		}
		shared, initErr = chserver.Start(context.Background(), chserver.Options{Dir: dir})
		if initErr == nil {
			addr = shared.Addr()
		}
	})
	if initErr != nil {
		t.Fatalf("ClickHouse for tests: %v", initErr)
	}
	return addr
}

// DB is a fresh database on the shared server, dropped when the test ends.
type DB struct {
	Addr     string
	Database string
	Conn     driver.Conn
}

// NewDB creates a database for the test and a connection to it.
func NewDB(t testing.TB) *DB {
	t.Helper()
	a := Addr(t)
	b := make([]byte, 6)
	rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	conn := Open(t, a, "default")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	})
	return &DB{Addr: a, Database: name, Conn: Open(t, a, name)}
}

// Open connects to addr and database; the connection is closed by t.Cleanup.
func Open(t testing.TB, addr, database string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{addr},
		Auth: clickhouse.Auth{Database: database},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// StartOwn starts a ClickHouse child process for this test alone (for
// tests that stop and restart it), stopped by t.Cleanup.
func StartOwn(t testing.TB) *chserver.Server {
	t.Helper()
	s, err := chserver.Start(context.Background(), chserver.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start ClickHouse: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}
