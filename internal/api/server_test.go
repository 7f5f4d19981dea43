package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/api"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/syncbuf"
)

// Tokens of the test server: the viewer's is in a file, the others only
// as SHA-256 in the config.
const (
	viewerToken  = "v1ewer-0123456789abcdef0123456789abcdef0123456789abcdef"
	analystToken = "an4lyst-0123456789abcdef0123456789abcdef0123456789abcdef"
	adminToken   = "adm1n-0123456789abcdef0123456789abcdef0123456789abcdef"
)

func sha(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// testTokens returns the token configuration, writing the viewer's file.
func testTokens(t *testing.T) []config.Token {
	t.Helper()
	file := filepath.Join(t.TempDir(), "viewer.token")
	require.NoError(t, os.WriteFile(file, []byte(viewerToken+"\n"), 0o600))
	return []config.Token{
		{Name: "vera", Role: "viewer", TokenFile: file},
		{Name: "alice", Role: "analyst", SHA256: sha(analystToken)},
		{Name: "root", Role: "admin", SHA256: strings.ToUpper(sha(adminToken))},
	}
}

// testRoutes exercise the middleware.
func testRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/whoami", Role: api.RoleViewer, Handler: func(w http.ResponseWriter, r *http.Request) {
			c, _ := api.CallerFrom(r.Context())
			api.WriteJSON(w, http.StatusOK, map[string]string{
				"name": c.Name, "role": c.Role.String(), "authorization": r.Header.Get("Authorization"),
			})
		}},
		{Method: http.MethodPost, Path: "/notes", Role: api.RoleAnalyst, Handler: func(w http.ResponseWriter, r *http.Request) {
			var body struct {
				Text string `json:"text"`
				N    int    `json:"n"`
			}
			if !api.DecodeJSON(w, r, &body) {
				return
			}
			api.WriteJSON(w, http.StatusCreated, body)
		}},
		{Method: http.MethodDelete, Path: "/notes/{id}", Role: api.RoleAdmin, Handler: func(w http.ResponseWriter, r *http.Request) {
			api.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("id")})
		}},
		{Method: http.MethodGet, Path: "/slow", Role: api.RoleViewer, Handler: func(_ http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // a handler that gives up when the deadline passes
		}},
		{Method: http.MethodGet, Path: "/panic", Role: api.RoleViewer, Handler: func(http.ResponseWriter, *http.Request) {
			panic("boom")
		}},
		{Method: http.MethodGet, Path: "/half", Role: api.RoleViewer, Handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"partial":`))
			_ = http.NewResponseController(w).Flush() // the client has it
			panic("boom after writing")
		}},
	}
}

type testServer struct {
	*api.Server
	reg *prometheus.Registry
	log *syncbuf.Buffer
	url string
	now *time.Time
}

func newTestServer(t *testing.T, edit func(*api.Options)) *testServer {
	t.Helper()
	ts := &testServer{reg: prometheus.NewRegistry(), log: &syncbuf.Buffer{}, now: new(time.Time)}
	*ts.now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	o := api.Options{
		Tokens: testTokens(t), Routes: testRoutes(), Registry: ts.reg,
		Log: zerolog.New(ts.log).Level(zerolog.DebugLevel),
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return *ts.now },
	}
	if edit != nil {
		edit(&o)
	}
	s, err := api.New(o)
	require.NoError(t, err)
	ts.Server = s
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	ts.url = hs.URL
	return ts
}

type reply struct {
	status int
	header http.Header
	body   string
}

// do sends a request with token (none when empty) and returns the reply.
func (ts *testServer) do(t *testing.T, method, path, token, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// errorOf decodes an error body.
func errorOf(t *testing.T, r reply) string {
	t.Helper()
	var e api.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(r.body), &e), r.body)
	require.NotEmpty(t, e.Error)
	return e.Error
}

// metric returns the value of a counter (or a histogram's count) with the
// given labels, 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue next
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func TestOpenEndpoints(t *testing.T) {
	ready := error(nil)
	ts := newTestServer(t, func(o *api.Options) { o.Health = func() error { return ready } })
	for _, path := range []string{"/healthz", "/readyz"} {
		r := ts.do(t, http.MethodGet, path, "", "")
		require.Equal(t, http.StatusOK, r.status, path)
		require.Equal(t, "ok\n", r.body)
	}
	ready = io.ErrClosedPipe
	r := ts.do(t, http.MethodGet, "/readyz", "", "")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Contains(t, r.body, "not ready")
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/healthz", "", "").status, "alive while not ready")

	r = ts.do(t, http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, `tripline_api_requests_total{code="200",route="/healthz"} 2`)
	require.Contains(t, r.body, `tripline_api_auth_failures_total{reason="missing"} 0`)

	r = ts.do(t, http.MethodPost, "/healthz", "", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, "GET, HEAD", r.header.Get("Allow"))
	require.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/admin", "", "").status)
	require.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/", "", "").status)
}

func TestAuthentication(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		name, header string
		status       int
		challenge    string
		reason       string
	}{
		{"no token", "", 401, `Bearer realm="tripline"`, "missing"},
		{"basic auth", "Basic YWxpY2U6c2VjcmV0", 401, `Bearer realm="tripline", error="invalid_request"`, "malformed"},
		{"bearer without token", "Bearer ", 401, `Bearer realm="tripline", error="invalid_request"`, "malformed"},
		{"two words", "Bearer " + viewerToken + " x", 401, `Bearer realm="tripline", error="invalid_request"`, "malformed"},
		{"wrong token", "Bearer " + strings.Repeat("0", 64), 401, `Bearer realm="tripline", error="invalid_token"`, "invalid"},
		{"a token's hash is not the token", "Bearer " + sha(analystToken), 401, `Bearer realm="tripline", error="invalid_token"`, "invalid"},
		{"token with its newline", "Bearer " + viewerToken + "x", 401, `Bearer realm="tripline", error="invalid_token"`, "invalid"},
		{"viewer", "Bearer " + viewerToken, 200, "", ""},
		{"scheme is case-insensitive", "bearer " + analystToken, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metric(t, ts.reg, "tripline_api_auth_failures_total", map[string]string{"reason": tc.reason})
			req, err := http.NewRequest(http.MethodGet, ts.url+"/api/v1/whoami", nil)
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			r := send(t, req)
			require.Equal(t, tc.status, r.status, r.body)
			require.Equal(t, tc.challenge, r.header.Get("WWW-Authenticate"))
			require.Equal(t, "no-store", r.header.Get("Cache-Control"))
			if tc.status != 200 {
				errorOf(t, r)
				require.Equal(t, before+1, metric(t, ts.reg, "tripline_api_auth_failures_total", map[string]string{"reason": tc.reason}))
			}
		})
	}

	// The handler sees who called, never the token.
	r := ts.do(t, http.MethodGet, "/api/v1/whoami", viewerToken, "")
	require.JSONEq(t, `{"name":"vera","role":"viewer","authorization":""}`, r.body)
	r = ts.do(t, http.MethodGet, "/api/v1/whoami", adminToken, "")
	require.JSONEq(t, `{"name":"root","role":"admin","authorization":""}`, r.body)

	// Unknown paths are not revealed before authentication.
	require.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodGet, "/api/v1/nothing-here", "", "").status)
}

func TestRoles(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, tc := range []struct {
		method, path, token, body string
		status                    int
	}{
		{"POST", "/api/v1/notes", viewerToken, `{"text":"x"}`, 403},
		{"POST", "/api/v1/notes", analystToken, `{"text":"x"}`, 201},
		{"POST", "/api/v1/notes", adminToken, `{"text":"x"}`, 201},
		{"DELETE", "/api/v1/notes/7", viewerToken, "", 403},
		{"DELETE", "/api/v1/notes/7", analystToken, "", 403},
		{"DELETE", "/api/v1/notes/7", adminToken, "", 200},
		{"GET", "/api/v1/whoami", viewerToken, "", 200},
	} {
		r := ts.do(t, tc.method, tc.path, tc.token, tc.body)
		require.Equal(t, tc.status, r.status, "%s %s: %s", tc.method, tc.path, r.body)
		if tc.status == 403 {
			require.Contains(t, errorOf(t, r), "forbidden: this needs the")
		}
	}
	require.Equal(t, 3.0, metric(t, ts.reg, "tripline_api_auth_failures_total", map[string]string{"reason": "role"}))
	require.Equal(t, 2.0, metric(t, ts.reg, "tripline_api_requests_total", map[string]string{"route": "POST /api/v1/notes", "code": "201"}))
}

func TestNotFoundAndWrongMethod(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.do(t, http.MethodGet, "/api/v1/nothing-here", viewerToken, "")
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "no such endpoint", errorOf(t, r))
	require.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/api/v1", viewerToken, "").status)
	require.Equal(t, http.StatusNotFound, ts.do(t, http.MethodGet, "/api/v1/whoami/", viewerToken, "").status)

	r = ts.do(t, http.MethodGet, "/api/v1/notes", viewerToken, "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, "POST", r.header.Get("Allow"))
	r = ts.do(t, http.MethodPost, "/api/v1/whoami", viewerToken, `{}`)
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, "GET, HEAD", r.header.Get("Allow"))
	r = ts.do(t, http.MethodGet, "/api/v1/notes/1", viewerToken, "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, "DELETE", r.header.Get("Allow"))
	require.Equal(t, 3.0, metric(t, ts.reg, "tripline_api_requests_total", map[string]string{"route": "unmatched", "code": "404"}))
	require.Equal(t, 3.0, metric(t, ts.reg, "tripline_api_requests_total", map[string]string{"route": "unmatched", "code": "405"}))
}

func TestBodies(t *testing.T) {
	ts := newTestServer(t, func(o *api.Options) { o.MaxBodyBytes = 100 })
	big := `{"text":"` + strings.Repeat("a", 200) + `"}`
	for _, tc := range []struct {
		name, contentType, body string
		chunked                 bool
		status                  int
		msg                     string
	}{
		{"ok", "application/json", `{"text":"hello","n":2}`, false, 201, ""},
		{"charset is fine", "application/json; charset=utf-8", `{"text":"hello"}`, false, 201, ""},
		{"too large", "application/json", big, false, 413, "request body larger than 100 bytes"},
		{"too large, no length", "application/json", big, true, 413, "request body larger than 100 bytes"},
		{"unknown field", "application/json", `{"text":"x","admin":true}`, false, 400, `body: unknown field "admin"`},
		{"wrong type", "application/json", `{"text":1}`, false, 400, "text: want a string, not number"},
		{"not an object", "application/json", `[1,2]`, false, 400, "body: want a JSON object, not array"},
		{"malformed", "application/json", `{"text":`, false, 400, "body: the JSON ends early"},
		{"garbage", "application/json", `{"text" "x"}`, false, 400, "body: malformed JSON at byte"},
		{"two objects", "application/json", `{"text":"a"}{"text":"b"}`, false, 400, "body: want one JSON object, found more after it"},
		{"empty", "application/json", ``, false, 400, "body: empty, want a JSON object"},
		{"form", "application/x-www-form-urlencoded", `text=x`, false, 415, "Content-Type must be application/json"},
		{"no content type", "", `{"text":"x"}`, false, 415, "Content-Type must be application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				rd = io.MultiReader(rd) // hides the length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, ts.url+"/api/v1/notes", rd)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+analystToken)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			r := send(t, req)
			require.Equal(t, tc.status, r.status, r.body)
			if tc.msg != "" {
				require.Contains(t, errorOf(t, r), tc.msg)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	ts := newTestServer(t, func(o *api.Options) { o.RateLimit = api.RateLimit{PerSecond: 0.5, Burst: 2} })
	for range 2 {
		require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/api/v1/whoami", viewerToken, "").status)
	}
	r := ts.do(t, http.MethodGet, "/api/v1/whoami", viewerToken, "")
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "2", r.header.Get("Retry-After"))
	require.Contains(t, errorOf(t, r), "rate limit")
	// per token: the analyst is not limited by the viewer's use
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/api/v1/whoami", analystToken, "").status)
	// bad tokens do not spend anyone's budget
	require.Equal(t, http.StatusUnauthorized, ts.do(t, http.MethodGet, "/api/v1/whoami", "nope", "").status)
	// open endpoints are not limited
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/healthz", "", "").status)

	*ts.now = ts.now.Add(time.Second)
	r = ts.do(t, http.MethodGet, "/api/v1/whoami", viewerToken, "")
	require.Equal(t, http.StatusTooManyRequests, r.status)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	*ts.now = ts.now.Add(time.Second)
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/api/v1/whoami", viewerToken, "").status)
	require.Equal(t, 2.0, metric(t, ts.reg, "tripline_api_rate_limited_total", map[string]string{"caller": "vera"}))
}

func TestTimeout(t *testing.T) {
	ts := newTestServer(t, func(o *api.Options) { o.Timeout = 30 * time.Millisecond })
	r := ts.do(t, http.MethodGet, "/api/v1/slow", viewerToken, "")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "request timed out after 30ms", errorOf(t, r))
	require.Equal(t, 1.0, metric(t, ts.reg, "tripline_api_requests_total", map[string]string{"route": "GET /api/v1/slow", "code": "503"}))
}

func TestPanicRecovered(t *testing.T) {
	ts := newTestServer(t, nil)
	r := ts.do(t, http.MethodGet, "/api/v1/panic", viewerToken, "")
	require.Equal(t, http.StatusInternalServerError, r.status)
	require.Contains(t, errorOf(t, r), "internal error (request id "+r.header.Get("X-Request-Id")+")")
	require.Contains(t, ts.log.String(), `"panic":"boom"`)
	require.Contains(t, ts.log.String(), "api handler panicked")

	// A panic after the answer started cuts the connection: the client
	// must not take half a body for a whole one.
	req, err := http.NewRequest(http.MethodGet, ts.url+"/api/v1/half", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	require.Error(t, err)

	// and the server goes on
	require.Equal(t, http.StatusOK, ts.do(t, http.MethodGet, "/api/v1/whoami", viewerToken, "").status)
	require.Equal(t, 2.0, metric(t, ts.reg, "tripline_api_panics_total", nil))
	require.Equal(t, 1.0, metric(t, ts.reg, "tripline_api_requests_total", map[string]string{"route": "GET /api/v1/panic", "code": "500"}))
}

// TestAccessLog: one line per request with who and how it went, and
// never a token, an Authorization header or a query string.
func TestAccessLog(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.do(t, http.MethodGet, "/api/v1/whoami?token="+adminToken+"&q=hunter2", viewerToken, "")
	ts.do(t, http.MethodPost, "/api/v1/notes?secret=hunter2", analystToken, `{"text":"x"}`)
	ts.do(t, http.MethodGet, "/api/v1/whoami", analystToken+"x", "")   // near miss
	ts.do(t, http.MethodGet, "/api/v1/"+adminToken, "", "")            // a token pasted into the path
	ts.do(t, http.MethodGet, "/api/v1/"+adminToken, viewerToken, "")   // the same, authenticated
	ts.do(t, http.MethodPost, "/api/v1/notes", viewerToken, `{"x":1}`) // forbidden
	req, err := http.NewRequest(http.MethodGet, ts.url+"/api/v1/whoami", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Basic "+adminToken)
	send(t, req)
	ts.do(t, http.MethodGet, "/healthz", "", "")

	out := ts.log.String()
	for _, secret := range []string{viewerToken, analystToken, adminToken, "hunter2", "Bearer", "Basic", "Authorization"} {
		require.NotContains(t, out, secret)
	}
	var lines []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		if m["message"] == "http request" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 8)
	first := lines[0]
	require.Equal(t, "GET", first["method"])
	require.Equal(t, "GET /api/v1/whoami", first["route"])
	require.Equal(t, "/api/v1/whoami", first["path"])
	require.Equal(t, 200.0, first["status"])
	require.Equal(t, "vera", first["caller"])
	require.Equal(t, "viewer", first["role"])
	require.Contains(t, first, "duration")
	require.NotEmpty(t, first["request_id"])
	require.Equal(t, "alice", lines[1]["caller"])
	require.Equal(t, "analyst", lines[1]["role"])
	require.Equal(t, 201.0, lines[1]["status"])
	require.NotContains(t, lines[2], "caller", "a failed authentication has no caller")
	require.Equal(t, 401.0, lines[2]["status"])
	require.Equal(t, "unmatched", lines[4]["route"])
	require.NotContains(t, lines[4], "path", "unmatched paths are not logged")
	require.Equal(t, 403.0, lines[5]["status"])
	require.Equal(t, "vera", lines[5]["caller"])
	require.Equal(t, "debug", lines[7]["level"], "probes are logged at debug")
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("hunter2\n"), 0o600))
	ok := func(http.ResponseWriter, *http.Request) {}
	for _, tc := range []struct {
		name string
		o    api.Options
		want string
	}{
		{"short token", api.Options{Tokens: []config.Token{{Name: "a", Role: "viewer", TokenFile: short}}}, "want one token of at least 32 printable characters"},
		{"missing token file", api.Options{Tokens: []config.Token{{Name: "a", Role: "viewer", TokenFile: filepath.Join(dir, "nope")}}}, "token_file"},
		{"bad sha256", api.Options{Tokens: []config.Token{{Name: "a", Role: "viewer", SHA256: "abc"}}}, "sha256: want 64 hex digits"},
		{"both", api.Options{Tokens: []config.Token{{Name: "a", Role: "viewer", SHA256: sha(viewerToken), TokenFile: short}}}, "exactly one of token_file and sha256"},
		{"bad role", api.Options{Tokens: []config.Token{{Name: "a", Role: "root", SHA256: sha(viewerToken)}}}, `role "root"`},
		{"name with a slash", api.Options{Tokens: []config.Token{{Name: "a/b", Role: "viewer", SHA256: sha(viewerToken)}}}, "no spaces, control characters or '/'"},
		{"same name", api.Options{Tokens: []config.Token{
			{Name: "a", Role: "viewer", SHA256: sha(viewerToken)}, {Name: "a", Role: "admin", SHA256: sha(adminToken)}}}, "another token has this name"},
		{"same token", api.Options{Tokens: []config.Token{
			{Name: "a", Role: "viewer", SHA256: sha(viewerToken)}, {Name: "b", Role: "admin", SHA256: sha(viewerToken)}}}, "the same token as a"},
		{"route without role", api.Options{Routes: []api.Route{{Method: "GET", Path: "/x", Handler: ok}}}, "role 0 is not viewer"},
		{"route conflict", api.Options{Routes: []api.Route{
			{Method: "GET", Path: "/x", Role: api.RoleViewer, Handler: ok}, {Method: "GET", Path: "/x", Role: api.RoleAdmin, Handler: ok}}}, "api route GET /x"},
		{"relative path", api.Options{Routes: []api.Route{{Method: "GET", Path: "x", Role: api.RoleViewer, Handler: ok}}}, "must start with '/'"},
		{"half TLS", api.Options{TLS: api.TLS{CertFile: "c.pem"}}, "cert and key go together"},
		{"rate", api.Options{RateLimit: api.RateLimit{PerSecond: 1}}, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Registry = prometheus.NewRegistry()
			_, err := api.New(tc.o)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "hunter2", "errors never show a token")
		})
	}

	// a world-readable token file works, with a warning
	loose := filepath.Join(dir, "loose")
	require.NoError(t, os.WriteFile(loose, []byte(viewerToken), 0o644))
	require.NoError(t, os.Chmod(loose, 0o644))
	var log syncbuf.Buffer
	_, err := api.New(api.Options{Tokens: []config.Token{{Name: "a", Role: "viewer", TokenFile: loose}}, Log: zerolog.New(&log)})
	require.NoError(t, err)
	require.Contains(t, log.String(), "readable by group or others")
}

func TestConcurrentRequests(t *testing.T) {
	ts := newTestServer(t, func(o *api.Options) { o.RateLimit = api.RateLimit{PerSecond: 1, Burst: 1000} })
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			tok := []string{viewerToken, analystToken, adminToken}[i%3]
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, ts.url+"/api/v1/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 32.0, metric(t, ts.reg, "tripline_api_requests_total", map[string]string{"route": "GET /api/v1/whoami", "code": "200"}))
	require.Equal(t, 32.0, metric(t, ts.reg, "tripline_api_request_duration_seconds", map[string]string{"route": "GET /api/v1/whoami"}))
}
