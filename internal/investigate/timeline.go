package investigate

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/pipeline"
)

// What a timeline follows.
const (
	BySession   = "session"
	ByAgent     = "agent"
	ByTask      = "task"
	ByPrincipal = "principal"
)

// EventFilter narrows the events of a timeline. Empty fields match
// everything; set fields must all match. Matching is case-sensitive.
type EventFilter struct {
	Tool        string `json:"tool,omitempty"`
	Action      string `json:"action,omitempty"`      // read, write, delete, send, execute, auth, other
	Outcome     string `json:"outcome,omitempty"`     // ok, error, denied
	Sensitivity string `json:"sensitivity,omitempty"` // public, internal, confidential, restricted
	// Resource and Destination match exactly; the *Contains forms match a
	// substring.
	Resource            string `json:"resource,omitempty"`
	ResourceContains    string `json:"resource_contains,omitempty"`
	Destination         string `json:"destination,omitempty"`
	DestinationContains string `json:"destination_contains,omitempty"`
}

func (f *EventFilter) check() error {
	if err := oneOf("action", f.Action, actions...); err != nil {
		return err
	}
	if err := oneOf("outcome", f.Outcome, pipeline.OutcomeOK, pipeline.OutcomeError, pipeline.OutcomeDenied); err != nil {
		return err
	}
	if err := oneOf("sensitivity", f.Sensitivity, pipeline.SensitivityPublic, pipeline.SensitivityInternal,
		pipeline.SensitivityConfidential, pipeline.SensitivityRestricted); err != nil {
		return err
	}
	if f.Resource != "" && f.ResourceContains != "" {
		return invalid("give resource or resource_contains, not both")
	}
	if f.Destination != "" && f.DestinationContains != "" {
		return invalid("give destination or destination_contains, not both")
	}
	for name, v := range map[string]string{"tool": f.Tool, "resource": f.Resource, "resource_contains": f.ResourceContains,
		"destination": f.Destination, "destination_contains": f.DestinationContains} {
		if err := checkValue(name, v); err != nil {
			return err
		}
	}
	return nil
}

func (f *EventFilter) where(w *where) {
	w.eq("tool", f.Tool)
	w.eq("action", f.Action)
	w.eq("outcome", f.Outcome)
	w.eq("sensitivity", f.Sensitivity)
	w.eq("resource", f.Resource)
	w.contains("resource", f.ResourceContains)
	w.eq("destination", f.Destination)
	w.contains("destination", f.DestinationContains)
}

var actions = []string{string(pipeline.ActionRead), string(pipeline.ActionWrite), string(pipeline.ActionDelete),
	string(pipeline.ActionSend), string(pipeline.ActionExecute), string(pipeline.ActionAuth), string(pipeline.ActionOther)}

// TimelineQuery asks for the events of one session, agent, task or
// principal in a period, oldest first.
type TimelineQuery struct {
	Tenant string
	By     string // BySession, ByAgent, ByTask or ByPrincipal
	Value  string // the session id, agent identity, task id or principal
	Period Period
	Filter EventFilter
	Limit  int // default DefaultTimelineLimit, at most MaxTimelineLimit
}

// Timeline is the answer to a TimelineQuery.
type Timeline struct {
	Tenant string      `json:"tenant"`
	By     string      `json:"by"`
	Value  string      `json:"value"`
	Period Period      `json:"period"`
	Filter EventFilter `json:"filter"`
	// Agents are the agents event_keys named for the session, task or
	// principal in the period (the agent itself for ByAgent).
	Agents []string         `json:"agents"`
	Events []pipeline.Event `json:"events"`
	Limit  int              `json:"limit"`
	// Truncated: more events matched than the limit; Events are the oldest.
	Truncated bool `json:"truncated"`
}

