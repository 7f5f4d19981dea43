package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/detect"
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
revocations) and api (Prometheus metrics and health on http.listen). Run as
many processes as you like: partitions are leased, so each has exactly one
owner and a dead process's partitions move to the others.

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
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything locally on an embedded NATS server",
		Long: `Run all roles in one process on an embedded nats-server with JetStream
(file storage under --dir), with the example rules built into the binary (or
--rules), and a signing key generated on first run. Nothing to install.

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
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if err := cfg.Finish(os.LookupEnv); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return a.serve(cmd.Context(), cfg, true)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".tripline", "data directory (NATS storage, signing key)")
	cmd.Flags().IntVar(&port, "port", 4222, "NATS client port of the embedded server (0: any free port)")
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:9464", "metrics and health listen address")
	cmd.Flags().StringSliceVar(&rulePaths, "rules", nil, "rule files or directories (default: the built-in examples)")
	return cmd
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
	ruleInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "tripline", Name: "rule_set_info", Help: "The active rule set (hash) and its size.",
	}, []string{"hash"})
	reg.MustRegister(ruleInfo)
	ruleInfo.WithLabelValues(set.Hash).Set(float64(len(set.Rules)))

	g, ctx := errgroup.WithContext(ctx)
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
		srv := &http.Server{Handler: httpHandler(reg, conn), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	log.Info().Str("nats", conn.URL).Int("rules", len(set.Rules)).Str("rule_set", set.Hash).
		Int("partitions", cfg.Topology.Partitions).Str("http", addr).Strs("roles", cfg.Roles).Msg("tripline running")
	if dev {
		self := "tripline"
		if strings.Contains(os.Args[0], "go-build") {
			self = "go run ./cmd/tripline" // started with go run
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

Try, in another terminal:
  %[7]s simulate --rate 50 --duration 1m
  %[7]s watch revocations --key %[6]s
  %[7]s watch decisions
`, conn.URL, cfg.NATS.Embedded.StoreDir, addr, len(set.Rules), set.Hash, pub, self)
	}
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info().Msg("tripline stopped")
	return nil
}

func httpHandler(reg *prometheus.Registry, conn *config.Conn) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !conn.IsConnected() {
			http.Error(w, "nats disconnected", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

func loadRuleSet(paths []string) (*rules.Set, error) {
	if len(paths) == 0 {
		return rules.Compile(rules.ExampleSources()...)
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
