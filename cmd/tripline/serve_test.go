package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/syncbuf"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// TestDevEndToEnd runs `tripline dev` in process (embedded NATS, a local
// ClickHouse child process), publishes an attack and expects a revocation
// signed with the key dev generated; then asks the API, with the token dev
// generated, to explain the decision from history (and is refused without
// the token); then stops it, leaving no ClickHouse process behind.
func TestDevEndToEnd(t *testing.T) {
	dir := t.TempDir()
	var errOut syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"dev", "--dir", dir, "--port", "0", "--http", "127.0.0.1:0", "--clickhouse-port", "0"}, env{stdin: nil, stdout: io.Discard, stderr: &errOut})
	}()
	urlRE := regexp.MustCompile(`NATS\s+(nats://\S+)`)
	httpRE := regexp.MustCompile(`metrics\s+(http://\S+)`)
	require.Eventually(t, func() bool { return urlRE.MatchString(errOut.String()) }, 60*time.Second, 20*time.Millisecond, "%s", &errOut)
	url := urlRE.FindStringSubmatch(errOut.String())[1]
	metricsURL := httpRE.FindStringSubmatch(errOut.String())[1]

	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	agent := "spiffe://acme.dev/agent/support"
	now := time.Now().UTC()
	for _, ev := range []*pipeline.Event{
		{ID: "e1", Time: now, Tenant: "acme", Agent: agent, Session: "s1", Tool: "crm.export", Action: "read", Sensitivity: "restricted", Records: 5000, BytesIn: 2_000_000},
		{ID: "e2", Time: now.Add(time.Second), Tenant: "acme", Agent: agent, Session: "s1", Tool: "http.post", Action: "send", Destination: "paste.example", BytesOut: 1_500_000},
	} {
		_, err := js.Publish(ctx, pipeline.EventSubject(ev.Tenant, ev.Agent, pipeline.DefaultPartitions), ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
		require.NoError(t, err)
	}
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	var cmd enforce.Command
	require.Eventually(t, func() bool {
		keys, _ := kv.Keys(ctx)
		if len(keys) != 1 {
			return false
		}
		e, err := kv.Get(ctx, keys[0])
		return err == nil && json.Unmarshal(e.Value(), &cmd) == nil
	}, 20*time.Second, 20*time.Millisecond)
	pub, err := enforce.LoadPublicKey(dir + "/engine.key.pub")
	require.NoError(t, err)
	ring := enforce.Keyring{}
	ring.Add(pub)
	require.NoError(t, ring.Verify(&cmd))
	require.Equal(t, "s1", cmd.Value)

	resp, err := http.Get(metricsURL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `tripline_detect_revocations_total{kind="revoke"} 1`)

	// History and the API: the decision is explained with its evidence,
	// the command issued from it; a request without the token is refused.
	apiURL := regexp.MustCompile(`API\s+(http://\S+)`).FindStringSubmatch(errOut.String())[1]
	tok, err := os.ReadFile(dir + "/api.token")
	require.NoError(t, err)
	get := func(path string, auth bool) (int, string) {
		req, _ := http.NewRequest("GET", apiURL+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var explained string
	require.Eventually(t, func() bool {
		code, b := get("/explain/"+cmd.ID+"?tenant=acme", true)
		explained = b
		return code == 200 && strings.Contains(b, `"e2"`) && strings.Contains(b, cmd.Decision)
	}, 30*time.Second, 100*time.Millisecond, "explain: %s", &explained)
	code, _ := get("/explain/"+cmd.ID+"?tenant=acme", false)
	require.Equal(t, 401, code)
	chPID := devClickHousePID(t, dir)

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop")
	}
	require.Contains(t, errOut.String(), "leases released")
	require.Error(t, syscall.Kill(chPID, 0), "ClickHouse child %d still running after dev stopped", chPID)
}

// devClickHousePID finds the clickhouse-server child of tripline dev by
// its config path under dir.
func devClickHousePID(t *testing.T, dir string) int {
	ents, err := os.ReadDir("/proc")
	require.NoError(t, err)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), filepath.Join(dir, "clickhouse")) {
			return pid
		}
	}
	t.Fatal("no ClickHouse child process found")
	return 0
}
