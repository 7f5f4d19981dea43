package actions_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/actions"
	"github.com/tripline/tripline/internal/api"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/internal/syncbuf"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

const (
	viewerToken  = "viewer-token-0123456789abcdef0123456789abcdef0123456789"
	analystToken = "analyst-token-0123456789abcdef0123456789abcdef012345678"
)

func sha(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// env is a JetStream server with Tripline's topology, an issuer on it and
// the API in front.
type env struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	analyst *enforce.Signer // the analysts' key, as the API signs with it
	engine  *enforce.Signer
	kr      enforce.Keyring
	url     string
	log     *syncbuf.Buffer
}

func newSigner(t *testing.T) *enforce.Signer {
	t.Helper()
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	return enforce.NewSigner(priv)
}

func tokens() []config.Token {
	return []config.Token{
		{Name: "vera", Role: "viewer", SHA256: sha(viewerToken)},
		{Name: "alice", Role: "analyst", SHA256: sha(analystToken)},
	}
}

func startEnv(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.Connect(t)
	ctx := context.Background()
	require.NoError(t, topology.Provision(ctx, js, topology.Config{Memory: true, Partitions: 4}))
	e := &env{js: js, analyst: newSigner(t), engine: newSigner(t), kr: enforce.Keyring{}, log: &syncbuf.Buffer{}}
	e.kr.Add(e.analyst.Public())
	e.kr.Add(e.engine.Public())
	log := zerolog.New(e.log)
	is, err := actions.Open(ctx, js, e.analyst, log)
	require.NoError(t, err)
	e.kv = is.Bucket.(jetstream.KeyValue)
	srv, err := api.New(api.Options{Tokens: tokens(), Routes: actions.Routes(is), Registry: prometheus.NewRegistry(), Log: log})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	e.url = hs.URL
	return e
}

type reply struct {
	status int
	body   string
}

func post(t *testing.T, url, token, body string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{status: resp.StatusCode, body: string(b)}
}

func (e *env) post(t *testing.T, path, token, body string) reply {
	t.Helper()
	return post(t, e.url+"/api/v1"+path, token, body)
}

func response(t *testing.T, r reply) actions.Response {
	t.Helper()
	var out actions.Response
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&out), r.body)
	return out
}

func errorOf(t *testing.T, r reply) string {
	t.Helper()
	var e api.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(r.body), &e), r.body)
	return e.Error
}

// command reads the command stored at key and verifies its signature.
func (e *env) command(t *testing.T, key string) *enforce.Command {
	t.Helper()
	ent, err := e.kv.Get(context.Background(), key)
	require.NoError(t, err)
	c := new(enforce.Command)
	require.NoError(t, json.Unmarshal(ent.Value(), c))
	require.NoError(t, e.kr.Verify(c))
	return c
}

func (e *env) keys(t *testing.T) []string {
	t.Helper()
	keys, err := e.kv.Keys(context.Background())
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	require.NoError(t, err)
	return keys
}

// audit returns the command ids in the audit log, in order.
func (e *env) audit(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, pipeline.RevocationsStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := e.js.OrderedConsumer(ctx, pipeline.RevocationsStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(3*time.Second))
	require.NoError(t, err)
	var ids []string
	for m := range batch.Messages() {
		var c enforce.Command
		require.NoError(t, json.Unmarshal(m.Data(), &c))
		require.NoError(t, e.kr.Verify(&c))
		require.Equal(t, c.ID, m.Headers().Get(jetstream.MsgIDHeader))
		require.Equal(t, pipeline.RevocationsSubjectPrefix+c.Tenant, m.Subject())
		ids = append(ids, c.ID)
	}
	require.NoError(t, batch.Error())
	return ids
}

