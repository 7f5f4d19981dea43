// Package investigate answers the questions an analyst asks of Tripline's
// history in ClickHouse: what did this session (agent, task, principal) do,
// who touched this resource, which agents stand out, which decisions fired
// and which revocations are in force, and why a decision was taken and how
// fast the enforcers applied it.
//
// Every query is scoped by tenant and bounded by a period [From, To) and a
// limit (a default when zero, an error above the maximum). Values reach the
// SQL only as bound arguments; table names come from history.Schema.T.
//
// The events table is sorted by (tenant, agent, session, ts_ms, id), so a
// query that knows the agents reads a few ranges of the primary key. For a
// session, task, principal, resource or destination the agents come first
// from event_keys, the index the materialized view keeps from each of those
// values to the agents that used it per day.
//
// ReplacingMergeTree folds duplicate rows only when it merges parts, so
// every query deduplicates itself (LIMIT 1 BY id, uniqExact(id), or a
// GROUP BY id before summing): results are exact whether or not the
// server has merged.
package investigate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/internal/history"
)

// ErrInvalid is matched (errors.Is) by every error about the question
// rather than the database: a bad period, limit or filter. The CLI exits
// with code 2 on it and the API answers 400.
var ErrInvalid = errors.New("invalid query")

// ErrNotFound is returned by Explain when no decision or command has the id.
var ErrNotFound = errors.New("not found")

type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Limits: the number of rows a query returns when it is given no limit,
// and the most it may be asked for.
const (
	DefaultTimelineLimit = 1000
	MaxTimelineLimit     = 10000

	DefaultTouchedLimit = 1000
	MaxTouchedLimit     = 10000

	DefaultTopLimit = 20
	MaxTopLimit     = 1000

	DefaultDecisionsLimit = 100
	MaxDecisionsLimit     = 10000

	DefaultRevocationsLimit = 100
	MaxRevocationsLimit     = 10000
)

// Periods: the longest period a query over events may cover, and over
// decisions and revocations (the audit log is kept longer).
const (
	MaxEventPeriod  = 31 * 24 * time.Hour
	MaxRecordPeriod = 400 * 24 * time.Hour
	// DefaultSince is the period when none is given: the last 24 hours.
	DefaultSince = 24 * time.Hour
)

// Bounds that keep one question from becoming an expensive one.
const (
	// MaxKeyAgents is the most agents event_keys may name for one session,
	// task, principal, resource or destination in the period; above it the
	// query asks for a shorter period.
	MaxKeyAgents = 10000
	// MaxValueLen is the longest filter value accepted.
	MaxValueLen = 4096
	// QueryTimeout bounds each statement on the server (max_execution_time).
	QueryTimeout = 30 * time.Second
)

// Evidence window: Explain reads a decision's evidence events from this
// long before the decision (or its window anchor, if earlier) to this long
// after it.
const (
	EvidenceBefore = 24 * time.Hour
	EvidenceAfter  = 5 * time.Minute
	// maxEvidence bounds the evidence ids read for one decision.
	maxEvidence = 1000
	// maxCommands bounds the commands read for one decision.
	maxCommands = 1000
)

// Options configure a Querier.
type Options struct {
	// Now is the clock that decides whether a revocation is still in
	// force and where a relative period ends. Default time.Now.
	Now func() time.Time
	// Log receives the errors the HTTP handlers hide from callers.
	Log zerolog.Logger
}

// Querier runs the investigation queries on a history database. It is safe
// for concurrent use.
type Querier struct {
	s   *history.Schema
	now func() time.Time
	log zerolog.Logger
}

// New returns a Querier over the tables of s.
func New(s *history.Schema, o Options) *Querier {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Querier{s: s, now: o.Now, log: o.Log}
}

// Period is the half-open time range [From, To).
type Period struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// ParsePeriod reads a period as the CLI and the API take it: since is a
// duration back from now ("90m", "24h", "7d"); from and to are RFC 3339
// times. since and from exclude each other; to defaults to now; nothing at
// all means the last DefaultSince.
func ParsePeriod(since, from, to string, now time.Time) (Period, error) {
	now = now.UTC().Truncate(time.Millisecond)
	p := Period{From: now.Add(-DefaultSince), To: now}
	if since != "" && from != "" {
		return p, invalid("give since or from, not both")
	}
	if to != "" {
		t, err := time.Parse(time.RFC3339Nano, to)
		if err != nil {
			return p, invalid("to %q is not an RFC 3339 time such as 2026-11-28T12:00:00Z", to)
		}
		p.To = t.UTC()
		p.From = p.To.Add(-DefaultSince)
	}
	switch {
	case since != "":
		d, err := ParseSince(since)
		if err != nil {
			return p, err
		}
		p.From = p.To.Add(-d)
	case from != "":
		t, err := time.Parse(time.RFC3339Nano, from)
		if err != nil {
			return p, invalid("from %q is not an RFC 3339 time such as 2026-11-28T00:00:00Z", from)
		}
		p.From = t.UTC()
	}
	return p, nil
}

// ParseSince reads a positive duration: Go syntax ("90m", "1h30m") or a
// number of days ("7d").
func ParseSince(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 || days > 36500 {
			return 0, invalid("since %q is not a duration such as 90m, 24h or 7d", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, invalid("since %q is not a duration such as 90m, 24h or 7d", s)
		}
	}
	if d <= 0 {
		return 0, invalid("since %q must be positive", s)
	}
	return d, nil
}

