package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/investigate"
)

// The investigation commands.
func init() { extraCommands = append(extraCommands, newQueryCmd) }

// queryFlags are the flags every query command takes.
type queryFlags struct {
	chFlags
	tenant          string
	since, from, to string
	limit           int
	json, csv       bool
}

// add registers the connection, tenant and output flags, and for a query
// over a period (a maximum limit above zero) the period and limit flags.
func (f *queryFlags) add(c *cobra.Command, defLimit, maxLimit int) {
	fl := c.Flags()
	f.chFlags.add(fl)
	fl.StringVar(&f.tenant, "tenant", "", "tenant to query (required; every query sees one tenant only)")
	if maxLimit > 0 {
		fl.StringVar(&f.since, "since", "", "period: this long back from now, e.g. 90m, 24h, 7d (default 24h)")
		fl.StringVar(&f.from, "from", "", "period start, RFC 3339 (e.g. 2026-11-28T00:00:00Z); excludes --since")
		fl.StringVar(&f.to, "to", "", "period end (exclusive), RFC 3339 (default now)")
		fl.IntVar(&f.limit, "limit", defLimit, fmt.Sprintf("most rows to show (at most %d)", maxLimit))
	}
	fl.BoolVar(&f.json, "json", false, "print the result as one JSON document")
	fl.BoolVar(&f.csv, "csv", false, "print the result as CSV (RFC 4180, header row; cells starting with = + - @ get a leading ')")
	_ = c.MarkFlagRequired("tenant")
}

// queryHelp is the common part of the query commands' help.
const queryHelp = `
Every query is scoped to one tenant (--tenant) and a period: --since (a
duration back from now, default 24h) or --from, and --to (RFC 3339, end
exclusive, default now). Output is an aligned table (control characters in
values shown escaped), --json (one document, values exactly as stored) or
--csv. ClickHouse is --clickhouse (default $CLICKHOUSE_ADDR, else
127.0.0.1:9000), database --database (default tripline).
`

// query runs one query command: it checks the flags, connects, runs do and
// prints the result.
func (a *app) query(cmd *cobra.Command, f *queryFlags, do func(ctx context.Context, q *investigate.Querier, p investigate.Period) (investigate.Result, error)) error {
	format := investigate.FormatTable
	switch {
	case f.json && f.csv:
		return usageError(errors.New("--json and --csv exclude each other"))
	case f.json:
		format = investigate.FormatJSON
	case f.csv:
		format = investigate.FormatCSV
	}
	if f.tenant == "" {
		return usageError(errors.New("--tenant must not be empty"))
	}
	if !validDatabase(f.database) {
		return usageError(fmt.Errorf("--database %q: letters, digits and _ only", f.database))
	}
	p, err := investigate.ParsePeriod(f.since, f.from, f.to, time.Now())
	if err != nil {
		return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
	}
	conn, err := f.connect()
	if err != nil {
		return err
	}
	defer conn.Close()
	q := investigate.New(&history.Schema{Conn: conn, Database: f.database}, investigate.Options{Log: a.log})
	res, err := do(cmd.Context(), q, p)
	switch {
	case err == nil:
	case errors.Is(err, investigate.ErrInvalid):
		return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
	case errors.Is(err, investigate.ErrNotFound):
		return &exitError{code: exitFindings, err: err}
	case investigate.TooExpensive(err):
		return fmt.Errorf("%w (the query was too expensive: narrow the period or add filters)", err)
	default:
		return fmt.Errorf("%w (ClickHouse at %s, database %s)", err, f.addr, f.database)
	}
	return investigate.Write(a.stdout, res, format)
}

// validDatabase accepts the database names history accepts.
func validDatabase(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return true
}

func newQueryCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "query",
		Short: "Investigate history: timelines, who touched what, top talkers, decisions, revocations",
		Long: `Query answers questions about what agents did and what Tripline did about
it, from the history kept in ClickHouse: the timeline of a session, agent,
task or principal; who touched a resource or sent to a destination; the
agents or sessions with the highest rate, fan-out or volume; the decisions
taken and the revocations issued, with their status; and, for one decision
or command, the whole story from evidence to each enforcer's
acknowledgement.
` + queryHelp,
		Example: `  tripline query timeline --tenant acme --session s-1842 --since 6h
  tripline query touched --tenant acme --resource s3://finance/payroll.csv --since 7d
  tripline query top --tenant acme --by session --metric bytes_out --since 1h
  tripline query decisions --tenant acme --mode enforce --json
  tripline query revocations --tenant acme --status active
  tripline query explain --tenant acme 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(newQueryTimelineCmd(a), newQueryTouchedCmd(a), newQueryTopCmd(a),
		newQueryDecisionsCmd(a), newQueryRevocationsCmd(a), newQueryExplainCmd(a))
	return c
}

func newQueryTimelineCmd(a *app) *cobra.Command {
	var (
		f                               queryFlags
		session, agent, task, principal string
		filter                          investigate.EventFilter
	)
	c := &cobra.Command{
		Use:   "timeline --tenant TENANT (--session ID | --agent ID | --task ID | --principal NAME)",
		Short: "What a session, agent, task or principal did, in time order",
		Long: `Timeline lists the events of one session, agent, task or principal in the
period, oldest first, each event once. A session, task or principal can
span several agents (delegation): all of them are shown, and the agents
found are listed in --json output.

Filters narrow the events: --tool, --action (read, write, delete, send,
execute, auth, other), --outcome (ok, error, denied), --sensitivity
(public, internal, confidential, restricted), --resource and --destination
(exact) or --resource-contains and --destination-contains (substring,
case-sensitive). The default limit is ` + fmt.Sprint(investigate.DefaultTimelineLimit) + ` events, the maximum ` + fmt.Sprint(investigate.MaxTimelineLimit) + `.
` + queryHelp,
		Example: `  tripline query timeline --tenant acme --session s-1842
  tripline query timeline --tenant acme --agent spiffe://acme.dev/agent/coder --since 2h --action send
  tripline query timeline --tenant acme --principal alice@acme.dev --from 2026-11-28T08:00:00Z \
    --to 2026-11-28T12:00:00Z --resource-contains payroll --csv > payroll.csv`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			by, value := "", ""
			for _, s := range []struct{ by, v string }{{investigate.BySession, session}, {investigate.ByAgent, agent},
				{investigate.ByTask, task}, {investigate.ByPrincipal, principal}} {
				if s.v == "" {
					continue
				}
				if by != "" {
					return usageError(fmt.Errorf("give one of --session, --agent, --task, --principal, not both --%s and --%s", by, s.by))
				}
				by, value = s.by, s.v
			}
			if by == "" {
				return usageError(errors.New("say whose timeline: --session, --agent, --task or --principal"))
			}
			return a.query(cmd, &f, func(ctx context.Context, q *investigate.Querier, p investigate.Period) (investigate.Result, error) {
				return q.Timeline(ctx, investigate.TimelineQuery{Tenant: f.tenant, By: by, Value: value, Period: p, Filter: filter, Limit: f.limit})
			})
		},
	}
	f.add(c, investigate.DefaultTimelineLimit, investigate.MaxTimelineLimit)
	fl := c.Flags()
	fl.StringVar(&session, "session", "", "session id")
	fl.StringVar(&agent, "agent", "", "agent identity (SPIFFE ID or OIDC subject)")
	fl.StringVar(&task, "task", "", "task id")
	fl.StringVar(&principal, "principal", "", "principal (the human the agents act for)")
	fl.StringVar(&filter.Tool, "tool", "", "only calls of this tool")
	fl.StringVar(&filter.Action, "action", "", "only this action: read, write, delete, send, execute, auth, other")
	fl.StringVar(&filter.Outcome, "outcome", "", "only this outcome: ok, error, denied")
	fl.StringVar(&filter.Sensitivity, "sensitivity", "", "only this sensitivity: public, internal, confidential, restricted")
	fl.StringVar(&filter.Resource, "resource", "", "only this resource (exact)")
	fl.StringVar(&filter.ResourceContains, "resource-contains", "", "only resources containing this")
	fl.StringVar(&filter.Destination, "destination", "", "only this destination (exact)")
	fl.StringVar(&filter.DestinationContains, "destination-contains", "", "only destinations containing this")
	return c
}

func newQueryTouchedCmd(a *app) *cobra.Command {
	var (
		f                     queryFlags
		resource, destination string
		contains              bool
	)
	c := &cobra.Command{
		Use:   "touched --tenant TENANT (--resource R | --destination D)",
		Short: "Who touched a resource or sent to a destination, and when",
		Long: `Touched lists who touched a resource (or sent data to a destination) in the
