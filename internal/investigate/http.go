package investigate

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tripline/tripline/internal/api"
)

// Routes are the investigation endpoints, all GET and open to viewers:
//
//	/timeline     ?tenant&(session|agent|task|principal)&filters
//	/touched      ?tenant&(resource|destination)[&contains=true]
//	/top          ?tenant&by=agent|session&metric=…
//	/decisions    ?tenant[&rule&agent&session&mode&action]
//	/revocations  ?tenant[&kind&scope&value&agent&status]
//	/explain/{id} ?tenant
//
// Every endpoint takes the period as since (e.g. 24h, 7d) or from, and to
// (RFC 3339), a limit, and format=json (default) or csv. Unknown or
// repeated parameters are refused with 400 and a message that says why.
func Routes(q *Querier) []api.Route {
	h := &handlers{q: q}
	get := func(path string, fn http.HandlerFunc) api.Route {
		return api.Route{Method: http.MethodGet, Path: path, Role: api.RoleViewer, Handler: fn}
	}
	return []api.Route{
		get("/timeline", h.timeline),
		get("/touched", h.touched),
		get("/top", h.top),
		get("/decisions", h.decisions),
		get("/revocations", h.revocations),
		get("/explain/{id}", h.explain),
		// Rule sets are not a tenant's data, and a set's overrides name
		// tenants: the change log is for analysts, across tenants.
		{Method: http.MethodGet, Path: "/rule-changes", Role: api.RoleAnalyst, Handler: h.ruleChanges},
	}
}

// RuleChangesMax is the most rows /rule-changes returns.
const RuleChangesMax = 1000

// ruleChanges answers the rule-set change log, newest first: ?limit=N
// (default 50).
func (h *handlers) ruleChanges(w http.ResponseWriter, r *http.Request) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, r, invalid("the query string is malformed: %v", err))
		return
	}
	limit := 50
	for k, vs := range vals {
		switch {
		case k != "limit":
			h.fail(w, r, invalid("unknown parameter %q (this endpoint takes limit)", k))
			return
		case len(vs) > 1:
			h.fail(w, r, invalid("parameter %q is given %d times", k, len(vs)))
			return
		}
		if limit, err = strconv.Atoi(vs[0]); err != nil || limit <= 0 || limit > RuleChangesMax {
			h.fail(w, r, invalid("limit %q is not a whole number between 1 and %d", vs[0], RuleChangesMax))
			return
		}
	}
	cs, err := h.q.s.RuleChanges(r.Context(), limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	type change struct {
		Revision uint64    `json:"revision"`
		Hash     string    `json:"hash"`
		Time     time.Time `json:"time"`
		Author   string    `json:"author"`
		Comment  string    `json:"comment"`
		Previous string    `json:"previous,omitempty"`
		Rules    int       `json:"rules"`
		Diff     string    `json:"diff"`
	}
	out := make([]change, len(cs))
	for i, c := range cs {
		out[i] = change{c.Revision, c.Hash, c.Time, c.Author, c.Comment, c.Previous, c.Rules, c.Diff}
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"rule_changes": out})
}

type handlers struct{ q *Querier }

// common are the parameters every endpoint takes.
var common = []string{"tenant", "since", "from", "to", "limit", "format"}

// request is a parsed query string.
type request struct {
	vals   url.Values
	tenant string
	period Period
	limit  int
	format Format
}

// get returns a parameter's value ("" when absent).
func (r *request) get(name string) string { return r.vals.Get(name) }

// parse validates the query string: only common and the names given, each
// at most once; the period, limit and format read.
func (h *handlers) parse(r *http.Request, names ...string) (*request, error) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalid("the query string is malformed: %v", err)
	}
	for k, vs := range vals {
		if !slices.Contains(common, k) && !slices.Contains(names, k) {
			all := append(slices.Clone(common), names...)
			return nil, invalid("unknown parameter %q (this endpoint takes %s)", k, strings.Join(all, ", "))
		}
		if len(vs) > 1 {
			return nil, invalid("parameter %q is given %d times", k, len(vs))
		}
	}
	req := &request{vals: vals, tenant: vals.Get("tenant")}
	if req.tenant == "" {
		return nil, invalid("the tenant parameter is required")
	}
	if req.period, err = ParsePeriod(vals.Get("since"), vals.Get("from"), vals.Get("to"), h.q.now()); err != nil {
		return nil, err
	}
	if s := vals.Get("limit"); s != "" {
		if req.limit, err = strconv.Atoi(s); err != nil || req.limit <= 0 {
			return nil, invalid("limit %q is not a positive whole number", s)
		}
	}
	switch f := vals.Get("format"); f {
	case "", "json":
		req.format = FormatJSON
	case "csv":
		req.format = FormatCSV
	default:
		return nil, invalid("format %q is not json or csv", f)
	}
	return req, nil
}

