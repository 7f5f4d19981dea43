package investigate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/tripline/tripline/detectors"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// Explanation tells why a decision was taken and what came of it.
type Explanation struct {
	Tenant string `json:"tenant"`
	// ID is the id asked about: the decision's, or a command's.
	ID string `json:"id"`
	// Decision is nil when the command asked about was not issued from a
	// decision (an analyst's), or its decision is no longer kept.
	Decision *detectors.Decision `json:"decision"`
	// Evidence are the decision's event and sample evidence events, oldest
	// first; MissingEvidence the ids not found in the evidence window.
	Evidence        []pipeline.Event `json:"evidence"`
	MissingEvidence []string         `json:"missing_evidence,omitempty"`
	// EvidenceWindow is the period searched for the evidence events.
	EvidenceWindow *Period `json:"evidence_window,omitempty"`
	// Commands are the revocations and holds issued from the decision (or
	// the command asked about), oldest first, with their lifts and acks.
	Commands []ExplainedCommand `json:"commands"`
	Summary  Summary            `json:"summary"`
	Now      time.Time          `json:"now"` // when the statuses were computed
}

// ExplainedCommand is a command with the lifts that ended it and each
// enforcer's acknowledgement.
type ExplainedCommand struct {
	Revocation
	Acks     []Ack              `json:"acks"`
	LiftedBy []ExplainedCommand `json:"lifted_by,omitempty"`
}

// Ack is one enforcer's acknowledgement of a command.
type Ack struct {
	Enforcer  string    `json:"enforcer"`
	Kind      string    `json:"kind"`
	AppliedAt time.Time `json:"applied_at"`
	// TimeToEnforceMS is applied_at − the command's issued_at.
	TimeToEnforceMS int64 `json:"time_to_enforce_ms"`
}

// AckRef names one acknowledgement in a Summary.
type AckRef struct {
	Command         string    `json:"command"`
	Enforcer        string    `json:"enforcer"`
	AppliedAt       time.Time `json:"applied_at"`
	TimeToEnforceMS int64     `json:"time_to_enforce_ms"`
}

// Summary sums up the enforcement of the revocations and holds (not the
// lifts) of an Explanation.
type Summary struct {
	Commands int `json:"commands"` // revocations and holds
	Acked    int `json:"acked"`    // of those, acknowledged by at least one enforcer
	Acks     int `json:"acks"`
	// Enforcers that acknowledged, sorted.
	Enforcers []string `json:"enforcers"`
	// FirstAck is the earliest acknowledgement; SlowestAck the one with
	// the longest time to enforce.
	FirstAck   *AckRef `json:"first_ack,omitempty"`
	SlowestAck *AckRef `json:"slowest_ack,omitempty"`
	// Unacknowledged are the commands no enforcer acknowledged.
	Unacknowledged []string `json:"unacknowledged,omitempty"`
}

// Explain explains a decision, given its id or the id of a command issued
// from it: the decision (rule, version, severity, mode, action, reason,
// values against thresholds), its evidence events (read by id within the
// tenant and EvidenceBefore/EvidenceAfter around the decision), the
// revocation and hold commands issued from it, their lifts, and each
// enforcer's acknowledgement with its time to enforce. A lift's id
// explains what it lifted; an analyst's command, which has no decision, is
// explained alone.
func (q *Querier) Explain(ctx context.Context, tenant, id string) (*Explanation, error) {
	if err := checkTenant(tenant); err != nil {
		return nil, err
	}
	if id == "" {
		return nil, invalid("say which decision or command to explain (its id)")
	}
	if err := checkValue("id", id); err != nil {
		return nil, err
	}
	now := q.now().UTC()
	x := &Explanation{Tenant: tenant, ID: id, Evidence: []pipeline.Event{}, Commands: []ExplainedCommand{}, Now: now,
		Summary: Summary{Enforcers: []string{}}}
	d, err := q.decision(ctx, tenant, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	var cmds []enforce.Command
	if d == nil {
		c, err := q.command(ctx, tenant, id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("%w: no decision or command %q in tenant %q", ErrNotFound, id, tenant)
			}
			return nil, err
		}
		if c.Kind == enforce.KindLift && c.Lifts != "" {
			switch lifted, err := q.command(ctx, tenant, c.Lifts); {
			case err == nil:
				c = lifted
			case !errors.Is(err, ErrNotFound):
				return nil, err
			}
		}
		if c.Decision != "" {
			if d, err = q.decision(ctx, tenant, c.Decision); err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		if d == nil {
			cmds = []enforce.Command{*c}
		}
	}
	if d != nil {
		x.Decision = d
		if err := q.evidence(ctx, x); err != nil {
			return nil, err
		}
		if cmds, err = q.commandsOf(ctx, d); err != nil {
			return nil, err
		}
	}
	if x.Commands, err = q.explainCommands(ctx, tenant, cmds, now); err != nil {
		return nil, err
	}
	x.Summary = summarize(x.Commands)
	return x, nil
}

// decision reads one decision by id.
func (q *Querier) decision(ctx context.Context, tenant, id string) (*detectors.Decision, error) {
	ds, err := collect(ctx, q, "explain: read decision", "SELECT "+decisionSelect+"\nFROM "+q.s.T(history.TableDecisions)+
		"\nWHERE tenant = ? AND id = ?\nLIMIT 1", []any{tenant, id}, scanDecision)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, ErrNotFound
	}
	return &ds[0], nil
}

