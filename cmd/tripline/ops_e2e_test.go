package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/sim"
	"github.com/tripline/tripline/internal/syncbuf"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// e2eRules catch the two simulated attacks of TestOpsEndToEnd by their
// characteristic signals, and nothing in the benign traffic: the test is
// about the operator commands, not about tuning the default pack.
const e2eRules = `rules:
  - id: e2e-large-send-after-untrusted
    description: a large send after untrusted content in the session
    group: [session]
    match: action == "send"
    condition: bytes_out > 1500000 && seq(attrs.trust == "untrusted", action == "send", 1h)
    action: revoke
    scope: session
    mode: enforce
  - id: e2e-error-loop
    description: a session repeating failing calls
    group: [session]
    condition: count(5m, outcome == "error") > 40
    action: revoke
    scope: session
    mode: enforce
`

// TestOpsEndToEnd runs tripline dev in process and drives it with the
// operator commands: simulate a labelled file, publish it, see the engine
// revoke exactly the attack sessions, lift one as an analyst, and watch it
// all verify as an enforcer would.
func TestOpsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "e2e-rules.yaml")
	require.NoError(t, os.WriteFile(rulesFile, []byte(e2eRules), 0o600))
	url := startDev(t, dir, "--rules", rulesFile)
	ctx := context.Background()

	events, labelsFile := filepath.Join(dir, "sim.jsonl.gz"), filepath.Join(dir, "labels.jsonl")
	code, _, errOut := ops(t, "", "simulate", "--seed", "5", "--agents", "8", "--rate", "20", "--duration", "1m",
		"--scenarios", "injected-exfil,runaway-loop", "--repeat", "1", "--out", events, "--labels", labelsFile)
	require.Equal(t, 0, code, errOut)
	data, err := os.ReadFile(labelsFile)
	require.NoError(t, err)
	var labels []sim.Label
	for line := range bytes.Lines(data) {
		var l sim.Label
		require.NoError(t, json.Unmarshal(line, &l))
		labels = append(labels, l)
	}
	require.Len(t, labels, 2)

	// no --partitions: the tripline dev default
	code, out, errOut := ops(t, "", "publish", "--file", events, "--nats", url)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, fmt.Sprintf("(0 invalid, 0 duplicates) to TL_EVENTS with %d partitions", opsDevPartitions()))

	// The engine revokes the two attack sessions, and nothing else.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	want := map[string]string{} // session → command id
	require.Eventually(t, func() bool {
		keys, _ := kv.Keys(ctx)
		return len(keys) >= len(labels)
	}, 20*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // anything more would show up by now
	keys, err := kv.Keys(ctx)
	require.NoError(t, err)
	var sessions []string
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		require.NoError(t, err)
		var c enforce.Command
		require.NoError(t, json.Unmarshal(e.Value(), &c))
		require.Equal(t, enforce.ScopeSession, c.Scope, "%+v", c)
		sessions = append(sessions, c.Value)
		want[c.Value] = c.ID
	}
	slices.Sort(sessions)
	wantSessions := []string{labels[0].Session, labels[1].Session}
	slices.Sort(wantSessions)
	require.Equal(t, wantSessions, sessions)

	// An analyst lifts the loop's revocation.
	key, _ := newKey(t, dir, "alice")
	var loop sim.Label
	for _, l := range labels {
		if l.Scenario == "runaway-loop" {
			loop = l
		}
	}
	code, out, errOut = ops(t, "", "lift", want[loop.Session], "--reason", "load test, not an attack", "--key", key, "--as", "alice", "--nats", url)
	require.Equal(t, 0, code, errOut)
	liftID := strings.TrimSpace(out)

	// An enforcer's view: two revocations... one of them lifted, all verified.
	wctx, wcancel := context.WithCancel(ctx)
	var wout, werr syncbuf.Buffer
	wdone := make(chan int, 1)
	go func() {
		wdone <- opsRun(wctx, []string{"watch", "revocations", "--nats", url,
			"--key", filepath.Join(dir, "engine.key.pub"), "--key", key + ".pub"},
			env{stdin: strings.NewReader(""), stdout: &wout, stderr: &werr})
	}()
	require.Eventually(t, func() bool { return strings.Contains(werr.String(), "watching for changes") }, 5*time.Second, 10*time.Millisecond)
	wcancel()
	require.Equal(t, 0, <-wdone, werr.String())
	lines := strings.Split(strings.TrimSpace(wout.String()), "\n")
	require.Len(t, lines, 3, wout.String())
	var kinds []string
	for _, l := range lines[1:] {
		require.True(t, strings.HasSuffix(l, "VERIFIED"), l)
		kinds = append(kinds, strings.Fields(l)[2])
	}
	slices.Sort(kinds)
	require.Equal(t, []string{"lift", "revoke"}, kinds)
	require.Contains(t, wout.String(), liftID)
	require.Contains(t, wout.String(), "analyst/alice")
	require.Contains(t, wout.String(), "session="+labels[slices.IndexFunc(labels, func(l sim.Label) bool { return l.Scenario == "injected-exfil" })].Session)
}

// startDev runs tripline dev in process (no history) under dir until the
// test ends, and returns its NATS URL.
func startDev(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var devErr syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- opsRun(ctx, append([]string{"dev", "--dir", dir, "--port", "0", "--http", "127.0.0.1:0", "--no-history"}, extra...),
			env{stdin: strings.NewReader(""), stdout: &syncbuf.Buffer{}, stderr: &devErr})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			require.Equal(t, 0, code, devErr.String())
		case <-time.After(20 * time.Second):
			t.Error("dev did not stop")
		}
	})
	urlRE := regexp.MustCompile(`NATS\s+(nats://\S+)`)
	require.Eventually(t, func() bool { return urlRE.MatchString(devErr.String()) }, 20*time.Second, 20*time.Millisecond)
	return urlRE.FindStringSubmatch(devErr.String())[1]
}
