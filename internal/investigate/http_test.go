package investigate_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/api"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/investigate"
)

// mux serves the routes as the API server would, below /api/v1.
func mux(t *testing.T, q *investigate.Querier) http.Handler {
	t.Helper()
	m := http.NewServeMux()
	for _, r := range investigate.Routes(q) {
		role := api.RoleViewer
		if r.Path == "/rule-changes" {
			role = api.RoleAnalyst // not a tenant's data
		}
		require.Equal(t, role, r.Role, r.Path)
		require.Equal(t, http.MethodGet, r.Method, r.Path)
		m.HandleFunc(r.Method+" /api/v1"+r.Path, r.Handler)
	}
	return m
}

// get calls path (below /api/v1) as a viewer.
func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/v1"+path, nil)
	req = req.WithContext(api.WithCaller(req.Context(), api.Caller{Name: "test", Role: api.RoleViewer}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// period is the fixture's story as query parameters.
const period = "&from=2026-11-28T09:00:00Z&to=2026-11-28T11:00:00Z"

func TestHTTP(t *testing.T) {
	f := newFixture(t)
	h := mux(t, f.q)
	for _, c := range []struct {
		path string
		// check reads the JSON body.
		check func(t *testing.T, body []byte)
	}{
		{"/timeline?tenant=acme&session=s-1" + period, func(t *testing.T, body []byte) {
			var tl investigate.Timeline
			require.NoError(t, json.Unmarshal(body, &tl))
			require.Equal(t, []string{"e1", "e2", "e3", "e4", "e5"}, ids(tl.Events))
		}},
		{"/timeline?tenant=acme&agent=" + url.QueryEscape(agentA) + "&action=read&resource_contains=customers" + period, func(t *testing.T, body []byte) {
			var tl investigate.Timeline
			require.NoError(t, json.Unmarshal(body, &tl))
			require.Equal(t, []string{"e1", "e5"}, ids(tl.Events))
		}},
		{"/timeline?tenant=acme&session=" + url.QueryEscape(hostile) + period, func(t *testing.T, body []byte) {
			var tl investigate.Timeline
			require.NoError(t, json.Unmarshal(body, &tl))
			require.Equal(t, []string{"h1"}, ids(tl.Events))
			require.Equal(t, hostile, tl.Events[0].Resource)
			require.Equal(t, hostile, tl.Value)
		}},
		{"/touched?tenant=acme&resource=%2Fdata%2Fcustomers.csv" + period, func(t *testing.T, body []byte) {
			var res investigate.Touched
			require.NoError(t, json.Unmarshal(body, &res))
			require.Len(t, res.Touches, 2)
		}},
		{"/touched?tenant=acme&destination=paste&contains=true" + period, func(t *testing.T, body []byte) {
			var res investigate.Touched
			require.NoError(t, json.Unmarshal(body, &res))
			require.Len(t, res.Touches, 1)
			require.Equal(t, agentB, res.Touches[0].Agent)
		}},
		{"/top?tenant=acme&by=session&metric=records&limit=1" + period, func(t *testing.T, body []byte) {
			var res investigate.Top
			require.NoError(t, json.Unmarshal(body, &res))
			require.Len(t, res.Rows, 1)
			require.Equal(t, "s-1", res.Rows[0].Key)
			require.Equal(t, int64(25), res.Rows[0].Value)
		}},
		{"/decisions?tenant=acme&mode=enforce" + period, func(t *testing.T, body []byte) {
			var res investigate.Decisions
			require.NoError(t, json.Unmarshal(body, &res))
			require.Len(t, res.Decisions, 1)
			require.Equal(t, "d1", res.Decisions[0].ID)
		}},
		{"/revocations?tenant=acme&status=active" + period, func(t *testing.T, body []byte) {
			var res investigate.Revocations
			require.NoError(t, json.Unmarshal(body, &res))
			require.Len(t, res.Revocations, 1)
			require.Equal(t, "c2", res.Revocations[0].ID)
		}},
		{"/explain/c1?tenant=acme", func(t *testing.T, body []byte) {
			var x investigate.Explanation
			require.NoError(t, json.Unmarshal(body, &x))
			require.Equal(t, "d1", x.Decision.ID)
			require.Equal(t, int64(3), x.Summary.FirstAck.TimeToEnforceMS)
			require.Equal(t, "lifted", x.Commands[0].Status)
		}},
	} {
		t.Run(c.path, func(t *testing.T) {
			rec := get(t, h, c.path)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			c.check(t, rec.Body.Bytes())
		})
	}
}

func TestHTTPCSV(t *testing.T) {
	f := newFixture(t)
	h := mux(t, f.q)
	rec := get(t, h, "/timeline?tenant=acme&session="+url.QueryEscape(hostile)+"&format=csv"+period)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "text/csv; charset=utf-8", rec.Header().Get("Content-Type"))
	require.Contains(t, rec.Header().Get("Content-Disposition"), `filename="timeline.csv"`)
	recs, err := csv.NewReader(rec.Body).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "time", recs[0][0])
	require.Contains(t, recs[1], hostile)
	require.Contains(t, recs[1], `'=HYPERLINK("http://evil")`)
}