// command reads one command by id.
func (q *Querier) command(ctx context.Context, tenant, id string) (*enforce.Command, error) {
	cs, err := collect(ctx, q, "explain: read command", "SELECT "+commandSelect+"\nFROM "+q.s.T(history.TableRevocations)+
		"\nWHERE tenant = ? AND id = ?\nLIMIT 1", []any{tenant, id}, scanOneCommand)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, ErrNotFound
	}
	return &cs[0], nil
}

// evidence reads the decision's events by id, within its tenant and the
// evidence window.
func (q *Querier) evidence(ctx context.Context, x *Explanation) error {
	d := x.Decision
	var ids []string
	for _, id := range append([]string{d.EventID}, d.Evidence...) {
		if id != "" && !slices.Contains(ids, id) && len(ids) < maxEvidence {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	win := Period{From: d.Time.Add(-EvidenceBefore), To: d.Time.Add(EvidenceAfter)}
	if d.Anchor > 0 {
		if a := time.UnixMilli(d.Anchor).UTC(); a.Before(win.From) && d.Time.Sub(a) < MaxEventPeriod {
			win.From = a
		}
	}
	x.EvidenceWindow = &win
	var w where
	w.add("tenant = ?", d.Tenant)
	w.period("ts_ms", win)
	w.in("id", ids)
	evs, err := collect(ctx, q, "explain: read evidence", "SELECT "+history.EventSelect+"\nFROM "+q.s.T(history.TableEvents)+w.String()+
		"\nORDER BY ts_ms, id\nLIMIT 1 BY id", w.args, history.ScanEvent)
	if err != nil {
		return err
	}
	found := map[string]bool{}
	for _, e := range evs {
		found[e.ID] = true
	}
	x.Evidence = append(x.Evidence, evs...)
	for _, id := range ids {
		if !found[id] {
			x.MissingEvidence = append(x.MissingEvidence, id)
		}
	}
	return nil
}

// commandsOf reads the commands issued from a decision, oldest first.
func (q *Querier) commandsOf(ctx context.Context, d *detectors.Decision) ([]enforce.Command, error) {
	var w where
	w.add("tenant = ?", d.Tenant)
	w.add("decision = ?", d.ID)
	// Commands are issued after the decision's event time, give or take
	// late events: prune the partitions before the evidence window.
	from := d.Time.Add(-EvidenceBefore)
	w.add("issued_ms >= ?", from.UnixMilli())
	w.add("date >= toDate(?)", from.UTC().Format(time.DateOnly))
	return q.commands(ctx, w)
}

// commands reads the commands matching w, oldest first, each once.
func (q *Querier) commands(ctx context.Context, w where) ([]enforce.Command, error) {
	return collect(ctx, q, "explain: read commands", "SELECT "+commandSelect+"\nFROM "+q.s.T(history.TableRevocations)+w.String()+
		"\nORDER BY issued_ms, id\nLIMIT 1 BY id\nLIMIT ?", append(w.args, maxCommands), scanOneCommand)
}

// explainCommands adds to each command its lifts, its acknowledgements
// and its status at now.
func (q *Querier) explainCommands(ctx context.Context, tenant string, cmds []enforce.Command, now time.Time) ([]ExplainedCommand, error) {
	out := []ExplainedCommand{}
	if len(cmds) == 0 {
		return out, nil
	}
	ids := make([]string, len(cmds))
	earliest := cmds[0].IssuedAt
	for i, c := range cmds {
		ids[i] = c.ID
		if c.IssuedAt.Before(earliest) {
			earliest = c.IssuedAt
		}
	}
	var lw where
	lw.add("tenant = ?", tenant)
	lw.add("kind = ?", enforce.KindLift)
	lw.in("lifts", ids)
	lw.add("issued_ms >= ?", earliest.UnixMilli())
	lw.add("date >= toDate(?)", earliest.UTC().Format(time.DateOnly))
	lifts, err := q.commands(ctx, lw)
	if err != nil {
		return nil, err
	}
	ackIDs := slices.Clone(ids)
	for _, l := range lifts {
		ackIDs = append(ackIDs, l.ID)
	}
	acks, err := q.acks(ctx, tenant, ackIDs)
	if err != nil {
		return nil, err
	}
	explained := func(c enforce.Command) ExplainedCommand {
		ec := ExplainedCommand{Revocation: Revocation{Command: c}, Acks: []Ack{}}
		for _, a := range acks[c.ID] {
			a.TimeToEnforceMS = a.AppliedAt.Sub(c.IssuedAt).Milliseconds()
			ec.Acks = append(ec.Acks, a)
		}
		return ec
	}
	for _, c := range cmds {
		ec := explained(c)
		var lifted time.Time
		for _, l := range lifts {
			if l.Lifts != c.ID {
				continue
			}
			ec.LiftedBy = append(ec.LiftedBy, explained(l))
			if !l.IssuedAt.After(now) && (lifted.IsZero() || l.IssuedAt.Before(lifted)) {
				lifted = l.IssuedAt
			}
		}
		ec.Status = status(&c, lifted, now)
		if !lifted.IsZero() {
			ec.LiftedAt = &lifted
		}
		out = append(out, ec)
	}
	return out, nil
}

// acks reads the acknowledgements of the commands, earliest first, one per
// command and enforcer. The acks table is sorted by (tenant, command_id,
// enforcer): this reads a few ranges of its primary key.
func (q *Querier) acks(ctx context.Context, tenant string, ids []string) (map[string][]Ack, error) {
	var w where
	w.add("tenant = ?", tenant)
	w.in("command_id", ids)
	type commandAck struct {
		id string
		Ack
	}
	rows, err := collect(ctx, q, "explain: read acks", "SELECT command_id, enforcer, kind, applied_ms\nFROM "+q.s.T(history.TableAcks)+w.String()+
		"\nORDER BY applied_ms, command_id, enforcer\nLIMIT 1 BY command_id, enforcer", w.args,
		func(r driver.Rows, a *commandAck) error {
			var ms int64
			if err := r.Scan(&a.id, &a.Enforcer, &a.Kind, &ms); err != nil {
				return err
			}
			a.AppliedAt = msTime(ms)
			return nil
		})
	if err != nil {
		return nil, err
	}
	acks := map[string][]Ack{}
	for _, a := range rows {
		acks[a.id] = append(acks[a.id], a.Ack)
	}
	return acks, nil
}

func summarize(cmds []ExplainedCommand) Summary {
	s := Summary{Enforcers: []string{}}
	for _, c := range cmds {
		if c.Kind == enforce.KindLift {
			continue
		}
		s.Commands++
		if len(c.Acks) == 0 {
			s.Unacknowledged = append(s.Unacknowledged, c.ID)
			continue
		}
		s.Acked++
		for _, a := range c.Acks {
			s.Acks++
			if !slices.Contains(s.Enforcers, a.Enforcer) {
				s.Enforcers = append(s.Enforcers, a.Enforcer)
			}
			ref := &AckRef{Command: c.ID, Enforcer: a.Enforcer, AppliedAt: a.AppliedAt, TimeToEnforceMS: a.TimeToEnforceMS}
			if s.FirstAck == nil || a.AppliedAt.Before(s.FirstAck.AppliedAt) {
				s.FirstAck = ref
			}
			if s.SlowestAck == nil || a.TimeToEnforceMS > s.SlowestAck.TimeToEnforceMS {
				s.SlowestAck = ref
			}
		}
	}
	slices.Sort(s.Enforcers)
	return s
}

// Tables shows the explanation in sections: decision, values, evidence,
// commands, acks and summary.
func (x *Explanation) Tables() []Table {
	field := []Column{{Name: "field"}, {Name: "value"}}
	var out []Table
	if d := x.Decision; d != nil {
		tb := Table{Title: "decision", Columns: field}
		add := func(k, v string) {
			if v != "" {
				tb.Rows = append(tb.Rows, []string{k, v})
			}
		}
		add("id", d.ID)
		add("time", fmtTime(d.Time))
		add("tenant", d.Tenant)
		add("rule", d.Rule)
		add("rule_version", d.RuleVersion)
		add("severity", d.Severity)
		add("mode", d.Mode)
		add("action", d.Action)
		add("scope", d.Scope)
		add("group", d.Group)
		add("agent", d.Subject.Agent)
		add("instance", d.Subject.Instance)
		add("session", d.Subject.Session)
		add("task", d.Subject.Task)
		add("principal", d.Subject.Principal)
		add("credential", d.Subject.Credential)
		add("tool", d.Subject.Tool)
		add("parent_agent", d.Subject.ParentAgent)
		add("tags", strings.Join(d.Tags, ","))
		add("reason", d.Reason)
		add("guard_rail", d.GuardRail)
		if d.Suppressed > 0 {
			add("suppressed", strconv.FormatInt(d.Suppressed, 10))
		}
		out = append(out, tb)

		vt := Table{Title: "values", Columns: []Column{{Name: "name"}, {Name: "value"}, {Name: "op"}, {Name: "threshold"}, {Name: "met"}},
			Empty: "no values recorded"}
		for _, v := range d.Values {
			row := []string{v.Name, fmtFloat(v.Value), v.Op, "", ""}
			if v.Threshold != nil {
				row[3] = fmtFloat(*v.Threshold)
				if met, ok := compare(v.Value, v.Op, *v.Threshold); ok {
					row[4] = strconv.FormatBool(met)
				}
			}
			vt.Rows = append(vt.Rows, row)
		}
		out = append(out, vt)

		et := eventTable("evidence", x.Evidence)
		et.Empty = "no evidence events found"
		if len(x.MissingEvidence) > 0 {
			et.Notes = append(et.Notes, fmt.Sprintf("(%d evidence event(s) not found around the decision: %s)",
				len(x.MissingEvidence), TermSafe(strings.Join(x.MissingEvidence, ", "))))
		}
		out = append(out, et)
	} else {
		out = append(out, Table{Title: "decision", Columns: field,
			Empty: "no decision: the command was issued by hand, or its decision is no longer kept"})
	}

	ct := commandTable("commands")
	ct.Empty = "no revocation or hold was issued"
	at := Table{Title: "acks", Columns: []Column{{Name: "command"}, {Name: "kind"}, {Name: "enforcer"}, {Name: "issued"},
		{Name: "applied"}, {Name: "time_to_enforce_ms", Numeric: true}}, Empty: "no enforcer acknowledged"}
	var add func(c *ExplainedCommand)
	add = func(c *ExplainedCommand) {
		ct.Rows = append(ct.Rows, commandRow(&c.Revocation))
		for _, a := range c.Acks {
			at.Rows = append(at.Rows, []string{c.ID, c.Kind, a.Enforcer, fmtTime(c.IssuedAt), fmtTime(a.AppliedAt),
				strconv.FormatInt(a.TimeToEnforceMS, 10)})
		}
		for i := range c.LiftedBy {
			add(&c.LiftedBy[i])
		}
	}
	for i := range x.Commands {
		add(&x.Commands[i])
	}
	out = append(out, ct, at)

	s := x.Summary
	st := Table{Title: "summary", Columns: field, Rows: [][]string{
		{"commands", strconv.Itoa(s.Commands)},
		{"acked", strconv.Itoa(s.Acked)},
		{"acks", strconv.Itoa(s.Acks)},
		{"enforcers", strings.Join(s.Enforcers, ",")},
	}}
	if s.FirstAck != nil {
		st.Rows = append(st.Rows, []string{"first_ack", fmt.Sprintf("%s by %s at %s (%d ms)", s.FirstAck.Command,
			s.FirstAck.Enforcer, fmtTime(s.FirstAck.AppliedAt), s.FirstAck.TimeToEnforceMS)})
	}
	if s.SlowestAck != nil {
		st.Rows = append(st.Rows, []string{"slowest_ack", fmt.Sprintf("%s by %s at %s (%d ms)", s.SlowestAck.Command,
			s.SlowestAck.Enforcer, fmtTime(s.SlowestAck.AppliedAt), s.SlowestAck.TimeToEnforceMS)})
	}
	if len(s.Unacknowledged) > 0 {
		st.Rows = append(st.Rows, []string{"unacknowledged", strings.Join(s.Unacknowledged, ",")})
	}
	return append(out, st)
}

// compare evaluates value op threshold for the comparison operators rules
// use; ok is false for any other op.
func compare(v float64, op string, th float64) (met, ok bool) {
	switch op {
	case ">":
		return v > th, true
	case ">=":
		return v >= th, true
	case "<":
		return v < th, true
	case "<=":
		return v <= th, true
	case "==":
		return v == th, true
	case "!=":
		return v != th, true
	}
	return false, false
}
