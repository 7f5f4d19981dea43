package investigate

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/tripline/tripline/internal/history"
)

// Metrics Top ranks by.
const (
	MetricRate         = "rate"         // the most events in one minute (peak events per minute)
	MetricCount        = "count"        // events
	MetricResources    = "resources"    // distinct resources (fan-out)
	MetricDestinations = "destinations" // distinct destinations (fan-out)
	MetricTools        = "tools"        // distinct tools (fan-out)
	MetricBytesOut     = "bytes_out"    // bytes sent (volume)
	MetricBytesIn      = "bytes_in"     // bytes received (volume)
	MetricRecords      = "records"      // records touched (volume)
)

// Metrics lists the metrics Top accepts.
var Metrics = []string{MetricRate, MetricCount, MetricResources, MetricDestinations, MetricTools,
	MetricBytesOut, MetricBytesIn, MetricRecords}

// TopQuery asks for the agents or sessions with the highest value of a
// metric over a period.
type TopQuery struct {
	Tenant string
	By     string // ByAgent or BySession
	Metric string // one of Metrics
	Period Period
	Limit  int // default DefaultTopLimit, at most MaxTopLimit
}

// TopRow is one agent or session.
type TopRow struct {
	Key    string    `json:"key"`   // the agent or session
	Value  int64     `json:"value"` // the metric
	Events uint64    `json:"events"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
}

// Top is the answer to a TopQuery, highest first.
type Top struct {
	Tenant string   `json:"tenant"`
	By     string   `json:"by"`
	Metric string   `json:"metric"`
	Period Period   `json:"period"`
	Rows   []TopRow `json:"rows"`
	Limit  int      `json:"limit"`
}

// Top ranks the tenant's agents or sessions in the period by a metric,
// counting each event once. It reads the tenant's range of the events
// table in the period's partitions.
func (q *Querier) Top(ctx context.Context, tq TopQuery) (*Top, error) {
	n, err := limit(tq.Limit, DefaultTopLimit, MaxTopLimit)
	if err != nil {
		return nil, err
	}
	if err := checkTenant(tq.Tenant); err != nil {
		return nil, err
	}
	if tq.By != ByAgent && tq.By != BySession {
		return nil, invalid("top by %q: use agent or session", tq.By)
	}
	if tq.Metric == "" {
		tq.Metric = MetricCount
	}
	if err := oneOf("metric", tq.Metric, Metrics...); err != nil {
		return nil, err
	}
	if err := tq.Period.check(MaxEventPeriod); err != nil {
		return nil, err
	}
	key := tq.By // a column name: agent or session
	var w where
	w.add("tenant = ?", tq.Tenant)
	w.period("ts_ms", tq.Period)
	if key == BySession {
		w.add("session != ''")
	}
	events := q.s.T(history.TableEvents)
	var sql string
	switch tq.Metric {
	case MetricRate:
		// Duplicates share ts_ms, so counting distinct ids per minute is exact.
		sql = "SELECT k, toInt64(max(c)) AS value, sum(c), min(f), max(l)\nFROM (\n" +
			"  SELECT " + key + " AS k, intDiv(ts_ms, 60000) AS m, uniqExact(id) AS c, min(ts_ms) AS f, max(ts_ms) AS l\n" +
			"  FROM " + events + w.String() + "\n  GROUP BY k, m)"
	case MetricBytesOut, MetricBytesIn, MetricRecords:
		// Sums count a duplicated row twice: fold rows by id first.
		sql = "SELECT k, toInt64(sum(x)) AS value, count(), min(ts), max(ts)\nFROM (\n" +
			"  SELECT " + key + " AS k, id, any(ts_ms) AS ts, any(" + tq.Metric + ") AS x\n" +
			"  FROM " + events + w.String() + "\n  GROUP BY k, id)"
	default:
		agg := "uniqExact(id)"
		if tq.Metric != MetricCount {
			col := map[string]string{MetricResources: "resource", MetricDestinations: "destination", MetricTools: "tool"}[tq.Metric]
			agg = "uniqExactIf(" + col + ", " + col + " != '')"
		}
		sql = "SELECT " + key + " AS k, toInt64(" + agg + ") AS value, uniqExact(id), min(ts_ms), max(ts_ms)\nFROM " + events + w.String()
	}
	sql += "\nGROUP BY k\nORDER BY value DESC, k\nLIMIT ?"
	rows, err := q.s.Conn.Query(q.ctx(ctx), sql, append(w.args, n)...)
	if err != nil {
		return nil, fmt.Errorf("investigate: top: %w", err)
	}
	defer rows.Close()
	t := &Top{Tenant: tq.Tenant, By: tq.By, Metric: tq.Metric, Period: tq.Period, Rows: []TopRow{}, Limit: n}
	for rows.Next() {
		var (
			r           TopRow
			first, last int64
		)
		if err := rows.Scan(&r.Key, &r.Value, &r.Events, &first, &last); err != nil {
			return nil, fmt.Errorf("investigate: top: %w", err)
		}
		r.First, r.Last = msTime(first), msTime(last)
		t.Rows = append(t.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("investigate: top: %w", err)
	}
	return t, nil
}

// Tables shows one row per agent or session, highest first.
func (t *Top) Tables() []Table {
	name := t.Metric
	if name == MetricRate {
		name = "peak_per_minute"
	}
	tb := Table{Title: "top", Columns: []Column{
		{Name: t.By}, {Name: name, Numeric: true}, {Name: "events", Numeric: true}, {Name: "first"}, {Name: "last"},
	}}
	for _, r := range t.Rows {
		tb.Rows = append(tb.Rows, []string{r.Key, strconv.FormatInt(r.Value, 10), strconv.FormatUint(r.Events, 10),
			fmtTime(r.First), fmtTime(r.Last)})
	}
	tb.Empty = fmt.Sprintf("no events in tenant %s from %s to %s", t.Tenant, fmtTime(t.Period.From), fmtTime(t.Period.To))
	return []Table{tb}
}
