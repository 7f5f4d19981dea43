// Package topology provisions Tripline's JetStream streams and KV buckets.
// Provisioning is idempotent: it runs at every start-up and from
// `tripline nats init`, creating what is missing and updating what changed.
package topology

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
)

// Config sizes the topology. The zero value gets the defaults below.
type Config struct {
	Partitions int           `yaml:"partitions"` // event partitions (default 16)
	Replicas   int           `yaml:"replicas"`   // 1 for a single server, 3 in a cluster
	Memory     bool          `yaml:"memory"`     // memory storage (tests, benchmarks)
	EventsAge  time.Duration `yaml:"events_max_age"`
	EventsSize int64         `yaml:"events_max_bytes"`
	// EventsDedup is the window in which a re-published event id is dropped.
	EventsDedup time.Duration `yaml:"events_dedup_window"`
	// DecisionsDedup must exceed the longest time a redelivered event can
	// take to come back (AckWait × redeliveries), so a new partition owner
	// never issues a decision twice.
	DecisionsDedup time.Duration `yaml:"decisions_dedup_window"`
	HistoryAge     time.Duration `yaml:"history_max_age"` // decisions, revocations, acks, dead letters
	// RevocationMaxAge bounds how long any revocation can stay in the KV
	// bucket; each entry also carries its own TTL.
	RevocationMaxAge time.Duration `yaml:"revocation_max_age"`
	// LeaseTTL is how long a partition lease lives without renewal.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// WithDefaults fills in zero fields.
func (c Config) WithDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = pipeline.DefaultPartitions
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.EventsAge <= 0 {
		c.EventsAge = 7 * 24 * time.Hour
	}
	if c.EventsSize <= 0 {
		c.EventsSize = 10 << 30
	}
	if c.EventsDedup <= 0 {
		c.EventsDedup = 10 * time.Minute
	}
	if c.DecisionsDedup <= 0 {
		c.DecisionsDedup = 2 * time.Hour
	}
	if c.HistoryAge <= 0 {
		c.HistoryAge = 30 * 24 * time.Hour
	}
	if c.RevocationMaxAge <= 0 {
		c.RevocationMaxAge = 30 * 24 * time.Hour
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 6 * time.Second
	}
	return c
}

func (c Config) storage() jetstream.StorageType {
	if c.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// Streams returns the stream configurations.
func (c Config) Streams() []jetstream.StreamConfig {
	c = c.WithDefaults()
	st := c.storage()
	return []jetstream.StreamConfig{
		{
			Name:        pipeline.EventsStream,
			Description: "Tripline tool-call events, tl.events.<tenant>.<partition>",
			Subjects:    []string{pipeline.EventsSubjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      c.EventsAge,
			MaxBytes:    c.EventsSize,
			Duplicates:  c.EventsDedup,
			Storage:     st,
			Replicas:    c.Replicas,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        pipeline.DeadLetterStream,
			Description: "Events that failed decoding or validation; reason in the Tripline-Error header",
			Subjects:    []string{pipeline.DeadLetterSubjectPrefix + ">"},
			MaxAge:      c.HistoryAge,
			Storage:     st,
			Replicas:    c.Replicas,
		},
		{
			Name:        pipeline.DecisionsStream,
			Description: "Rule decisions (alert, shadow, enforce); Nats-Msg-Id is the decision id",
			Subjects:    []string{pipeline.DecisionsSubjectPrefix + ">"},
			MaxAge:      c.HistoryAge,
			Duplicates:  c.DecisionsDedup,
			Storage:     st,
			Replicas:    c.Replicas,
		},
		{
			Name:        pipeline.RevocationsStream,
			Description: "Signed revocation, hold and lift commands (audit log)",
			Subjects:    []string{pipeline.RevocationsSubjectPrefix + ">"},
			MaxAge:      c.HistoryAge,
			Duplicates:  c.DecisionsDedup,
			Storage:     st,
			Replicas:    c.Replicas,
		},
		{
			Name:        pipeline.AcksStream,
			Description: "Enforcer acknowledgements of applied revocations",
			Subjects:    []string{pipeline.AcksSubjectPrefix + ">"},
			MaxAge:      c.HistoryAge,
			Duplicates:  c.DecisionsDedup,
			Storage:     st,
			Replicas:    c.Replicas,
		},
	}
}

// Buckets returns the KV bucket configurations.
func (c Config) Buckets() []jetstream.KeyValueConfig {
	c = c.WithDefaults()
	st := c.storage()
	return []jetstream.KeyValueConfig{
		{
			Bucket:         pipeline.RevocationsBucket,
			Description:    "Current revocation state: key = revocation id, value = signed command",
			History:        1,
			TTL:            c.RevocationMaxAge,
			LimitMarkerTTL: time.Hour,
			Storage:        st,
			Replicas:       c.Replicas,
		},
		{
			Bucket:      pipeline.OwnersBucket,
			Description: "Partition leases (p.<n>) and worker membership (w.<id>)",
			History:     1,
			TTL:         c.LeaseTTL,
			Storage:     st,
			Replicas:    c.Replicas,
		},
		{
			Bucket:      pipeline.RulesBucket,
			Description: "Rule sets: active (one revision per change), proposed, status.<worker>",
			History:     64,
			Storage:     st,
			Replicas:    c.Replicas,
		},
	}
}

// Provision creates or updates every stream and bucket.
func Provision(ctx context.Context, js jetstream.JetStream, c Config) error {
	for _, sc := range c.Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range c.Buckets() {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("provision bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}
