// Package config is Tripline's one configuration file (YAML), with
// environment overrides, validated with clear errors. `tripline serve
// --config FILE` reads it; `tripline dev` uses Dev().
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tripline/tripline/internal/topology"
)

// Config is the whole configuration.
type Config struct {
	// Roles this process runs: detect, api (metrics, health). Default: all.
	Roles []string `yaml:"roles"`
	NATS  NATS     `yaml:"nats"`
	// Topology must be the same for every process (partitions especially).
	Topology topology.Config `yaml:"topology"`
	Detect   Detect          `yaml:"detect"`
	Rules    Rules           `yaml:"rules"`
	Signing  Signing         `yaml:"signing"`
	HTTP     HTTP            `yaml:"http"`
	Log      Log             `yaml:"log"`
	// ClickHouse keeps history; without it the history role is off.
	ClickHouse ClickHouse `yaml:"clickhouse"`
	History    History    `yaml:"history"`
	API        API        `yaml:"api"`
}

// ClickHouse says how to reach the history database.
type ClickHouse struct {
	// Addr is host:port of the native protocol (comma-separated for
	// several replicas). Empty with Embedded set: start a local server.
	Addr     string `yaml:"addr"`
	Database string `yaml:"database"` // default "tripline"
	Username string `yaml:"username"`
	// PasswordFile holds the password; it is never inline in the config.
	PasswordFile string `yaml:"password_file"`
	// TLS: set ca (and cert/key for mutual TLS) to connect over TLS.
	TLS TLS `yaml:"tls"`
	// RetentionDays for events and decisions (revocations and acks are kept
	// twice as long). 0 keeps everything.
	RetentionDays int `yaml:"retention_days"`
	// Embedded runs clickhouse-server as a child process (tripline dev).
	Embedded *EmbeddedClickHouse `yaml:"embedded"`
}

// Enabled reports whether a ClickHouse is configured.
func (c ClickHouse) Enabled() bool { return c.Addr != "" || c.Embedded != nil }

// EmbeddedClickHouse is a local child clickhouse-server.
type EmbeddedClickHouse struct {
	Dir string `yaml:"dir"`
	// Port of the native protocol (0: any free port).
	Port int `yaml:"port"`
}

// History tunes the history writer.
type History struct {
	// BatchSize is the most rows in one insert (default 20000).
	BatchSize int `yaml:"batch_size"`
	// FlushInterval is the longest a row waits for its batch (default 1s).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// AckWait is how long a crashed writer's messages wait before another
	// writer gets them (default 2m).
	AckWait time.Duration `yaml:"ack_wait"`
}

// API configures the investigation HTTP API.
type API struct {
	// Tokens are the bearer tokens accepted, each with a role.
	Tokens []Token `yaml:"tokens"`
	// KeyFile is the Ed25519 key that signs revocations issued through the
	// API (analyst actions). Enforcers must trust its public key. Without
	// it the action routes are not served.
	KeyFile string `yaml:"key_file"`
	// RateLimit per token (default 10/s, burst 20).
	RateLimit RateLimit `yaml:"rate_limit"`
}

// RateLimit is a token bucket.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Token is one API bearer token. The token itself is in TokenFile, or
// only its SHA-256 is in the config (sha256: hex), never the token.
type Token struct {
	Name      string `yaml:"name"`
	Role      string `yaml:"role"` // viewer, analyst or admin
	TokenFile string `yaml:"token_file"`
	SHA256    string `yaml:"sha256"`
}

// NATS says how to reach NATS.
type NATS struct {
	// URL of the NATS servers (comma-separated). Empty with Embedded set:
	// run an embedded server.
	URL string `yaml:"url"`
	// Creds is a NATS credentials file (JWT + nkey seed) for this process.
	Creds string `yaml:"creds"`
	// NKey is an nkey seed file, for nkey-authenticated users.
	NKey string `yaml:"nkey"`
	// InboxPrefix replaces "_INBOX" for this client's replies. With the
	// authorization in deploy/nats/auth.conf every identity but the engine
	// must use its own prefix (see docs/nats.md).
	InboxPrefix string `yaml:"inbox_prefix"`
	TLS         TLS    `yaml:"tls"`
	// Embedded runs nats-server in process (tripline dev).
	Embedded *Embedded `yaml:"embedded"`
	Name     string    `yaml:"name"`
}

