// Package history keeps Tripline's record in ClickHouse: every event,
// decision, revocation command and enforcer acknowledgement. It owns the
// schema (versioned migrations that work on ClickHouse 18.16, what Debian
// ships, and on current releases) and the writer that copies the JetStream
// streams into it.
//
// Times are unix milliseconds in Int64 columns named *_ms on every server
// version (18.16 has no DateTime64); each table also has a `date` column
// for partitioning and a `time` column (DateTime64(3) where the server has
// it, DateTime otherwise) computed from the milliseconds for people
// writing SQL by hand.
package history

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Version is a ClickHouse server version.
type Version struct{ Major, Minor int }

func (v Version) atLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// ParseVersion reads "18.16.1" or "24.8.4.13".
func ParseVersion(s string) (Version, error) {
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("history: cannot read ClickHouse version %q", s)
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("history: cannot read ClickHouse version %q", s)
	}
	return Version{maj, min}, nil
}

// Dialect is what the server supports, decided from its version.
type Dialect struct {
	Version Version
	// TTL: table TTL clauses (19.6+). Without it, Retention drops old
	// partitions.
	TTL bool
	// LowCardinality: dictionary-encoded strings (19.9+ without a setting).
	LowCardinality bool
	// DateTime64: millisecond date-times (20.1+).
	DateTime64 bool
}

// DialectFor returns the features of a server version.
func DialectFor(v Version) Dialect {
	return Dialect{
		Version:        v,
		TTL:            v.atLeast(19, 6),
		LowCardinality: v.atLeast(19, 9),
		DateTime64:     v.atLeast(20, 1),
	}
}

// lc is the type of a low-cardinality string column.
func (d Dialect) lc() string {
	if d.LowCardinality {
		return "LowCardinality(String)"
	}
	return "String"
}

// timeCol is the human-readable time column computed from ms.
func (d Dialect) timeCol(ms string) string {
	if d.DateTime64 {
		return "time DateTime64(3, 'UTC') MATERIALIZED toDateTime64(" + ms + " / 1000, 3, 'UTC')"
	}
	return "time DateTime MATERIALIZED toDateTime(intDiv(" + ms + ", 1000))"
}

// ttl is the TTL clause for a table partitioned by date, or "".
func (d Dialect) ttl(days int) string {
	if !d.TTL || days <= 0 {
		return ""
	}
	return fmt.Sprintf("TTL date + INTERVAL %d DAY", days)
}

// Tables.
const (
	TableEvents      = "events"
	TableEventKeys   = "event_keys"
	TableDecisions   = "decisions"
	TableRevocations = "revocations"
	TableAcks        = "acks"
	TableDeadLetters = "dead_letters"
	TableRuleChanges = "rule_changes"
	TableMigrations  = "schema_migrations"
)

// Tables partitioned by date, which Retention prunes.
var datedTables = []string{TableEvents, TableEventKeys, TableDecisions, TableRevocations, TableAcks, TableDeadLetters}

// EventColumns are the columns the writer fills in the events table, in
// insert order. The backtest and the queries read the same names.
var EventColumns = []string{
	"tenant", "agent", "session", "ts_ms", "id", "date",
	"instance", "parent_agent", "delegation_depth", "principal", "task", "task_scope",
	"tool", "action", "action_raw", "resource", "destination",
	"bytes_in", "bytes_out", "records",
	"sensitivity", "outcome", "approval", "environment", "credential", "trace",
	"attrs.key", "attrs.value", "extra",
	"stream_seq", "received_ms", "decided",
}

// migration is one schema step; its statements must be idempotent.
type migration struct {
	version int
	name    string
	stmts   func(d Dialect, o SchemaOptions) []string
}

// SchemaOptions shape the tables.
type SchemaOptions struct {
	// RetentionDays for events, decisions, acks and dead letters (0: keep
	// forever). Revocations are kept twice as long: they are the audit log.
	RetentionDays int
}

