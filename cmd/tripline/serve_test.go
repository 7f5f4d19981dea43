package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestDevEndToEnd runs `tripline dev` in process, publishes an attack and
// expects a revocation signed with the key dev generated, then stops it.
func TestDevEndToEnd(t *testing.T) {
	dir := t.TempDir()
	var errOut syncBuf
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"dev", "--dir", dir, "--port", "0", "--http", "127.0.0.1:0"}, env{stdin: nil, stdout: io.Discard, stderr: &errOut})
	}()
	urlRE := regexp.MustCompile(`NATS\s+(nats://\S+)`)
	httpRE := regexp.MustCompile(`metrics\s+(http://\S+)`)
	require.Eventually(t, func() bool { return urlRE.MatchString(errOut.String()) }, 20*time.Second, 20*time.Millisecond)
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
		{ID: "e1", Time: now, Tenant: "acme", Agent: agent, Session: "s1", Tool: "crm.lookup", Action: "read", Sensitivity: "restricted"},
		{ID: "e2", Time: now.Add(time.Second), Tenant: "acme", Agent: agent, Session: "s1", Tool: "http.post", Action: "send", Destination: "paste.example"},
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

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, errOut.String())
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop")
	}
	require.Contains(t, errOut.String(), "leases released")
}
