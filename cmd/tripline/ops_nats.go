package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tripline/tripline/internal/config"
	"github.com/tripline/tripline/internal/topology"
	"github.com/tripline/tripline/pipeline"
)

// opsDefaultNATSURL is where `tripline dev` listens: the server the operator
// commands talk to when neither --nats nor --config says otherwise.
const opsDefaultNATSURL = "nats://127.0.0.1:4222"

// opsNATSFlags are the connection flags of every command that talks to NATS.
type opsNATSFlags struct {
	config string
	url    string
}

func (f *opsNATSFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.config, "config", "", "Tripline config file: its nats and topology sections (env overrides apply)")
	c.Flags().StringVar(&f.url, "nats", "", "NATS server URL, overriding the config (default "+opsDefaultNATSURL+", where tripline dev listens)")
}

// opsNATSHelp is the part of a command's help about reaching NATS.
const opsNATSHelp = `
NATS: with --config FILE, the nats section of that file (credentials, TLS;
a config that runs an embedded server is reached on its host and port);
--nats URL overrides its URL. With neither, ` + opsDefaultNATSURL + `, where
'tripline dev' listens. TRIPLINE_NATS_URL and TRIPLINE_PARTITIONS apply as
they do to the engine.`

// opsPartitionsHelp explains where the partition count comes from.
func opsPartitionsHelp() string {
	return `
Partitions: an event's subject is tl.events.<tenant>.<partition>, the
partition being FNV-1a(agent) mod N, and N must be the engine's. It comes
from --partitions, else from --config (topology.partitions, default ` + strconv.Itoa(pipeline.DefaultPartitions) + `),
else it is the 'tripline dev' setting, ` + strconv.Itoa(opsDevPartitions()) + `. A warning is printed when
the engine's partition leases show a larger N. An event published on the
wrong partition is not lost (its worker forwards it) but costs a hop.
`
}

// opsDevPartitions is the partition count of tripline dev.
func opsDevPartitions() int { return config.Dev("").Topology.WithDefaults().Partitions }

// opsConfig returns the configuration the connection flags describe.
func opsConfig(f opsNATSFlags, name string) (cfg *config.Config, err error) {
	if f.config != "" {
		if cfg, err = config.Load(f.config); err != nil {
			return nil, err
		}
	} else {
		// tripline dev: its embedded server (reached as a client), its topology
		cfg = config.Dev("")
		if err := cfg.Finish(os.LookupEnv); err != nil {
			return nil, fmt.Errorf("environment: %w", err)
		}
	}
	if f.url != "" {
		cfg.NATS.URL = f.url
	}
	if cfg.NATS.URL == "" && cfg.NATS.Embedded != nil {
		e := cfg.NATS.Embedded
		if e.Port <= 0 {
			return nil, usageError(fmt.Errorf("config %s runs an embedded NATS server on a random port: pass --nats URL", f.config))
		}
		host := e.Host
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		cfg.NATS.URL = "nats://" + host + ":" + strconv.Itoa(e.Port)
	}
	cfg.NATS.Embedded = nil // never start a server from an operator command
	cfg.NATS.Name = name
	return cfg, nil
}

// opsConn is an operator command's connection to NATS.
type opsConn struct {
	*config.Conn
	js  jetstream.JetStream
	cfg *config.Config
}

// opsConnect connects as the flags say. The caller closes the connection.
func (a *app) opsConnect(cmd *cobra.Command, f opsNATSFlags) (*opsConn, error) {
	cfg, err := opsConfig(f, cmd.CommandPath())
	if err != nil {
		return nil, err
	}
	conn, err := cfg.NATS.Connect()
	if err != nil {
		if f.config == "" && f.url == "" {
			err = fmt.Errorf("%w (is 'tripline dev' running? otherwise pass --nats URL or --config FILE)", err)
		}
		return nil, err
	}
	js, err := jetstream.New(conn.Conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	a.log.Debug().Str("url", conn.ConnectedUrlRedacted()).Msg("connected to NATS")
	return &opsConn{Conn: conn, js: js, cfg: cfg}, nil
}

// partitions is the partition count: the flag when set, else the config's.
func (c *opsConn) partitions(flag int) int {
	if flag > 0 {
		return flag
	}
	return c.cfg.Topology.Partitions
}

// opsCheckPartitions warns when the engine holds a lease on a partition that
// n partitions would not have: producers and engine disagree.
func (a *app) opsCheckPartitions(ctx context.Context, c *opsConn, n int) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, pipeline.OwnersBucket)
	if err != nil {
		return
	}
	l, err := kv.ListKeysFiltered(ctx, "p.*")
	if err != nil {
		return
	}
	highest := -1
	for k := range l.Keys() {
		if p, err := strconv.Atoi(strings.TrimPrefix(k, "p.")); err == nil {
			highest = max(highest, p)
		}
	}
	if highest >= n {
		a.log.Warn().Int("partitions", n).Int("engine_partition", highest).
			Msg("the engine owns a partition beyond the partition count: set --partitions (or --config) to the engine's topology.partitions")
	}
}

// opsRequireStream returns an error saying what to do when stream is missing.
func opsRequireStream(ctx context.Context, js jetstream.JetStream, name string) error {
	_, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s does not exist: run 'tripline nats init' first", name)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	return nil
}

