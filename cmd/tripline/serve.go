package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tripline/tripline/internal/actions"
	"github.com/tripline/tripline/internal/api"
	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/internal/history"
	"github.com/tripline/tripline/internal/investigate"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline/enforce"
	"github.com/tripline/tripline/rules"
)

func newServeCmd(a *app) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the engine against a NATS cluster",
		Long: `Run Tripline's roles in this process: detect (detector workers that own
event partitions, evaluate the rules and publish decisions and signed
revocations), history (copies every stream into ClickHouse; on by default
when clickhouse is configured) and api (Prometheus metrics and health on
http.listen, and the authenticated /api/v1 investigation and action API).
Run as many processes as you like: partitions are leased, so each has
exactly one owner and a dead process's partitions move to the others;
history writers share their consumers.

Environment overrides:
` + config.EnvHelp(),
		Example: `  tripline serve --config /etc/tripline/tripline.yaml
  TRIPLINE_WORKER_ID=detect-2 tripline serve --config tripline.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageError(errors.New("--config is required (see deploy/tripline.yaml)"))
			}
			cfg, err := config.Load(path)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return a.serve(cmd.Context(), cfg, false)
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	return cmd
}

func newDevCmd(a *app) *cobra.Command {
	var dir string
	var port int
	var httpAddr string
	var rulePaths []string
	var chPort int
	var noHistory bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything locally on an embedded NATS server",
		Long: `Run all roles in one process on an embedded nats-server with JetStream
(file storage under --dir), with the default rule pack built into the binary (or
--rules), and a signing key generated on first run. History goes to a local
clickhouse-server child process (data under --dir; install the package with
"make deps" or apt-get install clickhouse-server, or point CLICKHOUSE_ADDR at
a server; --no-history runs without it). An admin API token is generated
under --dir on first run.

Then, in another terminal:
  tripline simulate --rate 50                       # agents, some of them misbehaving
  tripline watch revocations --key .tripline/engine.key.pub`,
		Example: `  tripline dev
  tripline dev --rules ./my-rules --port 4333`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Dev(dir)
			cfg.NATS.Embedded.Port = port
			cfg.HTTP.Listen = httpAddr
			cfg.Rules.Paths = rulePaths
			cfg.ClickHouse.Embedded.Port = chPort
			if noHistory {
				cfg.ClickHouse = config.ClickHouse{}
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			tok, err := devToken(dir)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			cfg.API.Tokens = []config.Token{{Name: "dev-admin", Role: "admin", TokenFile: tok}}
			cfg.API.KeyFile = cfg.Signing.KeyFile
			if err := cfg.Finish(os.LookupEnv); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return a.serve(cmd.Context(), cfg, true)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".tripline", "data directory (NATS storage, signing key)")
	cmd.Flags().IntVar(&port, "port", 4222, "NATS client port of the embedded server (0: any free port)")
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:9464", "metrics and health listen address")
	cmd.Flags().StringSliceVar(&rulePaths, "rules", nil, "rule files or directories (default: the built-in rule pack)")
	cmd.Flags().IntVar(&chPort, "clickhouse-port", 9000, "native port of the local ClickHouse (0: any free port)")
	cmd.Flags().BoolVar(&noHistory, "no-history", false, "run without ClickHouse (no history, no queries)")
	return cmd
}

// devToken returns the dev API token file, creating a random token on
// first run (readable by the owner only).
func devToken(dir string) (string, error) {
	path := filepath.Join(dir, "api.token")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600)
}

func (a *app) serve(ctx context.Context, cfg *config.Config, dev bool) error {
	lvl, _ := zerolog.ParseLevel(cfg.Log.Level)
	log := a.log.Level(lvl)
	set, err := loadRuleSet(cfg.Rules.Paths)
	if err != nil {
		fmt.Fprintln(a.stderr, err)
		return findings()
	}
	signer, err := loadOrCreateSigner(cfg.Signing.KeyFile, dev, log)
	if err != nil && cfg.Has(config.RoleDetect) {
		return &exitError{code: exitUsage, err: err}
	}
	conn, err := cfg.NATS.Connect()
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer conn.Close()
	js, err := jetstream.New(conn.Conn)
	if err != nil {
		return err
	}
	if err := topology.Provision(ctx, js, cfg.Topology); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	g, ctx := errgroup.WithContext(ctx)
	var store *history.Store
	var writer *history.Writer
	if cfg.ClickHouse.Enabled() {
		store, err = history.Open(ctx, cfg.ClickHouse)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("clickhouse: %w", err)}
		}
		defer store.Close()
		log.Info().Str("clickhouse", chAddr(cfg, store)).Str("database", store.Database).
			Str("server_version", store.Dialect.Version.String()).Msg("history database ready")
	}
	if cfg.Has(config.RoleHistory) {
		writer = history.NewWriter(js, store.Schema, history.WriterConfig{
			BatchSize: cfg.History.BatchSize, FlushInterval: cfg.History.FlushInterval, AckWait: cfg.History.AckWait,
			Logger: log, Registerer: reg,
		})
		g.Go(func() error { return writer.Run(ctx) })
		g.Go(func() error { retentionLoop(ctx, store.Schema, log); return nil })
		g.Go(func() error { return store.Schema.FollowRuleChanges(ctx, js, log) })
	}
	if cfg.Has(config.RoleDetect) {
		w, err := detect.New(ctx, conn.Conn, detect.Config{
			WorkerID: cfg.Detect.WorkerID, Topology: cfg.Topology, Rules: set, Signer: signer,
			Batch: cfg.Detect.Batch, MaxAckPending: cfg.Detect.MaxAckPending, AckWait: cfg.Detect.AckWait,
			RevokeLimit: cfg.Detect.RevokeLimit, Logger: log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		g.Go(func() error { return w.Run(ctx) })
	}
	var addr string
	if cfg.Has(config.RoleAPI) {
		ln, err := net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("http.listen: %w", err)}
		}
		addr = ln.Addr().String()
		srv, err := a.apiServer(ctx, cfg, js, conn, store, writer, reg, log)
		if err != nil {
			ln.Close()
			return &exitError{code: exitUsage, err: err}
		}
		g.Go(func() error { return srv.Serve(ctx, ln) })
	}
	log.Info().Str("nats", conn.URL).Int("rules", len(set.Rules)).Str("rule_set", set.Hash).
		Int("partitions", cfg.Topology.Partitions).Str("http", addr).Strs("roles", cfg.Roles).Msg("tripline running")
	if dev {
		self := "tripline"
		if strings.Contains(os.Args[0], "go-build") {
			self = "go run ./cmd/tripline" // started with go run
		}
		histLine, histTry := "  history     off (--no-history)\n", ""
		if store != nil {
			ch := chAddr(cfg, store)
			histLine = fmt.Sprintf("  ClickHouse  %s   database %s (server %s)\n  API         http://%s/api/v1   token: %s (admin)\n",
				ch, store.Database, store.Dialect.Version, addr, cfg.API.Tokens[0].TokenFile)
			histTry = fmt.Sprintf("  %[1]s query top --tenant acme --metric bytes_out --since 1h --clickhouse %[2]s\n"+
				"  curl -H \"Authorization: Bearer $(cat %[3]s)\" 'http://%[4]s/api/v1/decisions?tenant=acme&since=1h'\n",
				self, ch, cfg.API.Tokens[0].TokenFile, addr)
		}
		pub := ""
		if cfg.Signing.KeyFile != "" {
			pub = cfg.Signing.KeyFile + ".pub"
		}
		fmt.Fprintf(a.stderr, `
