package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/internal/sim"
	"github.com/tripline/tripline/internal/syncbuf"
	"github.com/tripline/tripline/internal/testgen"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// opsRun runs a command line (the operator commands are registered by
// root.go through extraCommands).
func opsRun(ctx context.Context, args []string, e env) int { return run(ctx, args, e) }

// ops runs an operator command line in-process.
func ops(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncbuf.Buffer
	code = opsRun(context.Background(), args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

// opsNATS is a JetStream server with Tripline's topology (4 partitions).
type opsNATS struct {
	url string
	js  jetstream.JetStream
	kv  jetstream.KeyValue
}

func startNATS(t *testing.T) *opsNATS {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.Connect(t)
	ctx := context.Background()
	require.NoError(t, topology.Provision(ctx, js, topology.Config{Memory: true, Partitions: 4}))
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	return &opsNATS{url: s.URL, js: js, kv: kv}
}

// messages returns every message of a stream.
func (n *opsNATS) messages(t *testing.T, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := n.js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := n.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	batch, err := cons.Fetch(int(info.State.Msgs), jetstream.FetchMaxWait(3*time.Second))
	require.NoError(t, err)
	var out []jetstream.Msg
	for m := range batch.Messages() {
		out = append(out, m)
	}
	require.NoError(t, batch.Error())
	require.Len(t, out, int(info.State.Msgs))
	return out
}

// command reads the command stored at key and verifies it with kr.
func (n *opsNATS) command(t *testing.T, kr enforce.Keyring, key string) *enforce.Command {
	t.Helper()
	ent, err := n.kv.Get(context.Background(), key)
	require.NoError(t, err)
	c := new(enforce.Command)
	require.NoError(t, json.Unmarshal(ent.Value(), c))
	require.NoError(t, kr.Verify(c))
	return c
}

// newKey writes a key pair under dir and returns its path and signer.
func newKey(t *testing.T, dir, name string) (string, *enforce.Signer) {
	t.Helper()
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	path := filepath.Join(dir, name+".key")
	require.NoError(t, enforce.WriteKeyPair(path, priv))
	return path, enforce.NewSigner(priv)
}

func TestOpsHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		seen++
		path := strings.Fields(c.CommandPath())[1:]
		code, out, errOut := ops(t, "", append(path, "--help")...)
		require.Equal(t, 0, code, "%s --help: %s", c.CommandPath(), errOut)
		require.Contains(t, out, "Usage:", c.CommandPath())
		require.Contains(t, out, "Examples:", c.CommandPath())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	a := &app{}
	root := newRootCmd(a)
	names := map[string]bool{}
	for _, f := range extraCommands {
		c := f(a)
		names[c.Name()] = true
	}
	for _, c := range root.Commands() {
		if names[c.Name()] {
			walk(c)
		}
	}
	require.Equal(t, 20, seen)
}

func TestOpsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	key, _ := newKey(t, dir, "alice")
	revoke := []string{"revoke", "--nats", "nats://127.0.0.1:1", "--key", key, "--as", "alice", "--tenant", "acme"}
	for _, args := range [][]string{
		{"keys", "generate"},
		{"publish"},
		{"simulate", "--rate", "0"},
		{"simulate", "--scenarios", "runaway-loop,bogus", "--out", filepath.Join(dir, "x.jsonl")},
		{"simulate", "--duration", "10s", "--out", filepath.Join(dir, "x.jsonl")},
		{"simulate", "--start", "2026-01-01T00:00:00Z"},
		{"simulate", "--out", filepath.Join(dir, "x.jsonl"), "--partitions", "8"},
		append(revoke[:len(revoke):len(revoke)], "--scope", "session", "--value", "s-1"), // no --reason
		append(revoke[:len(revoke):len(revoke)], "--scope", "session", "--value", "s-1", "--reason", "  "),
		append(revoke[:len(revoke):len(revoke)], "--scope", "galaxy", "--value", "s-1", "--reason", "r"),
		append(revoke[:len(revoke):len(revoke)], "--scope", "tool", "--value", "spiffe://a/b", "--reason", "r"),
		append(revoke[:len(revoke):len(revoke)], "--scope", "session", "--value", "s-1", "--tool", "x", "--reason", "r"),
		append(revoke[:len(revoke):len(revoke)], "--scope", "session", "--value", "s-1", "--for", "-1h", "--reason", "r"),
		{"revoke", "--tenant", "a.b", "--scope", "session", "--value", "s-1", "--reason", "r", "--key", key},
		{"lift", "--reason", "r", "--key", key},
		{"approve", "rv-1", "--key", key},
		{"watch", "decisions", "--tenant", "a*"},
		{"nats", "init", "--replicas", "9"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, errOut := ops(t, "", args...)
			require.Equal(t, 2, code, errOut)
			require.Contains(t, errOut, "Run 'tripline --help' for usage.")
		})
	}
}

func TestKeysGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "engine.key")
	code, out, errOut := ops(t, "", "keys", "generate", path)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^[0-9a-f]{16}\n$`, out)
	id := strings.TrimSpace(out)

	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	priv, err := enforce.LoadPrivateKey(path)
	require.NoError(t, err)
	pub, err := enforce.LoadPublicKey(path + ".pub")
	require.NoError(t, err)
	require.Equal(t, id, enforce.KeyID(pub))
	require.Equal(t, id, enforce.NewSigner(priv).KeyID)

	// no overwrite without --force
	code, _, errOut = ops(t, "", "keys", "generate", path)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "use --force")
	again, err := enforce.LoadPrivateKey(path)
	require.NoError(t, err)
	require.Equal(t, priv, again)

	require.NoError(t, os.Chmod(path, 0o644))
	code, out, errOut = ops(t, "", "keys", "generate", path, "--force")
	require.Equal(t, 0, code, errOut)
	require.NotEqual(t, id, strings.TrimSpace(out))
	st, err = os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "a replaced key is private again")
}

func TestNATSInitIsIdempotent(t *testing.T) {
	s := natstest.Start(t)
	code, first, errOut := ops(t, "", "nats", "init", "--nats", s.URL, "--partitions", "4")
	require.Equal(t, 0, code, errOut)
	code, second, errOut := ops(t, "", "nats", "init", "--nats", s.URL, "--partitions", "4")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, first, second)
	require.Equal(t, "JetStream topology on "+s.URL+": 4 event partitions\n\n"+
		"KIND    NAME            SUBJECTS              STORAGE  REPLICAS  MESSAGES\n"+
		"stream  TL_EVENTS       tl.events.>           file            1         0\n"+
		"stream  TL_DLQ          tl.dlq.>              file            1         0\n"+
		"stream  TL_DECISIONS    tl.decisions.>        file            1         0\n"+
		"stream  TL_REVOCATIONS  tl.revocations.>      file            1         0\n"+
		"stream  TL_ACKS         tl.acks.>             file            1         0\n"+
		"bucket  tl_revocations  $KV.tl_revocations.>  file            1         0\n"+
		"bucket  tl_owners       $KV.tl_owners.>       file            1         0\n"+
		"bucket  tl_rules        $KV.tl_rules.>        file            1         0\n", first)

	// nothing listening
	code, _, errOut = ops(t, "", "nats", "init", "--nats", "nats://127.0.0.1:1")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "connect to NATS at nats://127.0.0.1:1")
}

// eventsFile writes valid events with two malformed lines among them.
func eventsFile(t *testing.T, gz bool) (string, []pipeline.Event) {
	t.Helper()
	evs := testgen.Events(testgen.Config{Seed: 3, Events: 30, Agents: 6, Tenants: 2})
	var b bytes.Buffer
	for i := range evs {
		switch i {
		case 3:
			b.WriteString("{\"id\": \"broken\"\n") // line 4: not JSON
		case 17:
			b.WriteString(`{"id":"no-tenant","time":"2026-01-01T00:00:00Z","agent":"spiffe://x.example/a","tool":"t","action":"read"}` + "\n") // line 19
		}
		b.Write(evs[i].AppendJSON(nil))
		b.WriteString("\n")
	}
	name := "events.jsonl"
	data := b.Bytes()
	if gz {
		name += ".gz"
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, err := zw.Write(data)
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		data = z.Bytes()
	}
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path, evs
}

func TestPublish(t *testing.T) {
	n := startNATS(t)
	path, evs := eventsFile(t, true)
	code, out, errOut := ops(t, "", "publish", "--file", path, "--nats", n.url, "--partitions", "4")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^published 30 events from 32 lines \(2 invalid, 0 duplicates\) to TL_EVENTS with 4 partitions in `, out)
	require.Contains(t, errOut, path+": line 4: ")
	require.Contains(t, errOut, path+": line 19: ")

	byID := map[string]pipeline.Event{}
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	msgs := n.messages(t, pipeline.EventsStream)
	require.Len(t, msgs, len(evs))
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		ev, ok := byID[id]
		require.True(t, ok, "msg id %q is an event id", id)
		require.Equal(t, pipeline.EventSubject(ev.Tenant, ev.Agent, 4), m.Subject())
		var got pipeline.Event
		require.NoError(t, pipeline.Decode(m.Data(), &got, nil))
		require.Equal(t, id, got.ID)
	}

	// Publishing again adds nothing: the ids are deduplicated.
	code, out, errOut = ops(t, "", "publish", "--file", path, "--nats", n.url, "--partitions", "4")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "published 30 events from 32 lines (2 invalid, 30 duplicates)")
	require.Len(t, n.messages(t, pipeline.EventsStream), len(evs))

	// Strict: stops at line 4, after the three events before it.
	plain, _ := eventsFile(t, false)
	data, err := os.ReadFile(plain)
	require.NoError(t, err)
	code, out, errOut = ops(t, string(data), "publish", "--file", "-", "--nats", n.url, "--partitions", "4", "--strict")
	require.Equal(t, 1, code, errOut)
	require.Contains(t, out, "published 3 events from 4 lines (1 invalid, 3 duplicates)")
	require.Contains(t, errOut, "-: line 4: ")
	require.NotContains(t, errOut, "line 19")
}

