package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/chtest"
	"github.com/tripline/tripline/internal/natstest"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// TestDetectorSIGKILL runs two `tripline serve` processes sharing the
// partitions and the history writer's consumers, kills one with SIGKILL in
// the middle of a stream of attacks and benign traffic, and checks that
// every attack is revoked exactly once, every decision exists once, every
// event was acked, and that ClickHouse holds every published event, every
// decision and every revocation exactly once (comparing the id sets).
func TestDetectorSIGKILL(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tripline")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	s := natstest.Start(t)
	_, js := s.Connect(t)
	ctx := context.Background()
	const partitions = 4
	require.NoError(t, topology.Provision(ctx, js, topology.Config{Partitions: partitions, LeaseTTL: 1500 * time.Millisecond}))
	_, priv, err := enforce.GenerateKey()
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "engine.key")
	require.NoError(t, enforce.WriteKeyPair(keyFile, priv))
	db := chtest.NewDB(t)
	cfg := filepath.Join(dir, "tripline.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`roles: [detect, history]
nats: {url: %q}
topology: {partitions: %d, lease_ttl: 1500ms}
detect: {ack_wait: 2s, batch: 16}
signing: {key_file: %q}
http: {listen: "127.0.0.1:0"}
clickhouse: {addr: %q, database: %s}
history: {batch_size: 50, flush_interval: 20ms, ack_wait: 2s}
`, s.URL, partitions, keyFile, db.Addr, db.Database)), 0o600))

	start := func(id string) *exec.Cmd {
		c := exec.Command(bin, "serve", "--config", cfg)
		c.Env = append(os.Environ(), "TRIPLINE_WORKER_ID="+id)
		log, err := os.Create(filepath.Join(dir, id+".log"))
		require.NoError(t, err)
		c.Stdout, c.Stderr = log, log
		require.NoError(t, c.Start())
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
		return c
	}
	a := start("a")
	start("b")
	owners, err := js.KeyValue(ctx, pipeline.OwnersBucket)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for p := range partitions {
			if e, err := owners.Get(ctx, fmt.Sprintf("p.%d", p)); err == nil {
				seen[string(e.Value())] = true
			}
		}
		return seen["a"] && seen["b"]
	}, 30*time.Second, 50*time.Millisecond, "both workers own partitions")

	// A steady stream of attacks and benign calls; worker a is killed a
	// third of the way.
	const attacks = 60
	now := time.Now().UTC()
	published := map[string]bool{}
	for i := range attacks {
		agent := fmt.Sprintf("spiffe://acme.dev/agent/%d", i)
		session := fmt.Sprintf("s-%d", i)
		for j := range 8 {
			ev := &pipeline.Event{ID: fmt.Sprintf("%s-benign-%d", session, j), Time: now.Add(time.Duration(i)*time.Second - time.Duration(j+1)*time.Millisecond),
				Tenant: "acme", Agent: agent, Session: session + "-b", Tool: "kb.search", Action: "read", Resource: fmt.Sprintf("kb/%d", j)}
			_, err := js.Publish(ctx, pipeline.EventSubject(ev.Tenant, ev.Agent, partitions), ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
			require.NoError(t, err)
			published[ev.ID] = true
		}
		for k, ev := range []*pipeline.Event{
			{ID: session + "-read", Time: now.Add(time.Duration(i) * time.Second), Tenant: "acme", Agent: agent, Session: session,
				Tool: "crm.export", Action: "read", Sensitivity: "restricted", Records: 5000, BytesIn: 2_000_000},
			{ID: session + "-send", Time: now.Add(time.Duration(i)*time.Second + time.Minute), Tenant: "acme", Agent: agent, Session: session,
				Tool: "http.post", Action: "send", Destination: "https://paste.example/" + session, BytesOut: 1_500_000},
		} {
			_, err := js.Publish(ctx, pipeline.EventSubject(ev.Tenant, ev.Agent, partitions), ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
			require.NoError(t, err)
			published[ev.ID] = true
			if i == attacks/3 && k == 0 {
				require.NoError(t, a.Process.Signal(syscall.SIGKILL))
			}
		}
		time.Sleep(5 * time.Millisecond)
	}

	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		keys, _ := kv.Keys(ctx)
		return len(keys) == attacks
	}, 60*time.Second, 100*time.Millisecond, "every attack revoked after the kill")
	for p := range partitions {
		c, err := js.Consumer(ctx, pipeline.EventsStream, fmt.Sprintf("detect-p%d", p))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			info, err := c.Info(ctx)
			return err == nil && info.NumPending == 0 && info.NumAckPending == 0
		}, 30*time.Second, 100*time.Millisecond, "partition %d drained", p)
	}
	// b took over every partition a held
	for p := range partitions {
		e, err := owners.Get(ctx, fmt.Sprintf("p.%d", p))
		require.NoError(t, err)
		require.Equal(t, "b", string(e.Value()), "partition %d", p)
	}
	ring := enforce.Keyring{}
	ring.Add(enforce.NewSigner(priv).Public())
	streamIDs := map[string]map[string]bool{}
	for _, name := range []string{pipeline.RevocationsStream, pipeline.DecisionsStream} {
		streamIDs[name] = map[string]bool{}
		st, err := js.Stream(ctx, name)
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		require.EqualValues(t, attacks, info.State.Msgs, "%s: one message per attack, none duplicated", name)
		ids := map[string]bool{}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			require.NoError(t, err)
			var x struct {
				ID string `json:"id"`
			}
			require.NoError(t, json.Unmarshal(m.Data, &x))
			require.False(t, ids[x.ID], "%s: %s twice", name, x.ID)
			ids[x.ID] = true
			streamIDs[name][x.ID] = true
			if name == pipeline.RevocationsStream {
				var c enforce.Command
				require.NoError(t, json.Unmarshal(m.Data, &c))
				require.NoError(t, ring.Verify(&c))
			}
		}
	}

	// History: the same id sets in ClickHouse, each row once.
	for _, c := range []struct {
		table string
		want  map[string]bool
	}{
		{"events", published},
		{"decisions", streamIDs[pipeline.DecisionsStream]},
		{"revocations", streamIDs[pipeline.RevocationsStream]},
	} {
		var got map[string]int
		require.Eventually(t, func() bool {
			got = map[string]int{}
			rows, err := db.Conn.Query(ctx, "SELECT id FROM "+db.Database+"."+c.table)
			if err != nil {
				return false
			}
			defer rows.Close()
			for rows.Next() {
				var id string
				if rows.Scan(&id) == nil {
					got[id]++
				}
			}
			return len(got) >= len(c.want)
		}, 60*time.Second, 100*time.Millisecond, "%s: every row reaches ClickHouse", c.table)
		require.Len(t, got, len(c.want), c.table)
		for id := range c.want {
			require.Equal(t, 1, got[id], "%s: %s stored %d times", c.table, id, got[id])
		}
	}
}