period: one row per agent, session and value, with the first and last
time, the number of events and the actions and tools used, earliest
first. --contains matches every resource (destination) containing the
value. The default limit is ` + fmt.Sprint(investigate.DefaultTouchedLimit) + ` rows, the maximum ` + fmt.Sprint(investigate.MaxTouchedLimit) + `.
` + queryHelp,
		Example: `  tripline query touched --tenant acme --resource s3://finance/payroll.csv --since 7d
  tripline query touched --tenant acme --destination pastebin --contains --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, value := investigate.KindResource, resource
			switch {
			case resource != "" && destination != "":
				return usageError(errors.New("give --resource or --destination, not both"))
			case destination != "":
				kind, value = investigate.KindDestination, destination
			case resource == "":
				return usageError(errors.New("say what was touched: --resource or --destination"))
			}
			return a.query(cmd, &f, func(ctx context.Context, q *investigate.Querier, p investigate.Period) (investigate.Result, error) {
				return q.Touched(ctx, investigate.TouchedQuery{Tenant: f.tenant, Kind: kind, Value: value, Contains: contains, Period: p, Limit: f.limit})
			})
		},
	}
	f.add(c, investigate.DefaultTouchedLimit, investigate.MaxTouchedLimit)
	c.Flags().StringVar(&resource, "resource", "", "the resource (path, table, URL, record id)")
	c.Flags().StringVar(&destination, "destination", "", "the destination (domain, address, channel)")
	c.Flags().BoolVar(&contains, "contains", false, "match values containing the resource or destination")
	return c
}

func newQueryTopCmd(a *app) *cobra.Command {
	var (
		f          queryFlags
		by, metric string
	)
	c := &cobra.Command{
		Use:   "top --tenant TENANT [--by agent|session] [--metric M]",
		Short: "The agents or sessions with the highest rate, fan-out or volume",
		Long: `Top ranks the tenant's agents or sessions in the period by a metric,
highest first, counting each event once:

  rate          the most events in any one minute (peak events per minute)
  count         events
  resources     distinct resources        (fan-out)
  destinations  distinct destinations     (fan-out)
  tools         distinct tools            (fan-out)
  bytes_out     bytes sent                (volume)
  bytes_in      bytes received            (volume)
  records       records touched           (volume)

Top reads every event of the tenant in the period: keep the period short
on a busy tenant. The default limit is ` + fmt.Sprint(investigate.DefaultTopLimit) + ` rows, the maximum ` + fmt.Sprint(investigate.MaxTopLimit) + `.
` + queryHelp,
		Example: `  tripline query top --tenant acme --metric rate --since 1h
  tripline query top --tenant acme --by session --metric destinations --since 24h
  tripline query top --tenant acme --metric bytes_out --since 7d --limit 50 --csv`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.query(cmd, &f, func(ctx context.Context, q *investigate.Querier, p investigate.Period) (investigate.Result, error) {
				return q.Top(ctx, investigate.TopQuery{Tenant: f.tenant, By: by, Metric: metric, Period: p, Limit: f.limit})
			})
		},
	}
	f.add(c, investigate.DefaultTopLimit, investigate.MaxTopLimit)
	c.Flags().StringVar(&by, "by", investigate.ByAgent, "rank agents or sessions: agent, session")
	c.Flags().StringVar(&metric, "metric", investigate.MetricCount, "rate, count, resources, destinations, tools, bytes_out, bytes_in or records")
	return c
}