// putHold stores a hold issued by the engine.
func (e *env) putHold(t *testing.T, decision string) *enforce.Command {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	h := &enforce.Command{
		ID: enforce.CommandID(decision, enforce.ScopeSession), Kind: enforce.KindHold, Tenant: "acme",
		Scope: enforce.ScopeSession, Value: "s-" + decision, Agent: "spiffe://acme.dev/agent/ops",
		Reason: "The agent called a tool its task did not declare", Rule: "tool-outside-task-scope", RuleVersion: "1",
		Decision: decision, Evidence: []string{"e-9"}, IssuedAt: now, ExpiresAt: now.Add(30 * time.Minute), Issuer: "engine/w-1",
	}
	e.engine.Sign(h)
	b, err := json.Marshal(h)
	require.NoError(t, err)
	_, err = e.kv.Create(context.Background(), h.ID, b)
	require.NoError(t, err)
	return h
}

func TestAPIRevokeAndLift(t *testing.T) {
	e := startEnv(t)
	r := e.post(t, "/revocations", analystToken,
		`{"tenant":"acme","scope":"session","value":"s-1","reason":"exfiltration confirmed, INC-311","duration":"2h"}`)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	out := response(t, r)
	require.Regexp(t, `^rv-[0-9a-f]{30}$`, out.ID)
	require.Len(t, out.Commands, 1)

	// In the bucket, signed with the analysts' key, verifiable by enforcers.
	rv := e.command(t, out.ID)
	require.Equal(t, *out.Commands[0], *rv)
	require.Equal(t, enforce.KindRevoke, rv.Kind)
	require.Equal(t, []string{"acme", enforce.ScopeSession, "s-1", ""}, []string{rv.Tenant, rv.Scope, rv.Value, rv.Tool})
	require.Equal(t, "analyst/alice", rv.Issuer)
	require.Equal(t, e.analyst.KeyID, rv.KeyID)
	require.Equal(t, "exfiltration confirmed, INC-311", rv.Reason)
	require.WithinDuration(t, time.Now().Add(2*time.Hour), rv.ExpiresAt, time.Minute)

	// Lift it.
	r = e.post(t, "/revocations/"+out.ID+"/lift", analystToken, `{"reason":"false positive, INC-312"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	lifted := response(t, r)
	require.Equal(t, enforce.CommandID(out.ID, enforce.KindLift), lifted.ID)
	lift := e.command(t, out.ID) // at the lifted command's key
	require.Equal(t, enforce.KindLift, lift.Kind)
	require.Equal(t, lifted.ID, lift.ID)
	require.Equal(t, out.ID, lift.Lifts)
	require.Equal(t, "analyst/alice", lift.Issuer)
	require.Equal(t, "false positive, INC-312", lift.Reason)
	require.Equal(t, []string{out.ID, lift.ID}, e.audit(t))

	// Once only.
	r = e.post(t, "/revocations/"+out.ID+"/lift", analystToken, `{"reason":"again"}`)
	require.Equal(t, http.StatusConflict, r.status, r.body)
	require.Contains(t, errorOf(t, r), out.ID+" was already lifted by analyst/alice")
	r = e.post(t, "/revocations/rv-nope/lift", analystToken, `{"reason":"r"}`)
	require.Equal(t, http.StatusNotFound, r.status, r.body)
	require.Equal(t, "no command rv-nope in tl_revocations: never issued, expired, or a wrong id", errorOf(t, r))
	require.Len(t, e.audit(t), 2)

	// A tool revocation with the default duration.
	r = e.post(t, "/revocations", analystToken,
		`{"tenant":"acme","scope":"tool","value":"spiffe://acme.dev/agent/coder","tool":"shell.exec","reason":"no shell"}`)
	require.Equal(t, http.StatusCreated, r.status, r.body)
	tool := e.command(t, response(t, r).ID)
	require.Equal(t, "shell.exec", tool.Tool)
	require.Equal(t, actions.DefaultFor, tool.ExpiresAt.Sub(tool.IssuedAt))

	// The issue is logged with who and why.
	require.Contains(t, e.log.String(), `"issuer":"analyst/alice"`)
	require.NotContains(t, e.log.String(), analystToken)
}

func TestAPIViewerCannotAct(t *testing.T) {
	e := startEnv(t)
	r := e.post(t, "/revocations", viewerToken, `{"tenant":"acme","scope":"session","value":"s-1","reason":"r"}`)
	require.Equal(t, http.StatusForbidden, r.status, r.body)
	require.Empty(t, e.keys(t), "nothing written")
	require.Empty(t, e.audit(t), "nothing in the audit log")

	h := e.putHold(t, "d-1")
	for _, path := range []string{"/revocations/" + h.ID + "/lift", "/holds/" + h.ID + "/approve", "/holds/" + h.ID + "/deny"} {
		r = e.post(t, path, viewerToken, `{"reason":"r"}`)
		require.Equal(t, http.StatusForbidden, r.status, path)
	}
	require.Equal(t, []string{h.ID}, e.keys(t))
	require.Equal(t, enforce.KindHold, e.command(t, h.ID).Kind, "the hold stands")
	require.Empty(t, e.audit(t))

	// and without a token, nothing either
	r = post(t, e.url+"/api/v1/revocations", "", `{"tenant":"acme","scope":"session","value":"s-1","reason":"r"}`)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, []string{h.ID}, e.keys(t))
}

func TestAPIApproveAndDeny(t *testing.T) {
	e := startEnv(t)
	h1 := e.putHold(t, "d-1")
	r := e.post(t, "/holds/"+h1.ID+"/approve", analystToken, `{"reason":"change CHG-88"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	out := response(t, r)
	lift := e.command(t, h1.ID)
	require.Equal(t, out.ID, lift.ID)
	require.Equal(t, enforce.KindLift, lift.Kind)
	require.Equal(t, []string{"approved"}, lift.Tags)
	require.Equal(t, "analyst/alice", lift.Issuer)

	h2 := e.putHold(t, "d-2")
	r = e.post(t, "/holds/"+h2.ID+"/deny", analystToken, `{"reason":"not an approved change","duration":"24h"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	out = response(t, r)
	rvID := enforce.CommandID(h2.ID, "deny")
	require.Equal(t, rvID, out.ID)
	require.Len(t, out.Commands, 2)
	rv := e.command(t, rvID)
	require.Equal(t, enforce.KindRevoke, rv.Kind)
	require.Equal(t, []string{h2.Tenant, h2.Scope, h2.Value, h2.Rule, h2.Decision}, []string{rv.Tenant, rv.Scope, rv.Value, rv.Rule, rv.Decision})
	require.Equal(t, []string{"denied"}, rv.Tags)
	require.Equal(t, 24*time.Hour, rv.ExpiresAt.Sub(rv.IssuedAt))
	lift2 := e.command(t, h2.ID)
	require.Equal(t, enforce.KindLift, lift2.Kind)
	require.Equal(t, out.Commands[1].ID, lift2.ID)
	require.Equal(t, []string{lift.ID, rvID, lift2.ID}, e.audit(t))

	// Only holds, and only once.
	r = e.post(t, "/holds/"+rvID+"/approve", analystToken, `{"reason":"oops"}`)
	require.Equal(t, http.StatusConflict, r.status)
	require.Equal(t, rvID+" is a revoke, not a hold: lift it with POST /api/v1/revocations/{id}/lift", errorOf(t, r))
	r = e.post(t, "/holds/"+h2.ID+"/deny", analystToken, `{"reason":"again"}`)
	require.Equal(t, http.StatusConflict, r.status)
	require.Contains(t, errorOf(t, r), "already lifted")
}

func TestAPIBadRequests(t *testing.T) {
	e := startEnv(t)
	h := e.putHold(t, "d-1")
	for _, tc := range []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"unknown field", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"r","for":"1h"}`, 400, `body: unknown field "for"`},
		{"bad tenant", "/revocations", `{"tenant":"acme.*","scope":"session","value":"s-1","reason":"r"}`, 400, `tenant: "acme.*": a tenant holds only ASCII letters`},
		{"bad scope", "/revocations", `{"tenant":"acme","scope":"galaxy","value":"s-1","reason":"r"}`, 400, `scope: "galaxy": use one of session, instance`},
		{"no value", "/revocations", `{"tenant":"acme","scope":"session","reason":"r"}`, 400, "value: is empty"},
		{"no reason", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1"}`, 400, "reason: required"},
		{"blank reason", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"  "}`, 400, "reason: required"},
		{"control characters", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1\r\nx","reason":"r"}`, 400, "value: has control characters"},
		{"tool without scope tool", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","tool":"x","reason":"r"}`, 400, "tool: goes with scope tool only"},
		{"scope tool without tool", "/revocations", `{"tenant":"acme","scope":"tool","value":"spiffe://a/b","reason":"r"}`, 400, "tool: scope tool needs the tool"},
		{"duration a number", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"r","duration":3600}`, 400, `duration: want a duration string`},
		{"duration garbage", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"r","duration":"soon"}`, 400, `duration: "soon": want a positive duration`},
		{"duration negative", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"r","duration":"-1h"}`, 400, `duration: "-1h": want a positive duration`},
		{"duration too long", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"r","duration":"100000h"}`, 400, "duration: 100000h0m0s: at most 8784h0m0s"},
		{"too long a reason", "/revocations", `{"tenant":"acme","scope":"session","value":"s-1","reason":"` + strings.Repeat("x", 2000) + `"}`, 400, "reason: at most 1024 bytes"},
		{"lift without reason", "/revocations/" + h.ID + "/lift", `{}`, 400, "reason: required"},
		{"lift with a duration", "/revocations/" + h.ID + "/lift", `{"reason":"r","duration":"1h"}`, 400, `body: unknown field "duration"`},
		{"approve with a duration", "/holds/" + h.ID + "/approve", `{"reason":"r","duration":"1h"}`, 400, `body: unknown field "duration"`},
		{"bad id", "/revocations/rv.1/lift", `{"reason":"r"}`, 400, `id: "rv.1" is not a command id`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(t, tc.path, analystToken, tc.body)
			require.Equal(t, tc.status, r.status, r.body)
			require.Contains(t, errorOf(t, r), tc.msg)
		})
	}
	require.Equal(t, []string{h.ID}, e.keys(t), "nothing written")
	require.Empty(t, e.audit(t))
}

