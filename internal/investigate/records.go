package investigate

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/pipeline/enforce"
)

// DecisionQuery asks for the decisions of a period, newest first.
type DecisionQuery struct {
	Tenant  string
	Period  Period
	Rule    string
	Agent   string
	Session string
	Mode    string // shadow or enforce
	Action  string // alert, revoke or hold
	Limit   int    // default DefaultDecisionsLimit, at most MaxDecisionsLimit
}

// Decisions is the answer to a DecisionQuery.
type Decisions struct {
	Tenant    string               `json:"tenant"`
	Period    Period               `json:"period"`
	Decisions []detectors.Decision `json:"decisions"`
	Limit     int                  `json:"limit"`
	Truncated bool                 `json:"truncated"`
}

// decisionSelect is the column list scanDecision reads.
const decisionSelect = `id, ts_ms, tenant, rule, rule_version, severity, tags, mode, action, scope, group_key,
agent, instance, session, task, principal, credential, tool, parent_agent, event_id, evidence,
agg.name, agg.value, agg.op, agg.threshold, agg.has_threshold, suppressed, anchor_ms, reason, guard_rail`

func scanDecision(rows driver.Rows, d *detectors.Decision) error {
	var (
		ms      int64
		names   []string
		values  []float64
		ops     []string
		ths     []float64
		hasThs  []uint8
		subject detectors.Subject
	)
	*d = detectors.Decision{}
	if err := rows.Scan(&d.ID, &ms, &d.Tenant, &d.Rule, &d.RuleVersion, &d.Severity, &d.Tags, &d.Mode, &d.Action,
		&d.Scope, &d.Group, &subject.Agent, &subject.Instance, &subject.Session, &subject.Task, &subject.Principal,
		&subject.Credential, &subject.Tool, &subject.ParentAgent, &d.EventID, &d.Evidence,
		&names, &values, &ops, &ths, &hasThs, &d.Suppressed, &d.Anchor, &d.Reason, &d.GuardRail); err != nil {
		return err
	}
	d.Time = time.UnixMilli(ms).UTC()
	d.Subject = subject
	if len(d.Tags) == 0 {
		d.Tags = nil
	}
	if len(d.Evidence) == 0 {
		d.Evidence = nil
	}
	for i, name := range names {
		v := detectors.Value{Name: name}
		if i < len(values) {
			v.Value = values[i]
		}
		if i < len(ops) {
			v.Op = ops[i]
		}
		if i < len(hasThs) && hasThs[i] == 1 && i < len(ths) {
			th := ths[i]
			v.Threshold = &th
		}
		d.Values = append(d.Values, v)
	}
	return nil
}

// Decisions lists the decisions of the period, newest first, each once.
// The decisions table is sorted by (tenant, ts_ms, id): the query reads
// the tenant's range for the period.
func (q *Querier) Decisions(ctx context.Context, dq DecisionQuery) (*Decisions, error) {
	n, err := limit(dq.Limit, DefaultDecisionsLimit, MaxDecisionsLimit)
	if err != nil {
		return nil, err
	}
	if err := checkTenant(dq.Tenant); err != nil {
		return nil, err
	}
	if err := dq.Period.check(MaxRecordPeriod); err != nil {
		return nil, err
	}
	if err := oneOf("mode", dq.Mode, "shadow", "enforce"); err != nil {
		return nil, err
	}
	if err := oneOf("action", dq.Action, "alert", enforce.KindRevoke, enforce.KindHold); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"rule": dq.Rule, "agent": dq.Agent, "session": dq.Session} {
		if err := checkValue(name, v); err != nil {
			return nil, err
		}
	}
	var w where
	w.add("tenant = ?", dq.Tenant)
	w.period("ts_ms", dq.Period)
	w.eq("rule", dq.Rule)
	w.eq("agent", dq.Agent)
	w.eq("session", dq.Session)
	w.eq("mode", dq.Mode)
	w.eq("action", dq.Action)
	sql := "SELECT " + decisionSelect + "\nFROM " + q.s.T(history.TableDecisions) + w.String() +
		"\nORDER BY ts_ms DESC, id\nLIMIT 1 BY id\nLIMIT ?"
	ds, err := collect(ctx, q, "decisions", sql, append(w.args, n+1), scanDecision)
	if err != nil {
		return nil, err
	}
	res := &Decisions{Tenant: dq.Tenant, Period: dq.Period, Decisions: []detectors.Decision{}, Limit: n}
	if ds != nil {
		res.Decisions = ds
	}
	res.Decisions, res.Truncated = truncate(res.Decisions, n)
	return res, nil
}

