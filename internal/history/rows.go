package history

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tripline/tripline/pipeline"
)

// InList binds a list of values for `x IN ?`: clickhouse-go renders it as
// ('a', 'b', …), each value quoted and escaped. (A plain slice renders as
// an array literal, which 18.16 refuses after IN.) values must not be empty.
func InList[T any](values []T) clickhouse.GroupSet {
	v := make([]any, len(values))
	for i, x := range values {
		v[i] = x
	}
	return clickhouse.GroupSet{Value: v}
}

// Redacted replaces the value of an attribute whose key names a secret.
const Redacted = "[redacted]"

// secretKeys are substrings of attribute keys whose values are never
// stored: producers should not send secrets, and history must not keep
// one when they do.
var secretKeys = []string{"password", "passwd", "secret", "token", "authorization", "api_key", "apikey", "cookie", "private_key", "credential_value"}

// SecretKey reports whether an attribute key names a secret.
func SecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// eventCols holds one batch of events column by column, in EventColumns
// order, so that an insert is one columnar append per column.
type eventCols struct {
	tenant, agent, session         []string
	tsMS                           []int64
	id                             []string
	date                           []time.Time
	instance, parentAgent          []string
	depth                          []uint16
	principal, task                []string
	taskScope                      [][]string
	tool, action, actionRaw        []string
	resource, destination          []string
	bytesIn, bytesOut, records     []int64
	sensitivity, outcome, approval []string
	environment, credential, trace []string
	attrKeys, attrValues           [][]string
	extra                          []string
	seq                            []uint64
	receivedMS                     []int64
	decided                        []uint8
}

// grow makes room for n more rows, so that a batch is built without
// re-growing each column as it fills.
func (c *eventCols) grow(n int) {
	c.tenant = slices.Grow(c.tenant, n)
	c.agent = slices.Grow(c.agent, n)
	c.session = slices.Grow(c.session, n)
	c.tsMS = slices.Grow(c.tsMS, n)
	c.id = slices.Grow(c.id, n)
	c.date = slices.Grow(c.date, n)
	c.instance = slices.Grow(c.instance, n)
	c.parentAgent = slices.Grow(c.parentAgent, n)
	c.depth = slices.Grow(c.depth, n)
	c.principal = slices.Grow(c.principal, n)
	c.task = slices.Grow(c.task, n)
	c.taskScope = slices.Grow(c.taskScope, n)
	c.tool = slices.Grow(c.tool, n)
	c.action = slices.Grow(c.action, n)
	c.actionRaw = slices.Grow(c.actionRaw, n)
	c.resource = slices.Grow(c.resource, n)
	c.destination = slices.Grow(c.destination, n)
	c.bytesIn = slices.Grow(c.bytesIn, n)
	c.bytesOut = slices.Grow(c.bytesOut, n)
	c.records = slices.Grow(c.records, n)
	c.sensitivity = slices.Grow(c.sensitivity, n)
	c.outcome = slices.Grow(c.outcome, n)
	c.approval = slices.Grow(c.approval, n)
	c.environment = slices.Grow(c.environment, n)
	c.credential = slices.Grow(c.credential, n)
	c.trace = slices.Grow(c.trace, n)
	c.attrKeys = slices.Grow(c.attrKeys, n)
	c.attrValues = slices.Grow(c.attrValues, n)
	c.extra = slices.Grow(c.extra, n)
	c.seq = slices.Grow(c.seq, n)
	c.receivedMS = slices.Grow(c.receivedMS, n)
	c.decided = slices.Grow(c.decided, n)
}