// opsRevocationsBucket opens the revocations KV bucket.
// opsConnectBucket connects and opens the revocations bucket, as the
// analyst commands need.
func (a *app) opsConnectBucket(cmd *cobra.Command, nf opsNATSFlags) (*opsConn, jetstream.KeyValue, error) {
	c, err := a.opsConnect(cmd, nf)
	if err != nil {
		return nil, nil, err
	}
	kv, err := opsRevocationsBucket(cmd.Context(), c.js)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, kv, nil
}

func opsRevocationsBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, pipeline.RevocationsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("KV bucket %s does not exist: run 'tripline nats init' first", pipeline.RevocationsBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("KV bucket %s: %w", pipeline.RevocationsBucket, err)
	}
	return kv, nil
}

func newNATSCmd(a *app) *cobra.Command {
	c := &cobra.Command{
		Use:   "nats",
		Short: "Set up Tripline's streams and buckets on NATS",
		Long: `Commands that manage Tripline's JetStream topology: the streams of events,
dead letters, decisions, revocations and enforcer acks, and the KV buckets
of current revocations and partition leases (docs/nats.md).`,
		Example: `  tripline nats init
  tripline nats init --config /etc/tripline/tripline.yaml --replicas 3`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(newNATSInitCmd(a))
	return c
}

type natsInitFlags struct {
	nats       opsNATSFlags
	partitions int
	replicas   int
}

func newNATSInitCmd(a *app) *cobra.Command {
	var f natsInitFlags
	c := &cobra.Command{
		Use:   "init",
		Short: "Create or update the streams and KV buckets",
		Long: `Init provisions Tripline's streams and KV buckets: it creates what is
missing and updates what changed (limits, replicas), and leaves the rest
alone, so it is safe to run any number of times. Then it prints what
exists: each stream and bucket with its subjects, storage, replicas and
message count.

The topology (retention, replicas, dedup windows) comes from the config's
topology section; --replicas overrides it. --partitions is recorded
nowhere: it only matters to producers and engine processes, which must all
use the same value (the streams do not depend on it).
` + opsNATSHelp,
		Example: `  # against tripline dev
  tripline nats init

  # a three-node cluster, as the config describes it
  tripline nats init --config /etc/tripline/tripline.yaml --replicas 3`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return a.opsNATSInit(cmd, f) },
	}
	f.nats.add(c)
	c.Flags().IntVar(&f.partitions, "partitions", 0, "event partitions, shown for reference (default: the config's)")
	c.Flags().IntVar(&f.replicas, "replicas", 0, "stream and bucket replicas: 1 for one server, 3 in a cluster (default: the config's, else 1)")
	return c
}

func (a *app) opsNATSInit(cmd *cobra.Command, f natsInitFlags) error {
	if f.partitions < 0 || f.partitions > 1024 {
		return usageError(fmt.Errorf("--partitions %d is not between 1 and 1024", f.partitions))
	}
	if f.replicas < 0 || f.replicas > 5 {
		return usageError(fmt.Errorf("--replicas %d is not between 1 and 5", f.replicas))
	}
	ctx := cmd.Context()
	c, err := a.opsConnect(cmd, f.nats)
	if err != nil {
		return err
	}
	defer c.Close()
	topo := c.cfg.Topology
	if f.partitions > 0 {
		topo.Partitions = f.partitions
	}
	if f.replicas > 0 {
		topo.Replicas = f.replicas
	}
	topo = topo.WithDefaults()
	if err := topology.Provision(ctx, c.js, topo); err != nil {
		return fmt.Errorf("%w (is JetStream enabled on %s?)", err, c.ConnectedUrlRedacted())
	}
	rows, err := opsTopologyRows(ctx, c.js, topo)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "JetStream topology on %s: %d event partitions\n\n", c.ConnectedUrlRedacted(), topo.Partitions)
	opsTable(a.stdout, rows, 4, 5)
	return nil
}

// opsTopologyRows describes every stream and bucket of topo as it exists.
func opsTopologyRows(ctx context.Context, js jetstream.JetStream, topo topology.Config) ([][]string, error) {
	rows := [][]string{{"KIND", "NAME", "SUBJECTS", "STORAGE", "REPLICAS", "MESSAGES"}}
	add := func(kind, name, stream string) error {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, name, err)
		}
		rows = append(rows, []string{kind, name, strings.Join(info.Config.Subjects, ","),
			strings.ToLower(info.Config.Storage.String()), strconv.Itoa(info.Config.Replicas), group(int64(info.State.Msgs))})
		return nil
	}
	for _, sc := range topo.Streams() {
		if err := add("stream", sc.Name, sc.Name); err != nil {
			return nil, err
		}
	}
	for _, kc := range topo.Buckets() {
		if err := add("bucket", kc.Bucket, "KV_"+kc.Bucket); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// opsTable prints rows as aligned columns, separated by two spaces; the
// columns listed in right are right-aligned (numbers).
func opsTable(w io.Writer, rows [][]string, right ...int) {
	writeAligned(w, rows, func(c int) bool { return slices.Contains(right, c) })
}