// check validates the period against the longest one allowed.
func (p Period) check(max time.Duration) error {
	if p.From.IsZero() || p.To.IsZero() {
		return invalid("the period needs a start and an end")
	}
	if !p.From.Before(p.To) {
		return invalid("the period is empty: from %s is not before to %s", fmtTime(p.From), fmtTime(p.To))
	}
	if p.To.Sub(p.From) > max {
		return invalid("the period %s to %s is longer than the maximum of %d days: narrow it",
			fmtTime(p.From), fmtTime(p.To), int(max/(24*time.Hour)))
	}
	return nil
}

// fromMS and toMS are the bounds in unix milliseconds.
func (p Period) fromMS() int64 { return p.From.UnixMilli() }
func (p Period) toMS() int64   { return p.To.UnixMilli() }

// days are the first and last partition dates (UTC) the period touches.
func (p Period) days() (string, string) {
	last := p.To.Add(-time.Millisecond)
	return p.From.UTC().Format(time.DateOnly), last.UTC().Format(time.DateOnly)
}

// limit returns the limit to use: def when n is zero, an error when n is
// negative or above max.
func limit(n, def, max int) (int, error) {
	switch {
	case n == 0:
		return def, nil
	case n < 0:
		return 0, invalid("limit %d must be positive", n)
	case n > max:
		return 0, invalid("limit %d is above the maximum of %d", n, max)
	}
	return n, nil
}

// checkTenant validates the tenant every query is scoped by.
func checkTenant(t string) error {
	if t == "" {
		return invalid("a tenant is required")
	}
	return checkValue("tenant", t)
}

// checkValue bounds the length of a filter value.
func checkValue(name, v string) error {
	if len(v) > MaxValueLen {
		return invalid("%s is longer than %d bytes", name, MaxValueLen)
	}
	return nil
}

// oneOf checks that v, when set, is one of allowed.
func oneOf(name, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return invalid("%s %q is not one of %s", name, v, strings.Join(allowed, ", "))
}

// where collects the conditions of a WHERE clause. Conditions are SQL
// written in this package with ? placeholders; values travel in args.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

// eq adds col = v when v is set.
func (w *where) eq(col, v string) {
	if v != "" {
		w.add(col+" = ?", v)
	}
}

// contains adds a case-sensitive substring match when v is set.
func (w *where) contains(col, v string) {
	if v != "" {
		w.add("position("+col+", ?) > 0", v)
	}
}

// in adds col IN (?, …) for the values (which must not be empty).
func (w *where) in(col string, vals []string) {
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	w.add(col+" IN ("+placeholders(len(vals))+")", args...)
}

// period adds the time range on a millisecond column and the partitions
// (the date column) it touches.
func (w *where) period(col string, p Period) {
	first, last := p.days()
	w.add(col+" >= ? AND "+col+" < ?", p.fromMS(), p.toMS())
	w.add("date >= toDate(?) AND date <= toDate(?)", first, last)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return "\nWHERE " + strings.Join(w.conds, "\n  AND ")
}

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// ctx bounds a statement's execution time on the server.
func (q *Querier) ctx(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_execution_time": int(QueryTimeout / time.Second),
	}))
}

// agentsFor returns the agents event_keys names for a value of kind
// (session, task, principal, resource, destination) in the period; with
// contains, for every value containing it.
func (q *Querier) agentsFor(ctx context.Context, tenant, kind, value string, contains bool, p Period) ([]string, error) {
	var w where
	w.add("tenant = ?", tenant)
	w.add("kind = ?", kind)
	if contains {
		w.contains("value", value)
	} else {
		w.add("value = ?", value)
	}
	first, last := p.days()
	w.add("date >= toDate(?) AND date <= toDate(?)", first, last)
	agents, err := collect(ctx, q, "look up agents by "+kind, "SELECT DISTINCT agent FROM "+q.s.T(history.TableEventKeys)+w.String()+
		"\nORDER BY agent LIMIT ?", append(w.args, MaxKeyAgents+1), func(r driver.Rows, a *string) error { return r.Scan(a) })
	if err != nil {
		return nil, err
	}
	if len(agents) > MaxKeyAgents {
		return nil, invalid("more than %d agents used this %s in the period: narrow the period", MaxKeyAgents, kind)
	}
	return agents, nil
}

// fmtTime is how times are shown: RFC 3339 in UTC, to the millisecond.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// msTime turns a millisecond column into a time (zero for 0).
func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// TooExpensive reports whether err is the server giving up on a query that
// ran too long or needed too much memory (or the context's deadline): the
// caller should narrow the period or the filters.
func TooExpensive(err error) bool {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		// TIMEOUT_EXCEEDED, MEMORY_LIMIT_EXCEEDED, TOO_MANY_ROWS_OR_BYTES
		return ex.Code == 159 || ex.Code == 241 || ex.Code == 396
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// collect runs a query and scans each row into a T with scan; what names
// the query in errors.
func collect[T any](ctx context.Context, q *Querier, what, sql string, args []any, scan func(driver.Rows, *T) error) ([]T, error) {
	rows, err := q.s.Conn.Query(q.ctx(ctx), sql, args...)
	if err != nil {
		return nil, fmt.Errorf("investigate: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var x T
		if err := scan(rows, &x); err != nil {
			return nil, fmt.Errorf("investigate: %s: %w", what, err)
		}
		out = append(out, x)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("investigate: %s: %w", what, err)
	}
	return out, nil
}

// truncate cuts xs, read with LIMIT n+1, to n and says whether it did.
func truncate[T any](xs []T, n int) ([]T, bool) {
	if len(xs) > n {
		return xs[:n], true
	}
	return xs, false
}