// Tables shows one row per decision.
func (d *Decisions) Tables() []Table {
	tb := Table{Title: "decisions", Columns: []Column{
		{Name: "time"}, {Name: "id"}, {Name: "rule"}, {Name: "version"}, {Name: "severity"}, {Name: "mode"},
		{Name: "action"}, {Name: "agent"}, {Name: "session"}, {Name: "values"}, {Name: "reason"},
	}}
	for _, x := range d.Decisions {
		tb.Rows = append(tb.Rows, []string{fmtTime(x.Time), x.ID, x.Rule, x.RuleVersion, x.Severity, x.Mode, x.Action,
			x.Subject.Agent, x.Subject.Session, fmtValues(x.Values), x.Reason})
	}
	tb.Empty = fmt.Sprintf("no decisions in tenant %s from %s to %s", d.Tenant, fmtTime(d.Period.From), fmtTime(d.Period.To))
	if d.Truncated {
		tb.Notes = append(tb.Notes, truncatedNote(d.Limit, "decisions", "newest"))
	}
	return []Table{tb}
}

// fmtValues shows a decision's values: "count=120 (> 100), share=0.5".
func fmtValues(vs []detectors.Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Name + "=" + fmtFloat(v.Value)
		if v.Threshold != nil {
			parts[i] += " (" + v.Op + " " + fmtFloat(*v.Threshold) + ")"
		}
	}
	return strings.Join(parts, ", ")
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// Revocation statuses.
const (
	StatusActive  = "active"  // in force now
	StatusLifted  = "lifted"  // ended by a lift command before it expired
	StatusExpired = "expired" // past its expiry
)

// RevocationQuery asks for the revocation, hold and lift commands issued
// in a period, newest first.
type RevocationQuery struct {
	Tenant string
	Period Period
	Kind   string // revoke, hold or lift
	Scope  string // session, instance, agent, task, principal, credential or tool
	Value  string // the subject within the scope
	Agent  string
	Status string // StatusActive, StatusLifted or StatusExpired (lifts have none)
	Limit  int    // default DefaultRevocationsLimit, at most MaxRevocationsLimit
}

// Revocation is a command with its status now.
type Revocation struct {
	enforce.Command
	// Status is active, lifted or expired; empty for a lift command.
	Status string `json:"status"`
	// LiftedAt is when the first lift of the command was issued.
	LiftedAt *time.Time `json:"lifted_at,omitempty"`
}

// Revocations is the answer to a RevocationQuery.
type Revocations struct {
	Tenant      string       `json:"tenant"`
	Period      Period       `json:"period"`
	Now         time.Time    `json:"now"` // when the statuses were computed
	Revocations []Revocation `json:"revocations"`
	Limit       int          `json:"limit"`
	Truncated   bool         `json:"truncated"`
}

// commandSelect is the column list scanCommand reads.
const commandSelect = `id, issued_ms, tenant, kind, scope, value, tool, agent, reason, rule, rule_version, decision,
evidence, tags, lifts, expires_ms, hold_until_ms, issuer, key_id`

// scanOneCommand is scanCommand without extra columns, for collect.
func scanOneCommand(rows driver.Rows, c *enforce.Command) error { return scanCommand(rows, c) }

// scanCommand reads a row selected with commandSelect (then extra columns).
func scanCommand(rows driver.Rows, c *enforce.Command, extra ...any) error {
	var issued, expires, hold int64
	*c = enforce.Command{}
	dest := []any{&c.ID, &issued, &c.Tenant, &c.Kind, &c.Scope, &c.Value, &c.Tool, &c.Agent, &c.Reason, &c.Rule,
		&c.RuleVersion, &c.Decision, &c.Evidence, &c.Tags, &c.Lifts, &expires, &hold, &c.Issuer, &c.KeyID}
	if err := rows.Scan(append(dest, extra...)...); err != nil {
		return err
	}
	c.IssuedAt, c.ExpiresAt, c.HoldUntil = msTime(issued), msTime(expires), msTime(hold)
	if len(c.Evidence) == 0 {
		c.Evidence = nil
	}
	if len(c.Tags) == 0 {
		c.Tags = nil
	}
	return nil
}

// status is a command's status at now given when it was first lifted
// (zero: never): whichever of the lift and the expiry came first.
func status(c *enforce.Command, lifted, now time.Time) string {
	if c.Kind == enforce.KindLift {
		return ""
	}
	expired := !c.ExpiresAt.IsZero() && !c.ExpiresAt.After(now)
	switch {
	case !lifted.IsZero() && (c.ExpiresAt.IsZero() || lifted.Before(c.ExpiresAt)):
		return StatusLifted
	case expired:
		return StatusExpired
	}
	return StatusActive
}