// add appends one event. Attribute values whose key names a secret are
// replaced by Redacted.
func (c *eventCols) add(e *pipeline.Event, seq uint64, received time.Time, decided bool) {
	ms := e.Time.UnixMilli()
	c.tenant = append(c.tenant, e.Tenant)
	c.agent = append(c.agent, e.Agent)
	c.session = append(c.session, e.Session)
	c.tsMS = append(c.tsMS, ms)
	c.id = append(c.id, e.ID)
	c.date = append(c.date, dayOf(ms))
	c.instance = append(c.instance, e.Instance)
	c.parentAgent = append(c.parentAgent, e.ParentAgent)
	depth := e.DelegationDepth
	if depth < 0 {
		depth = 0
	} else if depth > 65535 {
		depth = 65535
	}
	c.depth = append(c.depth, uint16(depth))
	c.principal = append(c.principal, e.Principal)
	c.task = append(c.task, e.Task)
	c.taskScope = append(c.taskScope, nonNil(e.TaskScope))
	c.tool = append(c.tool, e.Tool)
	c.action = append(c.action, string(e.Action))
	c.actionRaw = append(c.actionRaw, e.ActionRaw)
	c.resource = append(c.resource, e.Resource)
	c.destination = append(c.destination, e.Destination)
	c.bytesIn = append(c.bytesIn, e.BytesIn)
	c.bytesOut = append(c.bytesOut, e.BytesOut)
	c.records = append(c.records, e.Records)
	c.sensitivity = append(c.sensitivity, e.Sensitivity)
	c.outcome = append(c.outcome, e.Outcome)
	c.approval = append(c.approval, e.Approval)
	c.environment = append(c.environment, e.Environment)
	c.credential = append(c.credential, e.Credential)
	c.trace = append(c.trace, e.Trace)
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	vals := make([]string, len(keys))
	for i, k := range keys {
		if SecretKey(k) {
			vals[i] = Redacted
		} else {
			vals[i] = e.Attrs[k]
		}
	}
	c.attrKeys = append(c.attrKeys, keys)
	c.attrValues = append(c.attrValues, vals)
	c.extra = append(c.extra, string(e.Unknown))
	c.seq = append(c.seq, seq)
	c.receivedMS = append(c.receivedMS, received.UnixMilli())
	var d uint8
	if decided {
		d = 1
	}
	c.decided = append(c.decided, d)
}

// columns returns the buffers in EventColumns order.
func (c *eventCols) columns() []any {
	return []any{
		c.tenant, c.agent, c.session, c.tsMS, c.id, c.date,
		c.instance, c.parentAgent, c.depth, c.principal, c.task, c.taskScope,
		c.tool, c.action, c.actionRaw, c.resource, c.destination,
		c.bytesIn, c.bytesOut, c.records,
		c.sensitivity, c.outcome, c.approval, c.environment, c.credential, c.trace,
		c.attrKeys, c.attrValues, c.extra,
		c.seq, c.receivedMS, c.decided,
	}
}

// insertSQL is the INSERT statement of a table and its columns (values
// travel as native columns, never inside the SQL).
func insertSQL(table string, cols []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ")"
}

// appendColumns sends column buffers as one batch.
func appendColumns(ctx context.Context, conn driver.Conn, query string, cols []any) error {
	b, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return err
	}
	for i, col := range cols {
		if err := b.Column(i).Append(col); err != nil {
			b.Abort()
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return b.Send()
}

// InsertEvents writes events straight to the events table (tests, benchmarks
// and imports; the writer is the normal path).
func (s *Schema) InsertEvents(ctx context.Context, events []pipeline.Event) error {
	var c eventCols
	c.grow(len(events))
	now := time.Now()
	for i := range events {
		c.add(&events[i], 0, now, false)
	}
	return appendColumns(ctx, s.Conn, insertSQL(s.T(TableEvents), EventColumns), c.columns())
}

// EventSelect is the column list that ScanEvent reads, in order.
const EventSelect = `id, ts_ms, tenant, agent, instance, parent_agent, delegation_depth, principal,
session, task, task_scope, tool, action, action_raw, resource, destination,
bytes_in, bytes_out, records, sensitivity, outcome, approval, environment,
credential, trace, attrs.key, attrs.value, extra`

// ScanEvent reads one row selected with EventSelect into e.
func ScanEvent(rows driver.Rows, e *pipeline.Event) error {
	var (
		ms         int64
		depth      uint16
		action     string
		keys, vals []string
		extra      string
	)
	*e = pipeline.Event{}
	if err := rows.Scan(&e.ID, &ms, &e.Tenant, &e.Agent, &e.Instance, &e.ParentAgent, &depth, &e.Principal,
		&e.Session, &e.Task, &e.TaskScope, &e.Tool, &action, &e.ActionRaw, &e.Resource, &e.Destination,
		&e.BytesIn, &e.BytesOut, &e.Records, &e.Sensitivity, &e.Outcome, &e.Approval, &e.Environment,
		&e.Credential, &e.Trace, &keys, &vals, &extra); err != nil {
		return err
	}
	e.Time = time.UnixMilli(ms).UTC()
	e.DelegationDepth = int(depth)
	e.Action = pipeline.Action(action)
	if len(e.TaskScope) == 0 {
		e.TaskScope = nil
	}
	if len(keys) > 0 && len(keys) == len(vals) {
		e.Attrs = make(map[string]string, len(keys))
		for i, k := range keys {
			e.Attrs[k] = vals[i]
		}
	}
	if extra != "" {
		e.Unknown = []byte(extra)
	}
	return nil
}

func dayOf(ms int64) time.Time {
	t := time.UnixMilli(ms).UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