func TestPublishNeedsTheStream(t *testing.T) {
	s := natstest.Start(t)
	path, _ := eventsFile(t, false)
	code, _, errOut := ops(t, "", "publish", "--file", path, "--nats", s.URL)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "stream TL_EVENTS does not exist: run 'tripline nats init' first")
}

func TestSimulateFileIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	gen := func(name string, seed string) (events, labels []byte) {
		out, lab := filepath.Join(dir, name+".jsonl"), filepath.Join(dir, name+"-labels.jsonl")
		code, stdout, errOut := ops(t, "", "simulate", "--seed", seed, "--agents", "8", "--rate", "20", "--duration", "90s",
			"--out", out, "--labels", lab)
		require.Equal(t, 0, code, errOut)
		require.Empty(t, stdout)
		require.Regexp(t, `^wrote [0-9,]+ events \(36 attacks\) to .*a?\.jsonl, 2026-01-01T00:00:00Z to 2026-01-01T00:01:`, errOut)
		events, err := os.ReadFile(out)
		require.NoError(t, err)
		labels, err = os.ReadFile(lab)
		require.NoError(t, err)
		return events, labels
	}
	ev1, lab1 := gen("a", "7")
	ev2, lab2 := gen("b", "7")
	require.Equal(t, ev1, ev2)
	require.Equal(t, lab1, lab2)
	ev3, _ := gen("c", "8")
	require.NotEqual(t, ev1, ev3)

	times := map[string]bool{}
	lines := 0
	for line := range bytes.Lines(ev1) {
		var ev pipeline.Event
		require.NoError(t, pipeline.Decode(bytes.TrimSpace(line), &ev, nil))
		times[ev.Time.Format(time.RFC3339Nano)] = true
		lines++
	}
	require.Greater(t, lines, 20*90*8/10)

	seen := map[string]bool{}
	for line := range bytes.Lines(lab1) {
		var l struct {
			Scenario, Tenant, Agent, Session, Credential string
			FirstEventTime                               time.Time `json:"first_event_time"`
		}
		require.NoError(t, json.Unmarshal(line, &l))
		require.NotEmpty(t, l.Tenant)
		require.NotEmpty(t, l.Agent)
		require.NotEmpty(t, l.Session)
		require.NotEmpty(t, l.Credential)
		require.True(t, times[l.FirstEventTime.Format(time.RFC3339Nano)], "the first event of %s is in the file", l.Scenario)
		seen[l.Scenario] = true
	}
	require.Len(t, seen, len(sim.ScenarioNames()))
	for _, name := range sim.ScenarioNames() {
		require.True(t, seen[name], name)
	}
}