// brokenAudit is an audit log that does not answer.
type brokenAudit struct {
	jetstream.Publisher
	err   error
	block bool
}

func (b brokenAudit) PublishMsg(ctx context.Context, _ *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if b.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, b.err
}

// TestAPIWhenNATSFails: the caller gets 503 with what to do, nothing
// reaches the bucket, and a request that outlives its deadline ends.
func TestAPIWhenNATSFails(t *testing.T) {
	e := startEnv(t)
	for _, tc := range []struct {
		name    string
		audit   brokenAudit
		timeout time.Duration
		msg     string
	}{
		{"no stream", brokenAudit{err: nats.ErrNoResponders}, 0, "audit log: stream TL_REVOCATIONS does not answer: run 'tripline nats init' first"},
		{"timeout", brokenAudit{block: true}, 50 * time.Millisecond, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &syncbuf.Buffer{}
			is := &actions.Issuer{Audit: tc.audit, Bucket: e.kv, Signer: e.analyst, Log: zerolog.New(log)}
			srv, err := api.New(api.Options{Tokens: tokens(), Routes: actions.Routes(is), Registry: prometheus.NewRegistry(),
				Log: zerolog.New(log), Timeout: tc.timeout})
			require.NoError(t, err)
			hs := httptest.NewServer(srv)
			defer hs.Close()
			r := post(t, hs.URL+"/api/v1/revocations", analystToken, `{"tenant":"acme","scope":"session","value":"s-1","reason":"r"}`)
			require.Equal(t, http.StatusServiceUnavailable, r.status, r.body)
			require.Contains(t, errorOf(t, r), tc.msg)
			require.Empty(t, e.keys(t))
		})
	}
}