// The migrations, in order. Never edit an applied one: add another.
var migrations = []migration{
	{1, "events", func(d Dialect, o SchemaOptions) []string {
		// Sort key (tenant, agent, session, ts_ms, id): an agent's or a
		// session's timeline is a range of the primary key. ReplacingMergeTree
		// on that key folds a row written twice (same event, same key) into
		// one at merge time; the writer's redelivery check keeps duplicates
		// from being written in the first place (see writer.go).
		return []string{`CREATE TABLE IF NOT EXISTS events (
	tenant ` + d.lc() + `,
	agent String,
	session String,
	ts_ms Int64,
	id String,
	date Date,
	` + d.timeCol("ts_ms") + `,
	instance String,
	parent_agent String,
	delegation_depth UInt16,
	principal String,
	task String,
	task_scope Array(String),
	tool ` + d.lc() + `,
	action ` + d.lc() + `,
	action_raw String,
	resource String,
	destination String,
	bytes_in Int64,
	bytes_out Int64,
	records Int64,
	sensitivity ` + d.lc() + `,
	outcome ` + d.lc() + `,
	approval ` + d.lc() + `,
	environment ` + d.lc() + `,
	credential String,
	trace String,
	attrs Nested (key String, value String),
	extra String,
	stream_seq UInt64,
	received_ms Int64,
	decided UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY date
ORDER BY (tenant, agent, session, ts_ms, id)
` + d.ttl(o.RetentionDays)}
	}},
	{2, "event_keys", func(d Dialect, o SchemaOptions) []string {
		// An index from session, task, principal, resource, destination and
		// credential to the agents that used them, per day: the queries
		// look up the agents first and then read the events table by its
		// primary key. Filled by a materialized view on every insert.
		return []string{`CREATE TABLE IF NOT EXISTS event_keys (
	tenant ` + d.lc() + `,
	kind ` + d.lc() + `,
	value String,
	agent String,
	date Date,
	events UInt64
) ENGINE = SummingMergeTree(events)
PARTITION BY date
ORDER BY (tenant, kind, value, agent, date)
` + d.ttl(o.RetentionDays),
			`CREATE MATERIALIZED VIEW IF NOT EXISTS event_keys_mv TO event_keys AS
SELECT tenant, k.1 AS kind, k.2 AS value, agent, date, count() AS events
FROM events
ARRAY JOIN [('session', session), ('task', task), ('principal', principal),
            ('resource', resource), ('destination', destination), ('credential', credential)] AS k
WHERE k.2 != ''
GROUP BY tenant, kind, value, agent, date`}
	}},
	{3, "decisions", func(d Dialect, o SchemaOptions) []string {
		return []string{`CREATE TABLE IF NOT EXISTS decisions (
	tenant ` + d.lc() + `,
	ts_ms Int64,
	id String,
	date Date,
	` + d.timeCol("ts_ms") + `,
	rule String,
	rule_version String,
	severity ` + d.lc() + `,
	tags Array(String),
	mode ` + d.lc() + `,
	action ` + d.lc() + `,
	scope ` + d.lc() + `,
	group_key String,
	agent String,
	instance String,
	session String,
	task String,
	principal String,
	credential String,
	tool String,
	parent_agent String,
	event_id String,
	evidence Array(String),
	agg Nested (name String, value Float64, op String, threshold Float64, has_threshold UInt8),
	suppressed Int64,
	anchor_ms Int64,
	reason String,
	guard_rail String,
	body String,
	received_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY date
ORDER BY (tenant, ts_ms, id)
` + d.ttl(o.RetentionDays)}
	}},
	{4, "revocations", func(d Dialect, o SchemaOptions) []string {
		days := o.RetentionDays * 2
		return []string{`CREATE TABLE IF NOT EXISTS revocations (
	tenant ` + d.lc() + `,
	issued_ms Int64,
	id String,
	date Date,
	` + d.timeCol("issued_ms") + `,
	kind ` + d.lc() + `,
	scope ` + d.lc() + `,
	value String,
	tool String,
	agent String,
	reason String,
	rule String,
	rule_version String,
	decision String,
	evidence Array(String),
	tags Array(String),
	lifts String,
	expires_ms Int64,
	hold_until_ms Int64,
	issuer String,
	key_id String,
	received_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY date
ORDER BY (tenant, issued_ms, id)
` + d.ttl(days)}
	}},
	{5, "acks", func(d Dialect, o SchemaOptions) []string {
		return []string{`CREATE TABLE IF NOT EXISTS acks (
	tenant ` + d.lc() + `,
	command_id String,
	enforcer String,
	date Date,
	kind ` + d.lc() + `,
	applied_ms Int64,
	issued_ms Int64,
	` + d.timeCol("applied_ms") + `,
	received_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY date
ORDER BY (tenant, command_id, enforcer)
` + d.ttl(o.RetentionDays*2)}
	}},
	{6, "dead_letters", func(d Dialect, o SchemaOptions) []string {
		return []string{`CREATE TABLE IF NOT EXISTS dead_letters (
	tenant ` + d.lc() + `,
	received_ms Int64,
	stream_seq UInt64,
	date Date,
	` + d.timeCol("received_ms") + `,
	subject String,
	reason String,
	body String
) ENGINE = ReplacingMergeTree
PARTITION BY date
ORDER BY (tenant, received_ms, stream_seq)
` + d.ttl(o.RetentionDays)}
	}},
	{7, "rule_changes", func(d Dialect, o SchemaOptions) []string {
		// The change log of the rule sets pushed to the engine (one row per
		// revision of the rules bucket's active key), kept forever: it is
		// small, and it says which rules were in force when.
		return []string{`CREATE TABLE IF NOT EXISTS rule_changes (
	revision UInt64,
	hash String,
	ts_ms Int64,
	date Date,
	` + d.timeCol("ts_ms") + `,
	author String,
	comment String,
	previous String,
	rules UInt32,
	diff String,
	file_names Array(String),
	file_texts Array(String)
) ENGINE = ReplacingMergeTree
ORDER BY (revision, hash)`}
	}},
}

