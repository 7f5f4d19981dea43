package history

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/pipeline/enforce"
)

// DecisionColumns are the columns of the decisions table the writer fills.
var DecisionColumns = []string{
	"tenant", "ts_ms", "id", "date", "rule", "rule_version", "severity", "tags", "mode", "action", "scope",
	"group_key", "agent", "instance", "session", "task", "principal", "credential", "tool", "parent_agent",
	"event_id", "evidence", "agg.name", "agg.value", "agg.op", "agg.threshold", "agg.has_threshold",
	"suppressed", "anchor_ms", "reason", "guard_rail", "body", "received_ms",
}

type decisionCols struct {
	tenant                                    []string
	tsMS                                      []int64
	id                                        []string
	date                                      []time.Time
	rule, version, severity                   []string
	tags                                      [][]string
	mode, action, scope, group                []string
	agent, instance, session, task, principal []string
	credential, tool, parent, eventID         []string
	evidence, aggName                         [][]string
	aggValue                                  [][]float64
	aggOp                                     [][]string
	aggThreshold                              [][]float64
	aggHas                                    [][]uint8
	suppressed, anchor                        []int64
	reason, guard, body                       []string
	received                                  []int64
}

func (c *decisionCols) add(d *detectors.Decision, body []byte, received time.Time) {
	ms := d.Time.UnixMilli()
	c.tenant = append(c.tenant, d.Tenant)
	c.tsMS = append(c.tsMS, ms)
	c.id = append(c.id, d.ID)
	c.date = append(c.date, dayOf(ms))
	c.rule = append(c.rule, d.Rule)
	c.version = append(c.version, d.RuleVersion)
	c.severity = append(c.severity, d.Severity)
	c.tags = append(c.tags, nonNil(d.Tags))
	c.mode = append(c.mode, d.Mode)
	c.action = append(c.action, d.Action)
	c.scope = append(c.scope, d.Scope)
	c.group = append(c.group, d.Group)
	c.agent = append(c.agent, d.Subject.Agent)
	c.instance = append(c.instance, d.Subject.Instance)
	c.session = append(c.session, d.Subject.Session)
	c.task = append(c.task, d.Subject.Task)
	c.principal = append(c.principal, d.Subject.Principal)
	c.credential = append(c.credential, d.Subject.Credential)
	c.tool = append(c.tool, d.Subject.Tool)
	c.parent = append(c.parent, d.Subject.ParentAgent)
	c.eventID = append(c.eventID, d.EventID)
	c.evidence = append(c.evidence, nonNil(d.Evidence))
	names := make([]string, len(d.Values))
	vals := make([]float64, len(d.Values))
	ops := make([]string, len(d.Values))
	ths := make([]float64, len(d.Values))
	has := make([]uint8, len(d.Values))
	for i, v := range d.Values {
		names[i], vals[i], ops[i] = v.Name, v.Value, v.Op
		if v.Threshold != nil {
			ths[i], has[i] = *v.Threshold, 1
		}
	}
	c.aggName = append(c.aggName, names)
	c.aggValue = append(c.aggValue, vals)
	c.aggOp = append(c.aggOp, ops)
	c.aggThreshold = append(c.aggThreshold, ths)
	c.aggHas = append(c.aggHas, has)
	c.suppressed = append(c.suppressed, d.Suppressed)
	c.anchor = append(c.anchor, d.Anchor)
	c.reason = append(c.reason, d.Reason)
	c.guard = append(c.guard, d.GuardRail)
	c.body = append(c.body, string(body))
	c.received = append(c.received, received.UnixMilli())
}

func (c *decisionCols) columns() []any {
	return []any{
		c.tenant, c.tsMS, c.id, c.date, c.rule, c.version, c.severity, c.tags, c.mode, c.action, c.scope,
		c.group, c.agent, c.instance, c.session, c.task, c.principal, c.credential, c.tool, c.parent,
		c.eventID, c.evidence, c.aggName, c.aggValue, c.aggOp, c.aggThreshold, c.aggHas,
		c.suppressed, c.anchor, c.reason, c.guard, c.body, c.received,
	}
}

// CommandColumns are the columns of the revocations table.
var CommandColumns = []string{
	"tenant", "issued_ms", "id", "date", "kind", "scope", "value", "tool", "agent", "reason", "rule",
	"rule_version", "decision", "evidence", "tags", "lifts", "expires_ms", "hold_until_ms", "issuer",
	"key_id", "received_ms",
}

type commandCols struct {
	tenant                                  []string
	issued                                  []int64
	id                                      []string
	date                                    []time.Time
	kind, scope, value, tool, agent, reason []string
	rule, version, decision                 []string
	evidence, tags                          [][]string
	lifts                                   []string
	expires, holdUntil                      []int64
	issuer, keyID                           []string
	received                                []int64
}