func TestRevokeValidate(t *testing.T) {
	ok := actions.Revoke{Tenant: "acme", Scope: "session", Value: "s-1", Reason: "r"}
	require.NoError(t, ok.Validate())
	for _, tc := range []struct {
		edit  func(*actions.Revoke)
		field string
	}{
		{func(r *actions.Revoke) { r.Tenant = "" }, "tenant"},
		{func(r *actions.Revoke) { r.Tenant = "a b" }, "tenant"},
		{func(r *actions.Revoke) { r.Scope = "" }, "scope"},
		{func(r *actions.Revoke) { r.Value = " " }, "value"},
		{func(r *actions.Revoke) { r.Value = strings.Repeat("v", actions.MaxText+1) }, "value"},
		{func(r *actions.Revoke) { r.Scope, r.Tool = "tool", "" }, "tool"},
		{func(r *actions.Revoke) { r.Scope, r.Tool = "tool", "a\x00b" }, "tool"},
		{func(r *actions.Revoke) { r.Tool = "x" }, "tool"},
		{func(r *actions.Revoke) { r.For = -time.Second }, "for"},
		{func(r *actions.Revoke) { r.For = actions.MaxFor + 1 }, "for"},
		{func(r *actions.Revoke) { r.Reason = "" }, "reason"},
		{func(r *actions.Revoke) { r.Reason = "a\x1bb" }, "reason"},
	} {
		r := ok
		tc.edit(&r)
		err := r.Validate()
		require.ErrorIs(t, err, actions.ErrInvalid, "%+v", r)
		var ae *actions.Error
		require.ErrorAs(t, err, &ae)
		require.Equal(t, tc.field, ae.Field, err.Error())
	}
	multi := ok
	multi.Reason = "line one\n\tline two"
	require.NoError(t, multi.Validate(), "a reason may have lines")

	for _, name := range []string{"", "a b", "a/b", "a\tb"} {
		_, err := actions.IssuerName(name)
		require.ErrorIs(t, err, actions.ErrInvalid, name)
	}
	issuer, err := actions.IssuerName("alice")
	require.NoError(t, err)
	require.Equal(t, "analyst/alice", issuer)
	for _, id := range []string{"", "rv-1 x", "rv.1", "rv-*", "rv->", strings.Repeat("a", actions.MaxID+1)} {
		require.ErrorIs(t, actions.ValidID(id), actions.ErrInvalid, id)
	}
	require.NoError(t, actions.ValidID(enforce.CommandID("d", "session")))
}