// Schema is a migrated database.
type Schema struct {
	Conn     driver.Conn
	Database string
	Dialect  Dialect
	Options  SchemaOptions
}

// Migrate creates the database if needed and applies every migration not
// yet recorded in schema_migrations. It is safe to run from several
// processes at once: every statement is idempotent.
func Migrate(ctx context.Context, conn driver.Conn, database string, o SchemaOptions) (*Schema, error) {
	if !ValidIdent(database) {
		return nil, fmt.Errorf("history: invalid database name %q (letters, digits and _ only)", database)
	}
	var vs string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&vs); err != nil {
		return nil, fmt.Errorf("history: server version: %w", err)
	}
	v, err := ParseVersion(vs)
	if err != nil {
		return nil, err
	}
	d := DialectFor(v)
	s := &Schema{Conn: conn, Database: database, Dialect: d, Options: o}
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+database); err != nil {
		return nil, fmt.Errorf("history: create database %s: %w", database, err)
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+database+`.`+TableMigrations+` (
	version UInt32,
	name String,
	applied_at DateTime
) ENGINE = ReplacingMergeTree ORDER BY version`); err != nil {
		return nil, fmt.Errorf("history: create %s: %w", TableMigrations, err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM "+database+"."+TableMigrations)
	if err != nil {
		return nil, fmt.Errorf("history: read migrations: %w", err)
	}
	for rows.Next() {
		var n uint32
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		applied[n] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, m := range migrations {
		if applied[uint32(m.version)] {
			continue
		}
		for _, stmt := range m.stmts(d, o) {
			if err := conn.Exec(ctx, qualify(stmt, database)); err != nil {
				return nil, fmt.Errorf("history: migration %d (%s): %w", m.version, m.name, err)
			}
		}
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+"."+TableMigrations+" (version, name, applied_at)")
		if err != nil {
			return nil, fmt.Errorf("history: record migration %d: %w", m.version, err)
		}
		if err := b.Append(uint32(m.version), m.name, time.Now().UTC()); err != nil {
			return nil, err
		}
		if err := b.Send(); err != nil {
			return nil, fmt.Errorf("history: record migration %d: %w", m.version, err)
		}
	}
	return s, nil
}

// SchemaVersion is the number of the last migration.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// T returns the qualified name of a table: "<database>.<table>".
func (s *Schema) T(table string) string { return s.Database + "." + table }

// qualify prefixes the tables a migration statement names with the database.
func qualify(stmt, db string) string {
	r := strings.NewReplacer(
		"CREATE TABLE IF NOT EXISTS ", "CREATE TABLE IF NOT EXISTS "+db+".",
		"CREATE MATERIALIZED VIEW IF NOT EXISTS ", "CREATE MATERIALIZED VIEW IF NOT EXISTS "+db+".",
		" TO event_keys ", " TO "+db+".event_keys ",
		"FROM events\n", "FROM "+db+".events\n",
	)
	return r.Replace(stmt)
}

// ValidIdent reports whether s can name a database or table in SQL as it
// is: letters, digits and '_', not starting with a digit, at most 64 bytes.
func ValidIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Retention drops the date partitions older than the retention period, on
// servers without TTL. Partition names are dates the server reports, so
// nothing from outside reaches the statement.
func (s *Schema) Retention(ctx context.Context, now time.Time) (dropped int, err error) {
	if s.Dialect.TTL || s.Options.RetentionDays <= 0 {
		return 0, nil
	}
	for _, table := range datedTables {
		days := s.Options.RetentionDays
		if table == TableRevocations || table == TableAcks {
			days *= 2
		}
		cutoff := now.UTC().AddDate(0, 0, -days).Format("2006-01-02")
		rows, err := s.Conn.Query(ctx, `SELECT DISTINCT partition_id FROM system.parts
WHERE database = ? AND table = ? AND active AND max_date < toDate(?)`, s.Database, table, cutoff)
		if err != nil {
			return dropped, fmt.Errorf("history: list partitions of %s: %w", table, err)
		}
		var parts []string
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return dropped, err
			}
			parts = append(parts, p)
		}
		rows.Close()
		for _, p := range parts {
			// p is a partition id such as 20261101, as system.parts reports it.
			if !isPartitionID(p) {
				continue
			}
			if err := s.Conn.Exec(ctx, "ALTER TABLE "+s.T(table)+" DROP PARTITION ID '"+p+"'"); err != nil {
				return dropped, fmt.Errorf("history: drop partition %s of %s: %w", p, table, err)
			}
			dropped++
		}
	}
	return dropped, nil
}

func isPartitionID(p string) bool {
	_, err := time.Parse("20060102", p)
	return len(p) == 8 && err == nil
}