// Revocations lists the commands issued in the period, newest first, each
// once, with their status now: lifted when a lift command for it was
// issued (at any time up to now) before it expired, expired when its
// expiry has passed, active otherwise. The status is computed in the query
// (a join with the tenant's lifts), so a status filter and the limit agree.
func (q *Querier) Revocations(ctx context.Context, rq RevocationQuery) (*Revocations, error) {
	n, err := limit(rq.Limit, DefaultRevocationsLimit, MaxRevocationsLimit)
	if err != nil {
		return nil, err
	}
	if err := checkTenant(rq.Tenant); err != nil {
		return nil, err
	}
	if err := rq.Period.check(MaxRecordPeriod); err != nil {
		return nil, err
	}
	if err := oneOf("kind", rq.Kind, enforce.KindRevoke, enforce.KindHold, enforce.KindLift); err != nil {
		return nil, err
	}
	if err := oneOf("scope", rq.Scope, scopes...); err != nil {
		return nil, err
	}
	if err := oneOf("status", rq.Status, StatusActive, StatusLifted, StatusExpired); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"value": rq.Value, "agent": rq.Agent} {
		if err := checkValue(name, v); err != nil {
			return nil, err
		}
	}
	now := q.now().UTC()
	table := q.s.T(history.TableRevocations)

	var w where
	w.add("tenant = ?", rq.Tenant)
	w.period("issued_ms", rq.Period)
	w.eq("kind", rq.Kind)
	w.eq("scope", rq.Scope)
	w.eq("value", rq.Value)
	w.eq("agent", rq.Agent)

	// A lift is issued after what it lifts: only lifts from the start of
	// the period up to now matter.
	var lw where
	lw.add("tenant = ?", rq.Tenant)
	lw.add("kind = ?", enforce.KindLift)
	lw.add("lifts != ''")
	lw.add("issued_ms >= ? AND issued_ms <= ?", rq.Period.fromMS(), now.UnixMilli())
	lw.add("date >= toDate(?)", rq.Period.From.UTC().Format(time.DateOnly))

	var outer where
	outer.eq("status", rq.Status)

	args := []any{now.UnixMilli()}
	args = append(args, w.args...)
	args = append(args, lw.args...)
	args = append(args, outer.args...)
	args = append(args, n+1)
	sql := "SELECT " + commandSelect + ", lifted_ms, status\nFROM (\n" +
		"SELECT " + commandSelect + ", lifted_ms,\n" +
		"  multiIf(kind = 'lift', '',\n" +
		"    lifted_ms > 0 AND (expires_ms = 0 OR lifted_ms < expires_ms), 'lifted',\n" +
		"    expires_ms > 0 AND expires_ms <= ?, 'expired', 'active') AS status\n" +
		"FROM (\n" +
		"  SELECT " + commandSelect + "\n  FROM " + table + w.String() + "\n  ORDER BY issued_ms DESC, id\n  LIMIT 1 BY id)\n" +
		"ANY LEFT JOIN (\n" +
		"  SELECT lifts AS id, min(issued_ms) AS lifted_ms\n  FROM " + table + lw.String() + "\n  GROUP BY lifts)\n" +
		"USING id)" + outer.String() + "\nORDER BY issued_ms DESC, id\nLIMIT ?"
	rs, err := collect(ctx, q, "revocations", sql, args, func(rows driver.Rows, r *Revocation) error {
		var liftedMS int64
		if err := scanCommand(rows, &r.Command, &liftedMS, &r.Status); err != nil {
			return err
		}
		if liftedMS > 0 {
			t := msTime(liftedMS)
			r.LiftedAt = &t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := &Revocations{Tenant: rq.Tenant, Period: rq.Period, Now: now, Revocations: []Revocation{}, Limit: n}
	if rs != nil {
		res.Revocations = rs
	}
	res.Revocations, res.Truncated = truncate(res.Revocations, n)
	return res, nil
}

var scopes = []string{enforce.ScopeSession, enforce.ScopeInstance, enforce.ScopeAgent, enforce.ScopeTask,
	enforce.ScopePrincipal, enforce.ScopeCredential, enforce.ScopeTool}

// Tables shows one row per command.
func (r *Revocations) Tables() []Table {
	tb := commandTable("revocations")
	for i := range r.Revocations {
		tb.Rows = append(tb.Rows, commandRow(&r.Revocations[i]))
	}
	tb.Empty = fmt.Sprintf("no commands in tenant %s from %s to %s", r.Tenant, fmtTime(r.Period.From), fmtTime(r.Period.To))
	if r.Truncated {
		tb.Notes = append(tb.Notes, truncatedNote(r.Limit, "commands", "newest"))
	}
	return []Table{tb}
}

func commandTable(title string) Table {
	return Table{Title: title, Columns: []Column{
		{Name: "issued"}, {Name: "id"}, {Name: "kind"}, {Name: "scope"}, {Name: "value"}, {Name: "tool"},
		{Name: "status"}, {Name: "expires"}, {Name: "lifted"}, {Name: "lifts"}, {Name: "rule"}, {Name: "issuer"}, {Name: "reason"},
	}}
}

func commandRow(r *Revocation) []string {
	lifted := ""
	if r.LiftedAt != nil {
		lifted = fmtTime(*r.LiftedAt)
	}
	return []string{fmtTime(r.IssuedAt), r.ID, r.Kind, r.Scope, r.Value, r.Tool, r.Status, fmtTime(r.ExpiresAt),
		lifted, r.Lifts, r.Rule, r.Issuer, r.Reason}
}