func TestSimulateLive(t *testing.T) {
	n := startNATS(t)
	lab := filepath.Join(t.TempDir(), "labels.jsonl")
	code, _, errOut := ops(t, "", "simulate", "--nats", n.url, "--partitions", "4", "--scenarios", "none",
		"--rate", "100", "--duration", "1s", "--labels", lab)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `published ([0-9]+) events \(0 attacks, 0 duplicates\) to TL_EVENTS with 4 partitions`, errOut)
	m := regexp.MustCompile(`published ([0-9]+) events`).FindStringSubmatch(errOut)
	msgs := n.messages(t, pipeline.EventsStream)
	require.Equal(t, m[1], fmt.Sprint(len(msgs)))
	require.InDelta(t, 100, len(msgs), 40)
	start := time.Now().Add(-time.Minute)
	for _, msg := range msgs {
		var ev pipeline.Event
		require.NoError(t, pipeline.Decode(msg.Data(), &ev, nil))
		require.Equal(t, pipeline.EventSubject(ev.Tenant, ev.Agent, 4), msg.Subject())
		require.True(t, ev.Time.After(start), "live events carry the wall clock")
	}
	labels, err := os.ReadFile(lab)
	require.NoError(t, err)
	require.Empty(t, labels)
}

func TestRevokeAndLift(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	key, signer := newKey(t, dir, "alice")
	kr := enforce.Keyring{}
	kr.Add(signer.Public())
	nats := []string{"--nats", n.url, "--key", key, "--as", "alice"}

	code, out, errOut := ops(t, "", append([]string{"revoke", "--tenant", "acme", "--scope", "session", "--value", "s-1",
		"--reason", "exfiltration confirmed, INC-311", "--for", "2h"}, nats...)...)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^rv-[0-9a-f]{30}\n$`, out)
	id := strings.TrimSpace(out)
	rv := n.command(t, kr, id)
	require.Equal(t, enforce.KindRevoke, rv.Kind)
	require.Equal(t, "acme", rv.Tenant)
	require.Equal(t, enforce.ScopeSession, rv.Scope)
	require.Equal(t, "s-1", rv.Value)
	require.Equal(t, "analyst/alice", rv.Issuer)
	require.Equal(t, "exfiltration confirmed, INC-311", rv.Reason)
	require.WithinDuration(t, time.Now().Add(2*time.Hour), rv.ExpiresAt, time.Minute)

	code, out, errOut = ops(t, "", append([]string{"lift", id, "--reason", "false positive"}, nats...)...)
	require.Equal(t, 0, code, errOut)
	liftID := strings.TrimSpace(out)
	require.Equal(t, enforce.CommandID(id, enforce.KindLift), liftID)
	lift := n.command(t, kr, id) // at the lifted command's key
	require.Equal(t, enforce.KindLift, lift.Kind)
	require.Equal(t, liftID, lift.ID)
	require.Equal(t, id, lift.Lifts)
	require.Equal(t, "false positive", lift.Reason)
	require.Equal(t, "analyst/alice", lift.Issuer)

	// The audit log has both, with who and why.
	msgs := n.messages(t, pipeline.RevocationsStream)
	require.Len(t, msgs, 2)
	for i, want := range []*enforce.Command{rv, lift} {
		require.Equal(t, pipeline.RevocationsSubjectPrefix+"acme", msgs[i].Subject())
		require.Equal(t, want.ID, msgs[i].Headers().Get(jetstream.MsgIDHeader))
		var got enforce.Command
		require.NoError(t, json.Unmarshal(msgs[i].Data(), &got))
		require.NoError(t, kr.Verify(&got))
		require.Equal(t, *want, got)
	}

	// Once only; unknown ids are errors.
	code, _, errOut = ops(t, "", append([]string{"lift", id, "--reason", "again"}, nats...)...)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, id+" was already lifted by analyst/alice")
	code, _, errOut = ops(t, "", append([]string{"lift", "rv-nope", "--reason", "r"}, nats...)...)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "no command rv-nope in tl_revocations")
	require.Len(t, n.messages(t, pipeline.RevocationsStream), 2)

	// A tool revocation names the tool.
	code, out, errOut = ops(t, "", append([]string{"revoke", "--tenant", "acme", "--scope", "tool", "--value", "spiffe://acme.dev/agent/coder",
		"--tool", "shell.exec", "--reason", "no shell"}, nats...)...)
	require.Equal(t, 0, code, errOut)
	tool := n.command(t, kr, strings.TrimSpace(out))
	require.Equal(t, "shell.exec", tool.Tool)
	require.Contains(t, errOut, "revoked tool=shell.exec@spiffe://acme.dev/agent/coder in tenant acme")
}

// putHold stores a hold issued by the engine.
func putHold(t *testing.T, n *opsNATS, engine *enforce.Signer, decision string) *enforce.Command {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	h := &enforce.Command{
		ID: enforce.CommandID(decision, enforce.ScopeSession), Kind: enforce.KindHold, Tenant: "acme",
		Scope: enforce.ScopeSession, Value: "s-" + decision, Agent: "spiffe://acme.dev/agent/ops",
		Reason: "The agent called a tool its task did not declare", Rule: "tool-outside-task-scope", RuleVersion: "1",
		Decision: decision, Evidence: []string{"e-9"}, IssuedAt: now, ExpiresAt: now.Add(30 * time.Minute), Issuer: "engine/w-1",
	}
	engine.Sign(h)
	b, err := json.Marshal(h)
	require.NoError(t, err)
	_, err = n.kv.Create(context.Background(), h.ID, b)
	require.NoError(t, err)
	return h
}

func TestApproveAndDeny(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	key, analyst := newKey(t, dir, "bob")
	_, engine := newKey(t, dir, "engine")
	kr := enforce.Keyring{}
	kr.Add(analyst.Public())
	kr.Add(engine.Public())
	flags := []string{"--nats", n.url, "--key", key, "--as", "bob"}

	// approve: a signed lift of the hold
	h1 := putHold(t, n, engine, "d-1")
	code, out, errOut := ops(t, "", append([]string{"approve", h1.ID, "--reason", "change CHG-88"}, flags...)...)
	require.Equal(t, 0, code, errOut)
	lift := n.command(t, kr, h1.ID)
	require.Equal(t, strings.TrimSpace(out), lift.ID)
	require.Equal(t, enforce.KindLift, lift.Kind)
	require.Equal(t, h1.ID, lift.Lifts)
	require.Equal(t, []string{"approved"}, lift.Tags)
	require.Equal(t, "analyst/bob", lift.Issuer)

	// deny: a revocation of the hold's scope, then a lift of the hold
	h2 := putHold(t, n, engine, "d-2")
	code, out, errOut = ops(t, "", append([]string{"deny", h2.ID, "--reason", "not an approved change"}, flags...)...)
	require.Equal(t, 0, code, errOut)
	rvID := enforce.CommandID(h2.ID, "deny")
	require.Equal(t, rvID+"\n", out)
	rv := n.command(t, kr, rvID)
	require.Equal(t, enforce.KindRevoke, rv.Kind)
	require.Equal(t, []string{h2.Tenant, h2.Scope, h2.Value, h2.Rule, h2.Decision}, []string{rv.Tenant, rv.Scope, rv.Value, rv.Rule, rv.Decision})
	require.Equal(t, "not an approved change", rv.Reason)
	require.Equal(t, []string{"denied"}, rv.Tags)
	require.WithinDuration(t, time.Now().Add(30*time.Minute), rv.ExpiresAt, time.Minute, "as long as the hold")
	lift2 := n.command(t, kr, h2.ID)
	require.Equal(t, enforce.KindLift, lift2.Kind)
	require.Equal(t, h2.ID, lift2.Lifts)

	audit := n.messages(t, pipeline.RevocationsStream)
	var ids []string
	for _, m := range audit {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	}
	require.Equal(t, []string{lift.ID, rvID, lift2.ID}, ids)

	// Only holds, and only once.
	code, _, errOut = ops(t, "", append([]string{"deny", h2.ID, "--reason", "again"}, flags...)...)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "already lifted")
	code, _, errOut = ops(t, "", append([]string{"approve", rvID, "--reason", "oops"}, flags...)...)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, rvID+" is a revoke, not a hold: use tripline lift")
}

func TestWatchRevocations(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	_, engine := newKey(t, dir, "engine")
	_, mallory := newKey(t, dir, "mallory")
	good := putHold(t, n, engine, "d-good")
	forged := putHold(t, n, mallory, "d-forged") // a key nobody trusts
	// and a tampered one: signed by the engine, value changed afterwards
	tampered := putHold(t, n, engine, "d-tampered")
	tampered.Value = "s-other"
	b, err := json.Marshal(tampered)
	require.NoError(t, err)
	_, err = n.kv.Put(context.Background(), tampered.ID, b)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- opsRun(ctx, []string{"watch", "revocations", "--nats", n.url, "--key", filepath.Join(dir, "engine.key.pub")},
			env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut})
	}()
	lineOf := func(id string) string {
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, id) {
				return l
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return lineOf(tampered.ID) != "" }, 5*time.Second, 10*time.Millisecond, out.String())

	// a change after the current state
	late := putHold(t, n, engine, "d-late")
	require.Eventually(t, func() bool { return lineOf(late.ID) != "" }, 5*time.Second, 10*time.Millisecond, out.String())
	cancel()
	require.Equal(t, 0, <-done, errOut.String())

	require.True(t, strings.HasPrefix(out.String(), "ISSUED                ID                                 KIND    TENANT      SCOPE"), out.String())
	require.Regexp(t, `hold    acme        session=s-d-good\s+tool-outside-task-scope\s+\S+Z\s+engine/w-1\s+VERIFIED$`, lineOf(good.ID))
	require.Regexp(t, `REJECTED: command signed with an unknown key "`+mallory.KeyID+`"$`, lineOf(forged.ID))
	require.Regexp(t, `REJECTED: command signature does not verify$`, lineOf(tampered.ID))
	require.Regexp(t, `VERIFIED$`, lineOf(late.ID))
	require.Contains(t, errOut.String(), "watching for changes")
}

func TestWatchRevocationsJSONAndExpiry(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	keyPath, engine := newKey(t, dir, "engine")
	past := time.Now().Add(-2 * time.Hour).UTC()
	old := &enforce.Command{ID: "rv-old", Kind: enforce.KindRevoke, Tenant: "acme", Scope: enforce.ScopeAgent, Value: "spiffe://acme.dev/a",
		Reason: "r", IssuedAt: past, ExpiresAt: past.Add(time.Hour), Issuer: "engine/w-1"}
	engine.Sign(old)
	b, err := json.Marshal(old)
	require.NoError(t, err)
	_, err = n.kv.Put(context.Background(), old.ID, b)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- opsRun(ctx, []string{"watch", "revocations", "--nats", n.url, "--key", keyPath, "--json"},
			env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "\n") }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.Equal(t, 0, <-done, errOut.String())
	var v revocationView
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out.String())), &v))
	require.Equal(t, "rv-old", v.Key)
	require.Equal(t, statusRejected, v.Status)
	require.Contains(t, v.Reason, "command has expired at ")
	require.Equal(t, old.ID, v.Command.ID)
}

func TestWatchDecisions(t *testing.T) {
	n := startNATS(t)
	ctx := context.Background()
	dec := `{"id":"d-1","time":"2026-01-01T00:00:01Z","rule":"runaway-loop","rule_version":"1","severity":"high","mode":"enforce","action":"revoke","scope":"session","tenant":"acme","group":"tenant=acme,session=s-1","subject":{"agent":"spiffe://acme.dev/a","session":"s-1"},"event_id":"e-1","anchor":0,"reason":"loop"}`
	_, err := n.js.Publish(ctx, pipeline.DecisionsSubjectPrefix+"acme", []byte(dec))
	require.NoError(t, err)
	_, err = n.js.Publish(ctx, pipeline.DecisionsSubjectPrefix+"globex", []byte(strings.ReplaceAll(dec, "acme", "globex")))
	require.NoError(t, err)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- opsRun(wctx, []string{"watch", "decisions", "--all", "--tenant", "acme", "--nats", n.url},
			env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "d-1") }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.Equal(t, 0, <-done, errOut.String())
	require.Equal(t, "TIME                      RULE                        MODE     ACTION  SEVERITY  TENANT      SUBJECT                                   ID\n"+
		"2026-01-01T00:00:01.000Z  runaway-loop                enforce  revoke  high      acme        session=s-1                               d-1\n", out.String())
}
