package history_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// Migrations apply on the real server, twice without error (idempotent),
// and record every version once.
func TestMigrateIdempotent(t *testing.T) {
	db := chtest.NewDB(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := history.Migrate(ctx, db.Conn, db.Database, history.SchemaOptions{RetentionDays: 30}); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Database+".schema_migrations FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != history.SchemaVersion() {
		t.Fatalf("migrations recorded: %d, want %d", n, history.SchemaVersion())
	}
	for _, table := range []string{"events", "event_keys", "decisions", "revocations", "acks", "dead_letters"} {
		var c uint64
		if err := db.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", db.Database, table).Scan(&c); err != nil || c != 1 {
			t.Errorf("table %s: count %d err %v", table, c, err)
		}
	}
}

func TestDialect(t *testing.T) {
	for _, c := range []struct {
		v             string
		ttl, lc, dt64 bool
	}{
		{"18.16.1", false, false, false},
		{"19.9.2.4", true, true, false},
		{"24.8.4.13", true, true, true},
	} {
		v, err := history.ParseVersion(c.v)
		if err != nil {
			t.Fatal(err)
		}
		d := history.DialectFor(v)
		if d.TTL != c.ttl || d.LowCardinality != c.lc || d.DateTime64 != c.dt64 {
			t.Errorf("%s: %+v", c.v, d)
		}
	}
	if _, err := history.ParseVersion("x"); err == nil {
		t.Error("ParseVersion(x) succeeded")
	}
}

// On a server without TTL, Retention drops partitions older than the
// retention period and keeps the rest.
func TestRetentionDropsOldPartitions(t *testing.T) {
	db := chtest.NewDB(t)
	ctx := context.Background()
	s, err := history.Migrate(ctx, db.Conn, db.Database, history.SchemaOptions{RetentionDays: 7})
	if err != nil {
		t.Fatal(err)
	}
	if s.Dialect.TTL {
		t.Logf("server %s has TTL; Retention is a no-op", s.Dialect.Version)
	}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	b, err := db.Conn.PrepareBatch(ctx, "INSERT INTO "+s.T("dead_letters")+" (tenant, received_ms, stream_seq, date, subject, reason, body)")
	if err != nil {
		t.Fatal(err)
	}
	for i, age := range []int{0, 3, 8, 30} {
		ts := now.AddDate(0, 0, -age)
		if err := b.Append("acme", ts.UnixMilli(), uint64(i), ts, "s", "r", "b"); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.Retention(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+s.T("dead_letters")).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if s.Dialect.TTL {
		return
	}
	if dropped != 2 || n != 2 {
		t.Fatalf("dropped %d partitions, %d rows left; want 2 and 2", dropped, n)
	}
}

// Events survive a write and a read unchanged, hostile strings included,
// attribute values under secret-looking keys excepted; the key index
// (event_keys) is filled by its materialized view.
func TestEventRoundTrip(t *testing.T) {
	db := chtest.NewDB(t)
	ctx := context.Background()
	s, err := history.Migrate(ctx, db.Conn, db.Database, history.SchemaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hostile := "x'); DROP TABLE events; --\"\\\x00\x01\n\t☃"
	in := testgen.Events(testgen.Config{Events: 200, Seed: 3})
	in[0].Resource = hostile
	in[0].Attrs = map[string]string{"note": hostile, "api_token": "sk-live-123"}
	in[0].Unknown = []byte(`{"future":"x'y"}`)
	in[1].TaskScope = []string{"a", hostile}
	if err := s.InsertEvents(ctx, in); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Conn.Query(ctx, "SELECT "+history.EventSelect+" FROM "+s.T("events")+" WHERE id = ?", in[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatal("event not found")
	}
	var got pipeline.Event
	if err := history.ScanEvent(rows, &got); err != nil {
		t.Fatal(err)
	}
	want := in[0]
	want.Attrs = map[string]string{"note": hostile, "api_token": history.Redacted}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	var agents uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+s.T("event_keys")+" WHERE kind = 'resource' AND value = ?", hostile).Scan(&agents); err != nil {
		t.Fatal(err)
	}
	if agents != 1 {
		t.Fatalf("event_keys rows for the hostile resource: %d", agents)
	}
}

// Decisions, commands and acks insert into their tables.
func TestInsertRecords(t *testing.T) {
	db := chtest.NewDB(t)
	ctx := context.Background()
	s, err := history.Migrate(ctx, db.Conn, db.Database, history.SchemaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	th := 100.0
	now := time.Now().UTC()
	d := detectors.Decision{ID: "d1", Time: now, Rule: "r", RuleVersion: "v1", Tenant: "acme", Mode: "enforce", Action: "revoke",
		Subject: detectors.Subject{Agent: "a", Session: "s"}, Values: []detectors.Value{{Name: "count", Value: 120, Op: ">", Threshold: &th}, {Name: "x", Value: 1}}}
	if err := s.InsertDecisions(ctx, []detectors.Decision{d}); err != nil {
		t.Fatal(err)
	}
	c := enforce.Command{ID: "c1", Kind: "revoke", Tenant: "acme", Scope: "session", Value: "s", Decision: "d1", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.InsertCommands(ctx, []enforce.Command{c}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertAcks(ctx, []enforce.Ack{{CommandID: "c1", Kind: "revoke", Tenant: "acme", Enforcer: "proxy-1", AppliedAt: now.Add(3 * time.Millisecond), IssuedAt: now}}); err != nil {
		t.Fatal(err)
	}
	var ths []float64
	var has []uint8
	if err := db.Conn.QueryRow(ctx, "SELECT agg.threshold, agg.has_threshold FROM "+s.T("decisions")+" WHERE id = 'd1'").Scan(&ths, &has); err != nil {
		t.Fatal(err)
	}
	if len(ths) != 2 || ths[0] != 100 || has[0] != 1 || has[1] != 0 {
		t.Fatalf("thresholds %v %v", ths, has)
	}
	var tte int64
	if err := db.Conn.QueryRow(ctx, "SELECT a.applied_ms - r.issued_ms FROM "+s.T("acks")+" AS a ANY INNER JOIN (SELECT id AS command_id, issued_ms FROM "+s.T("revocations")+") AS r USING command_id").Scan(&tte); err != nil {
		t.Fatal(err)
	}
	if tte != 3 {
		t.Fatalf("time to enforce %d ms", tte)
	}
}

// Open connects (with compression) and migrates a named database.
func TestOpen(t *testing.T) {
	db := chtest.NewDB(t)
	st, err := history.Open(context.Background(), config.ClickHouse{Addr: db.Addr, Database: db.Database + "_h"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer db.Conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db.Database+"_h")
	if err := st.InsertEvents(context.Background(), testgen.Events(testgen.Config{Events: 10})); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := st.Conn.QueryRow(context.Background(), "SELECT count() FROM "+st.T("events")).Scan(&n); err != nil || n != 10 {
		t.Fatalf("count %d err %v", n, err)
	}
	if _, err := history.Open(context.Background(), config.ClickHouse{Addr: db.Addr, Database: "bad-name; DROP"}); err == nil {
		t.Fatal("invalid database name accepted")
	}
}
