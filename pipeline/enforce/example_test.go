package enforce_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/internal/embednats"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// proxy is a tool gateway: it builds the Call from the request, asks the
// enforcer, answers 403 (revoked) or 423 (held for approval) or forwards
// to the tool, and publishes the tool-call event either way.
func proxy(enf *enforce.Enforcer, events *enforce.Producer, tool *url.URL) http.Handler {
	forward := httputil.NewSingleHostReverseProxy(tool)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header
		action := pipeline.NormalizeAction(h.Get("X-Tool-Action")) // GET → read, POST → send, …
		call := enforce.Call{
			Tenant:     h.Get("X-Tenant"),
			Agent:      h.Get("X-Agent"), // in production: the verified SPIFFE ID of the client
			Instance:   h.Get("X-Agent-Instance"),
			Session:    h.Get("X-Session"),
			Task:       h.Get("X-Task"),
			Principal:  h.Get("X-On-Behalf-Of"),
			Credential: h.Get("X-Credential-Id"),
			Tool:       h.Get("X-Tool"),
			Action:     string(action),
		}
		ev := &pipeline.Event{
			ID: h.Get("X-Request-Id"), Time: time.Now(), Tenant: call.Tenant, Agent: call.Agent,
			Instance: call.Instance, Session: call.Session, Task: call.Task, Principal: call.Principal,
			Credential: call.Credential, Tool: call.Tool, Action: action, Resource: r.URL.Path,
			Outcome: pipeline.OutcomeOK,
		}
		switch v := enf.Check(&call); v.Decision {
		case enforce.Deny:
			ev.Outcome = pipeline.OutcomeDenied
			http.Error(w, "access revoked: "+v.Reason, http.StatusForbidden)
		case enforce.Hold:
			ev.Outcome, ev.Approval = pipeline.OutcomeDenied, pipeline.ApprovalPending
			http.Error(w, "held for approval: "+v.Reason, http.StatusLocked)
		default:
			forward.ServeHTTP(w, r)
		}
		if err := events.Publish(r.Context(), ev); err != nil {
			fmt.Println("event not published:", err)
		}
	})
}

func Example_proxy() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "tripline-example")
	defer os.RemoveAll(dir)

	// NATS with Tripline's streams and buckets (production: a cluster and
	// `tripline nats init`).
	srv, err := embednats.Start(embednats.Options{StoreDir: dir})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1))
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := topology.Provision(ctx, js, topology.Config{Memory: true}); err != nil {
		panic(err)
	}

	// The engine's signing key; the proxy gets only the public file.
	_, priv, _ := enforce.GenerateKey()
	keyPath := filepath.Join(dir, "engine.key")
	_ = enforce.WriteKeyPair(keyPath, priv)
	pub, err := enforce.LoadPublicKey(keyPath + ".pub")
	if err != nil {
		panic(err)
	}
	keys := enforce.Keyring{}
	keys.Add(pub)

	enf, err := enforce.New(nc, enforce.Config{ID: "gateway-1", Keyring: keys, FailPolicy: enforce.FailClosed})
	if err != nil {
		panic(err)
	}
	if err := enf.Start(ctx); err != nil {
		panic(err)
	}
	defer enf.Close()
	events := enforce.NewProducer(js, enforce.ProducerConfig{})

	tool := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "tool says ok") }))
	defer tool.Close()
	toolURL, _ := url.Parse(tool.URL)
	gateway := proxy(enf, events, toolURL)

	// The engine revokes session s-2 and holds agent "exporter" for approval.
	signer := enforce.NewSigner(priv)
	now := time.Now()
	kv, _ := js.KeyValue(ctx, pipeline.RevocationsBucket)
	for _, c := range []*enforce.Command{
		{ID: enforce.CommandID("decision-1", "session"), Kind: enforce.KindRevoke, Tenant: "acme", Scope: enforce.ScopeSession,
			Value: "s-2", Reason: "scanning fan-out", Rule: "fanout-scan", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"},
		{ID: enforce.CommandID("decision-2", "agent"), Kind: enforce.KindHold, Tenant: "acme", Scope: enforce.ScopeAgent,
			Value: "spiffe://acme.example/agents/exporter", Reason: "bulk export", Rule: "bulk-read", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"},
	} {
		signer.Sign(c)
		b, _ := json.Marshal(c)
		_, _ = kv.Put(ctx, c.ID, b)
	}
	for deadline := time.Now().Add(5 * time.Second); enf.Active() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}

	for i, r := range []struct{ agent, session, method string }{
		{"spiffe://acme.example/agents/support", "s-1", "GET"},
		{"spiffe://acme.example/agents/support", "s-2", "GET"},
		{"spiffe://acme.example/agents/exporter", "s-3", "GET"},
		{"spiffe://acme.example/agents/exporter", "s-3", "POST"},
	} {
		req := httptest.NewRequest(r.method, "/crm/contacts", nil)
		req.Header.Set("X-Request-Id", fmt.Sprintf("req-%d", i))
		req.Header.Set("X-Tenant", "acme")
		req.Header.Set("X-Agent", r.agent)
		req.Header.Set("X-Session", r.session)
		req.Header.Set("X-Tool", "crm.export")
		req.Header.Set("X-Tool-Action", r.method)
		rec := httptest.NewRecorder()
		gateway.ServeHTTP(rec, req)
		fmt.Printf("%s %s %s: %d %s\n", r.session, strings.TrimPrefix(r.agent, "spiffe://acme.example/agents/"), r.method,
			rec.Code, strings.TrimSpace(rec.Body.String()))
	}

	if err := events.Close(ctx); err != nil {
		panic(err)
	}
	st, _ := js.Stream(ctx, pipeline.EventsStream)
	info, _ := st.Info(ctx)
	fmt.Println("events in the stream:", info.State.Msgs)
	// Output:
	// s-1 support GET: 200 tool says ok
	// s-2 support GET: 403 access revoked: scanning fan-out
	// s-3 exporter GET: 200 tool says ok
	// s-3 exporter POST: 423 held for approval: bulk export
	// events in the stream: 4
}