// add appends a command. The signature is not stored: the audit trail is
// the TL_REVOCATIONS stream, whose messages keep it.
func (c *commandCols) add(cmd *enforce.Command, received time.Time) {
	ms := cmd.IssuedAt.UnixMilli()
	c.tenant = append(c.tenant, cmd.Tenant)
	c.issued = append(c.issued, ms)
	c.id = append(c.id, cmd.ID)
	c.date = append(c.date, dayOf(ms))
	c.kind = append(c.kind, cmd.Kind)
	c.scope = append(c.scope, cmd.Scope)
	c.value = append(c.value, cmd.Value)
	c.tool = append(c.tool, cmd.Tool)
	c.agent = append(c.agent, cmd.Agent)
	c.reason = append(c.reason, cmd.Reason)
	c.rule = append(c.rule, cmd.Rule)
	c.version = append(c.version, cmd.RuleVersion)
	c.decision = append(c.decision, cmd.Decision)
	c.evidence = append(c.evidence, nonNil(cmd.Evidence))
	c.tags = append(c.tags, nonNil(cmd.Tags))
	c.lifts = append(c.lifts, cmd.Lifts)
	c.expires = append(c.expires, msOrZero(cmd.ExpiresAt))
	c.holdUntil = append(c.holdUntil, msOrZero(cmd.HoldUntil))
	c.issuer = append(c.issuer, cmd.Issuer)
	c.keyID = append(c.keyID, cmd.KeyID)
	c.received = append(c.received, received.UnixMilli())
}

func (c *commandCols) columns() []any {
	return []any{
		c.tenant, c.issued, c.id, c.date, c.kind, c.scope, c.value, c.tool, c.agent, c.reason, c.rule,
		c.version, c.decision, c.evidence, c.tags, c.lifts, c.expires, c.holdUntil, c.issuer,
		c.keyID, c.received,
	}
}

// AckColumns are the columns of the acks table.
var AckColumns = []string{"tenant", "command_id", "enforcer", "date", "kind", "applied_ms", "issued_ms", "received_ms"}

type ackCols struct {
	tenant, commandID, enforcer []string
	date                        []time.Time
	kind                        []string
	applied, issued, received   []int64
}

func (c *ackCols) add(a *enforce.Ack, received time.Time) {
	ms := a.AppliedAt.UnixMilli()
	c.tenant = append(c.tenant, a.Tenant)
	c.commandID = append(c.commandID, a.CommandID)
	c.enforcer = append(c.enforcer, a.Enforcer)
	c.date = append(c.date, dayOf(ms))
	c.kind = append(c.kind, a.Kind)
	c.applied = append(c.applied, ms)
	c.issued = append(c.issued, msOrZero(a.IssuedAt))
	c.received = append(c.received, received.UnixMilli())
}

func (c *ackCols) columns() []any {
	return []any{c.tenant, c.commandID, c.enforcer, c.date, c.kind, c.applied, c.issued, c.received}
}

// DeadLetterColumns are the columns of the dead_letters table.
var DeadLetterColumns = []string{"tenant", "received_ms", "stream_seq", "date", "subject", "reason", "body"}

// maxDeadLetterBody bounds what is kept of a dead-lettered message.
const maxDeadLetterBody = 16 << 10

type deadLetterCols struct {
	tenant   []string
	received []int64
	seq      []uint64
	date     []time.Time
	subject  []string
	reason   []string
	body     []string
}

func (c *deadLetterCols) add(tenant, subject, reason string, body []byte, seq uint64, received time.Time) {
	ms := received.UnixMilli()
	if len(body) > maxDeadLetterBody {
		body = body[:maxDeadLetterBody]
	}
	c.tenant = append(c.tenant, tenant)
	c.received = append(c.received, ms)
	c.seq = append(c.seq, seq)
	c.date = append(c.date, dayOf(ms))
	c.subject = append(c.subject, subject)
	c.reason = append(c.reason, reason)
	c.body = append(c.body, string(body))
}

func (c *deadLetterCols) columns() []any {
	return []any{c.tenant, c.received, c.seq, c.date, c.subject, c.reason, c.body}
}

// InsertDecisions writes decisions straight to the decisions table (tests
// and imports; the writer is the normal path).
func (s *Schema) InsertDecisions(ctx context.Context, ds []detectors.Decision) error {
	var c decisionCols
	now := time.Now()
	for i := range ds {
		body, _ := json.Marshal(&ds[i])
		c.add(&ds[i], body, now)
	}
	return appendColumns(ctx, s.Conn, insertSQL(s.T(TableDecisions), DecisionColumns), c.columns())
}

// InsertCommands writes revocation, hold and lift commands straight to the
// revocations table.
func (s *Schema) InsertCommands(ctx context.Context, cmds []enforce.Command) error {
	var c commandCols
	now := time.Now()
	for i := range cmds {
		c.add(&cmds[i], now)
	}
	return appendColumns(ctx, s.Conn, insertSQL(s.T(TableRevocations), CommandColumns), c.columns())
}

// InsertAcks writes enforcer acknowledgements straight to the acks table.
func (s *Schema) InsertAcks(ctx context.Context, acks []enforce.Ack) error {
	var c ackCols
	now := time.Now()
	for i := range acks {
		c.add(&acks[i], now)
	}
	return appendColumns(ctx, s.Conn, insertSQL(s.T(TableAcks), AckColumns), c.columns())
}

func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