// Timeline returns the events of a session, agent, task or principal in
// the period, oldest first, each event once. For a session, task or
// principal it finds the agents in event_keys first, then reads the
// events table by its primary key (tenant, agent, session, ts_ms, id).
func (q *Querier) Timeline(ctx context.Context, tq TimelineQuery) (*Timeline, error) {
	n, err := limit(tq.Limit, DefaultTimelineLimit, MaxTimelineLimit)
	if err != nil {
		return nil, err
	}
	if err := checkTenant(tq.Tenant); err != nil {
		return nil, err
	}
	if err := oneOf("timeline by", tq.By, BySession, ByAgent, ByTask, ByPrincipal); err != nil {
		return nil, err
	}
	if tq.By == "" || tq.Value == "" {
		return nil, invalid("say whose timeline: a session, agent, task or principal")
	}
	if err := checkValue(tq.By, tq.Value); err != nil {
		return nil, err
	}
	if err := tq.Period.check(MaxEventPeriod); err != nil {
		return nil, err
	}
	if err := tq.Filter.check(); err != nil {
		return nil, err
	}
	t := &Timeline{Tenant: tq.Tenant, By: tq.By, Value: tq.Value, Period: tq.Period, Filter: tq.Filter,
		Agents: []string{}, Events: []pipeline.Event{}, Limit: n}

	var w where
	w.add("tenant = ?", tq.Tenant)
	if tq.By == ByAgent {
		t.Agents = []string{tq.Value}
		w.add("agent = ?", tq.Value)
	} else {
		agents, err := q.agentsFor(ctx, tq.Tenant, tq.By, tq.Value, false, tq.Period)
		if err != nil {
			return nil, err
		}
		if len(agents) == 0 {
			return t, nil
		}
		t.Agents = agents
		w.in("agent", agents)
		w.add(tq.By+" = ?", tq.Value) // tq.By is one of the column names above
	}
	w.period("ts_ms", tq.Period)
	tq.Filter.where(&w)

	// Duplicates (a row written twice, not yet merged) share the whole
	// sort key, so LIMIT 1 BY id after the ORDER BY keeps one of each.
	sql := "SELECT " + history.EventSelect + "\nFROM " + q.s.T(history.TableEvents) + w.String() +
		"\nORDER BY ts_ms, id\nLIMIT 1 BY id\nLIMIT ?"
	evs, err := collect(ctx, q, "timeline", sql, append(w.args, n+1), history.ScanEvent)
	if err != nil {
		return nil, err
	}
	if evs != nil {
		t.Events = evs
	}
	t.Events, t.Truncated = truncate(t.Events, n)
	return t, nil
}

// Tables shows one row per event.
func (t *Timeline) Tables() []Table {
	tb := eventTable("timeline", t.Events)
	tb.Empty = fmt.Sprintf("no events for %s %s in tenant %s from %s to %s", t.By, t.Value, t.Tenant, fmtTime(t.Period.From), fmtTime(t.Period.To))
	if t.Truncated {
		tb.Notes = append(tb.Notes, truncatedNote(t.Limit, "events", "oldest"))
	}
	return []Table{tb}
}

func truncatedNote(n int, what, which string) string {
	return fmt.Sprintf("(showing the %s %d %s: more matched; narrow the period or filters, or raise the limit)", which, n, what)
}

// eventTable shows events, one row each.
func eventTable(title string, events []pipeline.Event) Table {
	tb := Table{Title: title, Columns: []Column{
		{Name: "time"}, {Name: "id"}, {Name: "agent"}, {Name: "session"}, {Name: "tool"}, {Name: "action"},
		{Name: "resource"}, {Name: "destination"}, {Name: "sensitivity"}, {Name: "outcome"},
		{Name: "bytes_in", Numeric: true}, {Name: "bytes_out", Numeric: true}, {Name: "records", Numeric: true},
	}}
	for _, e := range events {
		tb.Rows = append(tb.Rows, []string{
			fmtTime(e.Time), e.ID, e.Agent, e.Session, e.Tool, string(e.Action),
			e.Resource, e.Destination, e.Sensitivity, e.Outcome,
			strconv.FormatInt(e.BytesIn, 10), strconv.FormatInt(e.BytesOut, 10), strconv.FormatInt(e.Records, 10),
		})
	}
	return tb
}