func TestHTTPErrors(t *testing.T) {
	f := newFixture(t)
	h := mux(t, f.q)
	for _, c := range []struct {
		path string
		code int
		msg  string
	}{
		{"/timeline?session=s-1", 400, "tenant parameter is required"},
		{"/timeline?tenant=acme", 400, "say whose timeline"},
		{"/timeline?tenant=acme&session=s-1&agent=a", 400, "not both session and agent"},
		{"/timeline?tenant=acme&session=s-1&color=red", 400, `unknown parameter "color"`},
		{"/timeline?tenant=acme&session=s-1&session=s-2", 400, `"session" is given 2 times`},
		{"/timeline?tenant=acme&session=s-1&limit=ten", 400, `limit "ten" is not a positive whole number`},
		{"/timeline?tenant=acme&session=s-1&limit=10001", 400, "above the maximum of 10000"},
		{"/timeline?tenant=acme&session=s-1&since=forever", 400, "not a duration"},
		{"/timeline?tenant=acme&session=s-1&since=1h&from=2026-11-28T00:00:00Z", 400, "since or from, not both"},
		{"/timeline?tenant=acme&session=s-1&since=90d", 400, "longer than the maximum of 31 days"},
		{"/timeline?tenant=acme&session=s-1&action=steal", 400, `action "steal" is not one of`},
		{"/timeline?tenant=acme&session=s-1&format=xml", 400, "not json or csv"},
		{"/touched?tenant=acme", 400, "say what was touched"},
		{"/touched?tenant=acme&resource=x&contains=maybe", 400, "not true or false"},
		{"/top?tenant=acme&by=tool", 400, "use agent or session"},
		{"/top?tenant=acme&metric=vibes", 400, `metric "vibes" is not one of`},
		{"/decisions?tenant=acme&mode=loud", 400, `mode "loud"`},
		{"/revocations?tenant=acme&status=pending", 400, `status "pending"`},
		{"/explain/nope?tenant=acme", 404, `no decision or command "nope"`},
		{"/explain/d1?tenant=nobody", 404, "not found"},
		{"/explain/d1", 400, "tenant parameter is required"},
	} {
		t.Run(c.path, func(t *testing.T) {
			rec := get(t, h, c.path)
			require.Equal(t, c.code, rec.Code, rec.Body.String())
			var body api.ErrorBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			require.True(t, strings.Contains(body.Error, c.msg), "%q does not say %q", body.Error, c.msg)
		})
	}
}

// A failure of the database is a 500 that names nothing internal.
func TestHTTPInternalError(t *testing.T) {
	f := newFixture(t)
	broken := investigate.New(&history.Schema{Conn: f.s.Conn, Database: "no_such_database"}, investigate.Options{})
	rec := get(t, mux(t, broken), "/decisions?tenant=acme")
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.NotContains(t, rec.Body.String(), "no_such_database")
	require.Contains(t, rec.Body.String(), "the query failed")
}

// The rule-set change log, newest first, with its limit checked.
func TestHTTPRuleChanges(t *testing.T) {
	f := newFixture(t)
	h := mux(t, f.q)
	ctx := t.Context()
	for rev, author := range []string{"alice", "bob", "carol"} {
		require.NoError(t, f.s.InsertRuleChange(ctx, &history.RuleChange{Revision: uint64(rev + 1), Hash: fmt.Sprint("h", rev),
			Time: time.Date(2026, 11, 28, rev, 0, 0, 0, time.UTC), Author: author, Comment: "why " + author, Rules: 25, Diff: "~ rule x: mode shadow → enforce\n"}))
	}
	rec := get(t, h, "/rule-changes?limit=2")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var body struct {
		Changes []struct {
			Revision uint64    `json:"revision"`
			Author   string    `json:"author"`
			Comment  string    `json:"comment"`
			Time     time.Time `json:"time"`
			Diff     string    `json:"diff"`
		} `json:"rule_changes"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Len(t, body.Changes, 2)
	require.Equal(t, uint64(3), body.Changes[0].Revision)
	require.Equal(t, "carol", body.Changes[0].Author)
	require.Equal(t, "why bob", body.Changes[1].Comment)
	require.Equal(t, "~ rule x: mode shadow → enforce\n", body.Changes[1].Diff)
	require.Equal(t, time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC), body.Changes[1].Time)
	for _, bad := range []string{"?limit=0", "?limit=1001", "?limit=x", "?tenant=acme", "?limit=1&limit=2"} {
		rec := get(t, h, "/rule-changes"+bad)
		require.Equal(t, http.StatusBadRequest, rec.Code, bad)
	}
}
