package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadWithEnvOverridesAndRelativePaths(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tripline.yaml")
	require.NoError(t, os.WriteFile(p, []byte("nats:\n  url: nats://a:4222\nrules:\n  paths: [rules]\nsigning:\n  key_file: engine.key\ntopology:\n  partitions: 4\n"), 0o600))
	t.Setenv("TRIPLINE_WORKER_ID", "w-7")
	t.Setenv("TRIPLINE_NATS_URL", "nats://b:4222")
	c, err := Load(p)
	require.NoError(t, err)
	require.Equal(t, "nats://b:4222", c.NATS.URL)
	require.Equal(t, "w-7", c.Detect.WorkerID)
	require.Equal(t, []string{filepath.Join(dir, "rules")}, c.Rules.Paths)
	require.Equal(t, filepath.Join(dir, "engine.key"), c.Signing.KeyFile)
	require.Equal(t, 4, c.Topology.Partitions)
	require.True(t, c.Has(RoleDetect) && c.Has(RoleAPI))
}

func TestValidationReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(p, []byte("roles: [detect, magic]\nlog:\n  level: loud\ndetect:\n  worker_id: a.b\n"), 0o600))
	_, err := Load(p)
	require.Error(t, err)
	for _, want := range []string{`unknown role "magic"`, "nats: set url", "signing.key_file", `log.level: "loud"`, "detect.worker_id"} {
		require.Contains(t, err.Error(), want)
	}
	require.NoError(t, os.WriteFile(p, []byte("natz: {}\n"), 0o600))
	_, err = Load(p)
	require.ErrorContains(t, err, "field natz not found")
}

// The shipped example must stay valid.
func TestDeployExampleLoads(t *testing.T) {
	c, err := Load("../../deploy/tripline.yaml")
	require.NoError(t, err)
	require.Equal(t, 3, c.Topology.Replicas)
	require.Equal(t, 16, c.Topology.Partitions)
	require.Equal(t, 50, c.Detect.RevokeLimit)
	require.True(t, c.Has(RoleHistory))
	require.Equal(t, "/etc/tripline/clickhouse.password", c.ClickHouse.PasswordFile)
	require.Len(t, c.API.Tokens, 2)
}

// Configuration mistakes in the history and API sections are reported
// together, each with its key.
func TestHistoryAndAPIValidation(t *testing.T) {
	c := &Config{
		Roles:      []string{RoleHistory},
		NATS:       NATS{URL: "nats://x"},
		ClickHouse: ClickHouse{RetentionDays: -1, TLS: TLS{Cert: "c"}},
		API: API{Tokens: []Token{
			{Name: "a", Role: "root", SHA256: "x"},
			{Name: "", Role: "viewer"},
		}},
		HTTP: HTTP{TLS: ServerTLS{Key: "k"}},
	}
	err := c.Finish(func(string) (string, bool) { return "", false })
	require.Error(t, err)
	for _, want := range []string{
		"the history role needs addr",
		"clickhouse.retention_days",
		"clickhouse.tls: cert and key",
		`role "root"`,
		"set exactly one of token_file and sha256",
		"name is required",
		"http.tls: cert and key",
	} {
		require.Contains(t, err.Error(), want)
	}
	// CLICKHOUSE_ADDR turns history on by default.
	c = &Config{NATS: NATS{URL: "nats://x"}, Signing: Signing{KeyFile: "k"}}
	require.NoError(t, c.Finish(func(k string) (string, bool) {
		if k == "CLICKHOUSE_ADDR" {
			return "127.0.0.1:9000", true
		}
		return "", false
	}))
	require.True(t, c.Has(RoleHistory))
	require.Equal(t, "tripline", c.ClickHouse.Database)
}
