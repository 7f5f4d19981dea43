package chserver_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tripline/tripline/internal/chserver"
	"github.com/tripline/tripline/internal/chtest"
)

// The server starts (from a data directory whose name would break XML),
// answers, stops, restarts on the same ports with its data intact, and
// leaves no process behind.
func TestStartStopRestart(t *testing.T) {
	ctx := context.Background()
	s, err := chserver.Start(ctx, chserver.Options{Dir: filepath.Join(t.TempDir(), "a&b<c")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	conn := chtest.Open(t, s.Addr(), "default")
	if err := conn.Exec(ctx, "CREATE TABLE kept (x UInt8) ENGINE = MergeTree ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	// Inserts go through a batch: 18.16 answers INSERT … VALUES sent as a
	// plain statement with a block the client does not expect.
	b, err := conn.PrepareBatch(ctx, "INSERT INTO kept (x)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(uint8(7)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("server process %d still alive after Stop", pid)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("ping succeeded against a stopped server")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn2 := chtest.Open(t, s.Addr(), "default")
	var x uint8
	if err := conn2.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 7 {
		t.Fatalf("after restart: x=%d err=%v", x, err)
	}
	if s.Restart(ctx) == nil {
		t.Fatal("Restart of a running server succeeded")
	}
	s.Kill()
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Fatal(err)
	}
}