// TLS client settings.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Embedded nats-server settings.
type Embedded struct {
	StoreDir string `yaml:"store_dir"`
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"`
}

// Detect tunes detector workers.
type Detect struct {
	WorkerID      string        `yaml:"worker_id"`
	Batch         int           `yaml:"batch"`
	MaxAckPending int           `yaml:"max_ack_pending"`
	AckWait       time.Duration `yaml:"ack_wait"`
	RevokeLimit   int           `yaml:"revoke_limit_per_minute"`
	Lateness      time.Duration `yaml:"lateness"`
}

// Rules says where rule files are.
type Rules struct {
	Paths []string `yaml:"paths"`
}

// Signing holds the engine's Ed25519 key for revocation commands.
type Signing struct {
	KeyFile string `yaml:"key_file"`
}

// HTTP serves metrics and health (and, later, the API).
type HTTP struct {
	Listen string `yaml:"listen"`
	// TLS: a server certificate and key (PEM) to serve HTTPS only.
	TLS ServerTLS `yaml:"tls"`
}

// ServerTLS is a server certificate and its key.
type ServerTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Log settings.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or console
}

// Roles.
const (
	RoleDetect  = "detect"
	RoleAPI     = "api"
	RoleHistory = "history"
)

var allRoles = []string{RoleDetect, RoleAPI, RoleHistory}

// Has reports whether the process runs role.
func (c *Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

// Load reads a config file, applies environment overrides and validates.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	base := filepath.Dir(path)
	for i, p := range c.Rules.Paths {
		if !filepath.IsAbs(p) {
			c.Rules.Paths[i] = filepath.Join(base, p)
		}
	}
	for _, f := range []*string{&c.Signing.KeyFile, &c.ClickHouse.PasswordFile, &c.ClickHouse.TLS.CA, &c.ClickHouse.TLS.Cert, &c.ClickHouse.TLS.Key, &c.API.KeyFile, &c.HTTP.TLS.Cert, &c.HTTP.TLS.Key} {
		if *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(base, *f)
		}
	}
	for i := range c.API.Tokens {
		if f := &c.API.Tokens[i].TokenFile; *f != "" && !filepath.IsAbs(*f) {
			*f = filepath.Join(base, *f)
		}
	}
	if err := c.Finish(os.LookupEnv); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Dev is the all-in-one local configuration: embedded NATS with file
// storage under dir, the default rule pack, a signing key generated under dir.
func Dev(dir string) *Config {
	return &Config{
		NATS:     NATS{Embedded: &Embedded{StoreDir: filepath.Join(dir, "nats"), Host: "127.0.0.1", Port: 4222}},
		Topology: topology.Config{},
		Signing:  Signing{KeyFile: filepath.Join(dir, "engine.key")},
		HTTP:     HTTP{Listen: "127.0.0.1:9464"},
		Detect:   Detect{WorkerID: "dev"},
		ClickHouse: ClickHouse{
			Embedded: &EmbeddedClickHouse{Dir: filepath.Join(dir, "clickhouse")},
		},
	}
}

// Env variables that override the file.
var envOverrides = []struct {
	name string
	help string
	set  func(c *Config, v string) error
}{
	{"TRIPLINE_ROLES", "comma-separated roles", func(c *Config, v string) error { c.Roles = splitList(v); return nil }},
	{"TRIPLINE_NATS_URL", "NATS server URLs", func(c *Config, v string) error { c.NATS.URL = v; return nil }},
	{"TRIPLINE_NATS_CREDS", "NATS credentials file", func(c *Config, v string) error { c.NATS.Creds = v; return nil }},
	{"TRIPLINE_RULES", "comma-separated rule paths", func(c *Config, v string) error { c.Rules.Paths = splitList(v); return nil }},
	{"TRIPLINE_SIGNING_KEY", "engine signing key file", func(c *Config, v string) error { c.Signing.KeyFile = v; return nil }},
	{"TRIPLINE_WORKER_ID", "detector worker id", func(c *Config, v string) error { c.Detect.WorkerID = v; return nil }},
	{"TRIPLINE_HTTP_LISTEN", "metrics/health listen address", func(c *Config, v string) error { c.HTTP.Listen = v; return nil }},
	{"TRIPLINE_LOG_LEVEL", "log level", func(c *Config, v string) error { c.Log.Level = v; return nil }},
	{"CLICKHOUSE_ADDR", "ClickHouse host:port (native protocol)", func(c *Config, v string) error { c.ClickHouse.Addr = v; return nil }},
	{"TRIPLINE_CLICKHOUSE_DATABASE", "ClickHouse database", func(c *Config, v string) error { c.ClickHouse.Database = v; return nil }},
	{"TRIPLINE_PARTITIONS", "event partitions", func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("TRIPLINE_PARTITIONS: want a number, got %q", v)
		}
		c.Topology.Partitions = n
		return nil
	}},
}

