package investigate

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tripline/tripline/internal/history"
)

// What Touched looks for.
const (
	KindResource    = "resource"
	KindDestination = "destination"
)

// TouchedQuery asks who touched a resource (or sent to a destination) in a
// period.
type TouchedQuery struct {
	Tenant string
	Kind   string // KindResource or KindDestination
	Value  string
	// Contains matches every resource (destination) containing Value
	// rather than equal to it.
	Contains bool
	Period   Period
	Limit    int // default DefaultTouchedLimit, at most MaxTouchedLimit
}

// Touch is one agent's use of a resource (destination) in one session.
type Touch struct {
	Agent   string    `json:"agent"`
	Session string    `json:"session"`
	Value   string    `json:"value"` // the resource or destination
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	Events  uint64    `json:"events"`
	Actions []string  `json:"actions"`
	Tools   []string  `json:"tools"`
}

// Touched is the answer to a TouchedQuery.
type Touched struct {
	Tenant    string  `json:"tenant"`
	Kind      string  `json:"kind"`
	Value     string  `json:"value"`
	Contains  bool    `json:"contains"`
	Period    Period  `json:"period"`
	Touches   []Touch `json:"touches"`
	Limit     int     `json:"limit"`
	Truncated bool    `json:"truncated"`
}

// Touched returns who touched a resource or destination in the period: one
// row per (agent, session, value) with the first and last time, the number
// of events and the actions and tools used, earliest first. The agents come
// from event_keys; the events table is then read for those agents only.
func (q *Querier) Touched(ctx context.Context, tq TouchedQuery) (*Touched, error) {
	n, err := limit(tq.Limit, DefaultTouchedLimit, MaxTouchedLimit)
	if err != nil {
		return nil, err
	}
	if err := checkTenant(tq.Tenant); err != nil {
		return nil, err
	}
	if tq.Kind != KindResource && tq.Kind != KindDestination {
		return nil, invalid("say what was touched: a resource or a destination")
	}
	if tq.Value == "" {
		return nil, invalid("the %s is empty", tq.Kind)
	}
	if err := checkValue(tq.Kind, tq.Value); err != nil {
		return nil, err
	}
	if err := tq.Period.check(MaxEventPeriod); err != nil {
		return nil, err
	}
	res := &Touched{Tenant: tq.Tenant, Kind: tq.Kind, Value: tq.Value, Contains: tq.Contains, Period: tq.Period,
		Touches: []Touch{}, Limit: n}
	agents, err := q.agentsFor(ctx, tq.Tenant, tq.Kind, tq.Value, tq.Contains, tq.Period)
	if err != nil {
		return nil, err
	}
	if len(agents) == 0 {
		return res, nil
	}
	col := tq.Kind // a column name: resource or destination
	var w where
	w.add("tenant = ?", tq.Tenant)
	w.in("agent", agents)
	w.period("ts_ms", tq.Period)
	if tq.Contains {
		w.contains(col, tq.Value)
	} else {
		w.add(col+" = ?", tq.Value)
	}
	sql := "SELECT agent, session, " + col + ", min(ts_ms) AS first_ms, max(ts_ms) AS last_ms, uniqExact(id),\n" +
		"  groupUniqArray(action), groupUniqArray(tool)\nFROM " + q.s.T(history.TableEvents) + w.String() +
		"\nGROUP BY agent, session, " + col + "\nORDER BY first_ms, agent, session, " + col + "\nLIMIT ?"
	rows, err := q.s.Conn.Query(q.ctx(ctx), sql, append(w.args, n+1)...)
	if err != nil {
		return nil, fmt.Errorf("investigate: touched: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			t           Touch
			first, last int64
		)
		if err := rows.Scan(&t.Agent, &t.Session, &t.Value, &first, &last, &t.Events, &t.Actions, &t.Tools); err != nil {
			return nil, fmt.Errorf("investigate: touched: %w", err)
		}
		t.First, t.Last = msTime(first), msTime(last)
		slices.Sort(t.Actions)
		slices.Sort(t.Tools)
		res.Touches = append(res.Touches, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("investigate: touched: %w", err)
	}
	if len(res.Touches) > n {
		res.Touches, res.Truncated = res.Touches[:n], true
	}
	return res, nil
}

// Tables shows one row per agent, session and value.
func (t *Touched) Tables() []Table {
	tb := Table{Title: "touched", Columns: []Column{
		{Name: "agent"}, {Name: "session"}, {Name: t.Kind}, {Name: "first"}, {Name: "last"},
		{Name: "events", Numeric: true}, {Name: "actions"}, {Name: "tools"},
	}}
	for _, r := range t.Touches {
		tb.Rows = append(tb.Rows, []string{r.Agent, r.Session, r.Value, fmtTime(r.First), fmtTime(r.Last),
			strconv.FormatUint(r.Events, 10), strings.Join(r.Actions, ","), strings.Join(r.Tools, ",")})
	}
	match := "="
	if t.Contains {
		match = "containing"
	}
	tb.Empty = fmt.Sprintf("no agent touched %s %s %s in tenant %s from %s to %s", t.Kind, match, t.Value, t.Tenant,
		fmtTime(t.Period.From), fmtTime(t.Period.To))
	if t.Truncated {
		tb.Notes = append(tb.Notes, truncatedNote(t.Limit, "rows", "first"))
	}
	return []Table{tb}
}