// TestIssuerDenyResumes: a deny that stopped after its revocation was
// written finishes when run again, keeping that revocation.
func TestIssuerDenyResumes(t *testing.T) {
	e := startEnv(t)
	is := &actions.Issuer{Audit: e.js, Bucket: e.kv, Signer: e.analyst, Log: zerolog.Nop()}
	h := e.putHold(t, "d-7")
	ctx := context.Background()
	// the revocation of an earlier, interrupted deny
	first := &enforce.Command{ID: enforce.CommandID(h.ID, "deny"), Kind: enforce.KindRevoke, Tenant: h.Tenant, Scope: h.Scope,
		Value: h.Value, Reason: "first try", IssuedAt: time.Now().UTC(), ExpiresAt: time.Now().UTC().Add(time.Hour), Issuer: "analyst/alice"}
	e.analyst.Sign(first)
	b, err := json.Marshal(first)
	require.NoError(t, err)
	_, err = e.kv.Create(ctx, first.ID, b)
	require.NoError(t, err)

	res, err := is.Deny(ctx, "analyst/alice", h.ID, "second try", 0)
	require.NoError(t, err)
	require.Equal(t, first.ID, res.Revocation.ID)
	require.Equal(t, "first try", e.command(t, first.ID).Reason, "the earlier revocation stands")
	require.Equal(t, enforce.KindLift, e.command(t, h.ID).Kind)
}

// TestRoutesShareQueryPaths: the actions live beside the investigation
// queries, which GET the same paths.
func TestRoutesShareQueryPaths(t *testing.T) {
	is := &actions.Issuer{Signer: newSigner(t), Log: zerolog.Nop()}
	list := api.Route{Method: http.MethodGet, Path: "/revocations", Role: api.RoleViewer, Handler: func(w http.ResponseWriter, _ *http.Request) {
		api.WriteJSON(w, http.StatusOK, []string{})
	}}
	srv, err := api.New(api.Options{Tokens: tokens(), Routes: append(actions.Routes(is), list), Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	req, err := http.NewRequest(http.MethodGet, hs.URL+"/api/v1/revocations", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	req.Method = http.MethodPut
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "POST, GET, HEAD", resp.Header.Get("Allow"))
}