// EnvHelp lists the environment overrides, for --help.
func EnvHelp() string {
	var b strings.Builder
	for _, e := range envOverrides {
		fmt.Fprintf(&b, "  %-22s %s\n", e.name, e.help)
	}
	return b.String()
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Finish applies environment overrides and defaults, then validates,
// returning every problem at once.
func (c *Config) Finish(lookup func(string) (string, bool)) error {
	var errs []error
	for _, e := range envOverrides {
		if v, ok := lookup(e.name); ok {
			if err := e.set(c, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(c.Roles) == 0 {
		c.Roles = []string{RoleDetect, RoleAPI}
		if c.ClickHouse.Enabled() {
			c.Roles = append(c.Roles, RoleHistory)
		}
	}
	if c.Has(RoleHistory) && !c.ClickHouse.Enabled() {
		errs = append(errs, errors.New("clickhouse: the history role needs addr (a ClickHouse server) or embedded (a local one)"))
	}
	if c.ClickHouse.Database == "" {
		c.ClickHouse.Database = "tripline"
	}
	if c.ClickHouse.RetentionDays < 0 {
		errs = append(errs, errors.New("clickhouse.retention_days: may not be negative"))
	}
	if (c.ClickHouse.TLS.Cert == "") != (c.ClickHouse.TLS.Key == "") {
		errs = append(errs, errors.New("clickhouse.tls: cert and key go together"))
	}
	if (c.HTTP.TLS.Cert == "") != (c.HTTP.TLS.Key == "") {
		errs = append(errs, errors.New("http.tls: cert and key go together"))
	}
	if c.History.BatchSize <= 0 {
		c.History.BatchSize = 20000
	}
	if c.History.FlushInterval <= 0 {
		c.History.FlushInterval = time.Second
	}
	for i, t := range c.API.Tokens {
		switch t.Role {
		case "viewer", "analyst", "admin":
		default:
			errs = append(errs, fmt.Errorf("api.tokens[%d] (%s): role %q is not viewer, analyst or admin", i, t.Name, t.Role))
		}
		if (t.TokenFile == "") == (t.SHA256 == "") {
			errs = append(errs, fmt.Errorf("api.tokens[%d] (%s): set exactly one of token_file and sha256", i, t.Name))
		}
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("api.tokens[%d]: name is required (it is what the audit log shows)", i))
		}
	}
	for _, r := range c.Roles {
		if !slices.Contains(allRoles, r) {
			errs = append(errs, fmt.Errorf("roles: unknown role %q (have %s)", r, strings.Join(allRoles, ", ")))
		}
	}
	c.Topology = c.Topology.WithDefaults()
	if c.Topology.Partitions > 1024 {
		errs = append(errs, fmt.Errorf("topology.partitions: %d is more than 1024", c.Topology.Partitions))
	}
	if c.NATS.URL == "" && c.NATS.Embedded == nil {
		errs = append(errs, errors.New("nats: set url (a NATS cluster) or embedded (a local server)"))
	}
	if c.NATS.Name == "" {
		c.NATS.Name = "tripline"
	}
	if c.Detect.WorkerID == "" {
		h, _ := os.Hostname()
		c.Detect.WorkerID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if strings.ContainsAny(c.Detect.WorkerID, ".*> \t") {
		errs = append(errs, fmt.Errorf("detect.worker_id: %q may not contain '.', '*', '>' or spaces (it is a KV key)", c.Detect.WorkerID))
	}
	if c.Has(RoleDetect) && c.Signing.KeyFile == "" {
		errs = append(errs, errors.New("signing.key_file: the detect role needs the engine's Ed25519 key (tripline keys generate FILE)"))
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:9464"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level))
	}
	if (c.NATS.TLS.Cert == "") != (c.NATS.TLS.Key == "") {
		errs = append(errs, errors.New("nats.tls: cert and key go together"))
	}
	return errors.Join(errs...)
}