// boolParam reads true/false (also 1/0).
func boolParam(req *request, name string) (bool, error) {
	switch s := req.get(name); s {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, invalid("%s %q is not true or false", name, s)
	}
}

// one returns the single parameter of names that is set.
func one(req *request, what string, names ...string) (name, value string, err error) {
	for _, n := range names {
		if v := req.get(n); v != "" {
			if name != "" {
				return "", "", invalid("give one of %s, not both %s and %s", strings.Join(names, ", "), name, n)
			}
			name, value = n, v
		}
	}
	if name == "" {
		return "", "", invalid("say %s: give one of %s", what, strings.Join(names, ", "))
	}
	return name, value, nil
}

var filterParams = []string{"tool", "action", "outcome", "sensitivity", "resource", "resource_contains",
	"destination", "destination_contains"}

func (h *handlers) timeline(w http.ResponseWriter, r *http.Request) {
	whose := []string{BySession, ByAgent, ByTask, ByPrincipal}
	req, err := h.parse(r, append(slices.Clone(whose), filterParams...)...)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	by, value, err := one(req, "whose timeline", whose...)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.q.Timeline(r.Context(), TimelineQuery{Tenant: req.tenant, By: by, Value: value, Period: req.period,
		Limit: req.limit, Filter: EventFilter{
			Tool: req.get("tool"), Action: req.get("action"), Outcome: req.get("outcome"), Sensitivity: req.get("sensitivity"),
			Resource: req.get("resource"), ResourceContains: req.get("resource_contains"),
			Destination: req.get("destination"), DestinationContains: req.get("destination_contains"),
		}})
	h.respond(w, r, req, "timeline", res, err)
}

func (h *handlers) touched(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r, KindResource, KindDestination, "contains")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	kind, value, err := one(req, "what was touched", KindResource, KindDestination)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	contains, err := boolParam(req, "contains")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.q.Touched(r.Context(), TouchedQuery{Tenant: req.tenant, Kind: kind, Value: value, Contains: contains,
		Period: req.period, Limit: req.limit})
	h.respond(w, r, req, "touched", res, err)
}

func (h *handlers) top(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r, "by", "metric")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	by := req.get("by")
	if by == "" {
		by = ByAgent
	}
	res, err := h.q.Top(r.Context(), TopQuery{Tenant: req.tenant, By: by, Metric: req.get("metric"), Period: req.period, Limit: req.limit})
	h.respond(w, r, req, "top", res, err)
}

func (h *handlers) decisions(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r, "rule", "agent", "session", "mode", "action")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.q.Decisions(r.Context(), DecisionQuery{Tenant: req.tenant, Period: req.period, Rule: req.get("rule"),
		Agent: req.get("agent"), Session: req.get("session"), Mode: req.get("mode"), Action: req.get("action"), Limit: req.limit})
	h.respond(w, r, req, "decisions", res, err)
}

func (h *handlers) revocations(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r, "kind", "scope", "value", "agent", "status")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.q.Revocations(r.Context(), RevocationQuery{Tenant: req.tenant, Period: req.period, Kind: req.get("kind"),
		Scope: req.get("scope"), Value: req.get("value"), Agent: req.get("agent"), Status: req.get("status"), Limit: req.limit})
	h.respond(w, r, req, "revocations", res, err)
}

func (h *handlers) explain(w http.ResponseWriter, r *http.Request) {
	req, err := h.parse(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	res, err := h.q.Explain(r.Context(), req.tenant, r.PathValue("id"))
	h.respond(w, r, req, "explain", res, err)
}

// respond writes a result as JSON or CSV, or the error.
func (h *handlers) respond(w http.ResponseWriter, r *http.Request, req *request, name string, res Result, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if req.format != FormatCSV {
		api.WriteJSON(w, http.StatusOK, res)
		return
	}
	var b bytes.Buffer
	if err := WriteCSV(&b, res); err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}

// fail answers an error: the caller's mistakes (400) and unknown ids (404)
// with their message; anything else with a generic message, the detail
// going to the log.
func (h *handlers) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		api.Error(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrNotFound):
		api.Error(w, http.StatusNotFound, err.Error())
	case errors.Is(err, context.Canceled):
		// the caller went away: nobody to answer
	case TooExpensive(err):
		api.Error(w, http.StatusServiceUnavailable, "the query was too expensive (time or memory): narrow the period or add filters")
	default:
		caller, _ := api.CallerFrom(r.Context())
		h.q.log.Error().Err(err).Str("path", r.URL.Path).Str("caller", caller.Name).Msg("investigation query failed")
		api.Error(w, http.StatusInternalServerError, "the query failed; the server log has the details")
	}
}