func newQueryDecisionsCmd(a *app) *cobra.Command {
	var (
		f  queryFlags
		dq investigate.DecisionQuery
	)
	c := &cobra.Command{
		Use:   "decisions --tenant TENANT [filters]",
		Short: "The decisions rules took, newest first",
		Long: `Decisions lists the decisions taken in the period, newest first: when, the
rule and its version, severity, mode (shadow or enforce), action (alert,
revoke, hold), the subject, the values that made the rule fire against
their thresholds, and the rule's reason. Filter with --rule, --agent,
--session, --mode and --action. The default limit is ` + fmt.Sprint(investigate.DefaultDecisionsLimit) + `, the maximum ` + fmt.Sprint(investigate.MaxDecisionsLimit) + `.
` + queryHelp,
		Example: `  tripline query decisions --tenant acme --since 7d --rule exfil-volume
  tripline query decisions --tenant acme --mode enforce --action revoke --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.query(cmd, &f, func(ctx context.Context, q *investigate.Querier, p investigate.Period) (investigate.Result, error) {
				dq.Tenant, dq.Period, dq.Limit = f.tenant, p, f.limit
				return q.Decisions(ctx, dq)
			})
		},
	}
	f.add(c, investigate.DefaultDecisionsLimit, investigate.MaxDecisionsLimit)
	fl := c.Flags()
	fl.StringVar(&dq.Rule, "rule", "", "only this rule")
	fl.StringVar(&dq.Agent, "agent", "", "only decisions about this agent")
	fl.StringVar(&dq.Session, "session", "", "only decisions about this session")
	fl.StringVar(&dq.Mode, "mode", "", "only this mode: shadow, enforce")
	fl.StringVar(&dq.Action, "action", "", "only this action: alert, revoke, hold")
	return c
}

func newQueryRevocationsCmd(a *app) *cobra.Command {
	var (
		f  queryFlags
		rq investigate.RevocationQuery
	)
	c := &cobra.Command{
		Use:   "revocations --tenant TENANT [filters]",
		Short: "The revocation, hold and lift commands issued, with their status",
		Long: `Revocations lists the commands issued in the period, newest first, with
their status now: active (in force), lifted (a lift command ended it
before it expired) or expired. Lift commands are listed too, with the id
of what they lift. Filter with --kind (revoke, hold, lift), --scope
(session, instance, agent, task, principal, credential, tool), --value,
--agent and --status (active, lifted, expired). The default limit is ` + fmt.Sprint(investigate.DefaultRevocationsLimit) + `,
the maximum ` + fmt.Sprint(investigate.MaxRevocationsLimit) + `.
` + queryHelp,
		Example: `  tripline query revocations --tenant acme --status active --since 30d
  tripline query revocations --tenant acme --scope session --value s-1842 --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.query(cmd, &f, func(ctx context.Context, q *investigate.Querier, p investigate.Period) (investigate.Result, error) {
				rq.Tenant, rq.Period, rq.Limit = f.tenant, p, f.limit
				return q.Revocations(ctx, rq)
			})
		},
	}
	f.add(c, investigate.DefaultRevocationsLimit, investigate.MaxRevocationsLimit)
	fl := c.Flags()
	fl.StringVar(&rq.Kind, "kind", "", "only this kind: revoke, hold, lift")
	fl.StringVar(&rq.Scope, "scope", "", "only this scope: session, instance, agent, task, principal, credential, tool")
	fl.StringVar(&rq.Value, "value", "", "only commands on this subject (the session id, credential id, …)")
	fl.StringVar(&rq.Agent, "agent", "", "only commands about this agent")
	fl.StringVar(&rq.Status, "status", "", "only this status: active, lifted, expired")
	return c
}

func newQueryExplainCmd(a *app) *cobra.Command {
	var f queryFlags
	c := &cobra.Command{
		Use:   "explain --tenant TENANT ID",
		Short: "Why a decision was taken, and how fast it was enforced",
		Long: `Explain tells the story of one decision, given its id or the id of a
command issued from it (a lift's id explains what it lifted):

  decision  the rule, version, severity, mode, action, subject and reason
  values    each value the rule saw, against its threshold
  evidence  the events that fired the rule and its sample evidence, read
            within the tenant from ` + investigate.EvidenceBefore.String() + ` before the decision to ` + investigate.EvidenceAfter.String() + ` after
  commands  the revocations and holds issued from it, their lifts and status
  acks      each enforcer's acknowledgement and its time to enforce
            (applied − issued)
  summary   commands, acks, enforcers, first and slowest ack, unacknowledged

An analyst's command, which has no decision, is explained alone. Exit
status 1 when no decision or command has the id.
` + queryHelp,
		Example: `  tripline query explain --tenant acme 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e
  tripline query explain --tenant acme rv-3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d --json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			return a.query(cmd, &f, func(ctx context.Context, q *investigate.Querier, _ investigate.Period) (investigate.Result, error) {
				return q.Explain(ctx, f.tenant, argv[0])
			})
		},
	}
	f.add(c, 0, 0)
	return c
}