Tripline is running (Ctrl-C to stop).
  NATS        %[1]s   (JetStream data in %[2]s)
  metrics     http://%[3]s/metrics   health: http://%[3]s/healthz
  rules       %[4]d rules, set %[5]s
  engine key  %[6]s   (enforcers verify revocations with it)
%[8]s
Try, in another terminal:
  %[7]s simulate --rate 50 --duration 1m
  %[7]s watch revocations --key %[6]s
  %[7]s watch decisions
  %[7]s rules status          (then: rules push DIR -m "why" to change the rules live)
%[9]s`, conn.URL, cfg.NATS.Embedded.StoreDir, addr, len(set.Rules), set.Hash, pub, self, histLine, histTry)
	}
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info().Msg("tripline stopped")
	return nil
}

// apiServer builds the HTTP API: health and metrics, the investigation
// queries when ClickHouse is configured, and the analyst actions when
// api.key_file is.
func (a *app) apiServer(ctx context.Context, cfg *config.Config, js jetstream.JetStream, conn *config.Conn,
	store *history.Store, writer *history.Writer, reg *prometheus.Registry, log zerolog.Logger) (*api.Server, error) {
	var routes []api.Route
	if store != nil {
		routes = append(routes, investigate.Routes(investigate.New(store.Schema, investigate.Options{}))...)
	}
	if cfg.API.KeyFile != "" {
		priv, err := enforce.LoadPrivateKey(cfg.API.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("api.key_file: %w", err)
		}
		is, err := actions.Open(ctx, js, enforce.NewSigner(priv), log)
		if err != nil {
			return nil, err
		}
		routes = append(routes, actions.Routes(is)...)
	}
	return api.New(api.Options{
		Tokens:    cfg.API.Tokens,
		Routes:    routes,
		Registry:  reg,
		Log:       log,
		RateLimit: api.RateLimit{PerSecond: cfg.API.RateLimit.PerSecond, Burst: cfg.API.RateLimit.Burst},
		TLS:       api.TLS{CertFile: cfg.HTTP.TLS.Cert, KeyFile: cfg.HTTP.TLS.Key},
		Health: func() error {
			if !conn.IsConnected() {
				return errors.New("nats disconnected")
			}
			if writer != nil {
				if err := writer.Healthy(); err != nil {
					return errors.New("history writer cannot write to ClickHouse")
				}
			}
			return nil
		},
	})
}

// retentionLoop drops expired partitions hourly on servers without TTL.
func retentionLoop(ctx context.Context, s *history.Schema, log zerolog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.Retention(ctx, time.Now()); err != nil {
			log.Warn().Err(err).Msg("history retention")
		} else if n > 0 {
			log.Info().Int("partitions", n).Msg("history retention dropped old partitions")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func chAddr(cfg *config.Config, st *history.Store) string {
	if st.Server != nil {
		return st.Server.Addr()
	}
	return cfg.ClickHouse.Addr
}

func loadRuleSet(paths []string) (*rules.Set, error) {
	if len(paths) == 0 {
		return rules.Compile(defaultPackSources()...)
	}
	return rules.LoadPaths(paths...)
}

// loadOrCreateSigner loads the engine key; in dev mode a missing key is
// generated.
func loadOrCreateSigner(path string, create bool, log zerolog.Logger) (*enforce.Signer, error) {
	if path == "" {
		return nil, errors.New("no signing key configured")
	}
	priv, err := enforce.LoadPrivateKey(path)
	if err == nil {
		return enforce.NewSigner(priv), nil
	}
	if !create || !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	_, priv, err = enforce.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := enforce.WriteKeyPair(path, priv); err != nil {
		return nil, err
	}
	s := enforce.NewSigner(priv)
	log.Info().Str("key", path).Str("key_id", s.KeyID).Msg("generated engine signing key")
	return s, nil
}
