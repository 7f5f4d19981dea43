package enforce

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/pipeline"
)

// ProducerConfig configures a Producer. The zero value gets the defaults
// noted on each field.
type ProducerConfig struct {
	// Partitions is the number of event partitions; it must equal the
	// engine's (topology) setting. Default pipeline.DefaultPartitions.
	Partitions int
	// MaxPending bounds the events published but not yet acknowledged;
	// Publish blocks (honouring its context) while that many are pending.
	// Default 4096.
	MaxPending int
	// Retries is how many times an event whose acknowledgement failed or
	// timed out is published again (same Nats-Msg-Id, so the stream drops
	// it if it did land), with exponential backoff. Default 3; negative
	// means no retry.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled each time.
	// Default 100ms.
	RetryBackoff time.Duration
	// AckTimeout is how long to wait for the stream's acknowledgement
	// before counting the attempt as failed. Default 5s.
	AckTimeout time.Duration
	// Limits are the event limits applied by Validate; zero fields mean the
	// defaults, which are what the engine applies.
	Limits pipeline.Limits
	// Logger receives one line per event given up on (they are rare).
	Logger zerolog.Logger
	// Registerer receives the producer's metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

func (c *ProducerConfig) defaults() {
	if c.Partitions <= 0 {
		c.Partitions = pipeline.DefaultPartitions
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 4096
	}
	switch {
	case c.Retries == 0:
		c.Retries = 3
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.Limits.MaxEventBytes <= 0 {
		c.Limits.MaxEventBytes = pipeline.DefaultMaxEventBytes
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
}

// Producer publishes tool-call events to the events stream: validated,
// encoded canonically, on the subject of the event's agent partition, with
// the event id as Nats-Msg-Id. Publishing is asynchronous and bounded;
// Flush waits for the acknowledgements. A Producer is safe for concurrent
// use.
//
// Lifecycle: NewProducer, any number of Publish (and Flush) calls, then
// Close, which flushes.
type Producer struct {
	cfg ProducerConfig
	pub *asyncPublisher
	m   *producerMetrics
}

// NewProducer makes a producer publishing through js. The events stream
// must exist (topology.Provision, or `tripline nats init`).
func NewProducer(js jetstream.JetStream, cfg ProducerConfig) *Producer {
	cfg.defaults()
	p := &Producer{cfg: cfg, m: newProducerMetrics(cfg.Registerer)}
	p.pub = newAsyncPublisher(js, publisherConfig{
		maxPending: cfg.MaxPending,
		retries:    cfg.Retries,
		backoff:    cfg.RetryBackoff,
		ackTimeout: cfg.AckTimeout,
	})
	p.pub.onAck = func(a *jetstream.PubAck) {
		p.m.published.Inc()
		if a.Duplicate {
			p.m.duplicates.Inc()
		}
	}
	p.pub.onRetry = func(*nats.Msg, error) { p.m.retried.Inc() }
	p.pub.onFail = func(m *nats.Msg, err error) {
		p.m.failed.Inc()
		cfg.Logger.Error().Err(err).Str("subject", m.Subject).Str("event", m.Header.Get(jetstream.MsgIDHeader)).
			Msg("event not published after every retry")
	}
	return p
}

// Publish validates ev and publishes it asynchronously. An invalid event
// returns its *pipeline.ValidationError and is not sent. A nil error means
// the event is on its way; Flush reports whether it landed. Publish blocks
// while MaxPending events await acknowledgement, until ctx ends.
func (p *Producer) Publish(ctx context.Context, ev *pipeline.Event) error {
	if err := ev.Validate(&p.cfg.Limits); err != nil {
		p.m.invalid.Inc()
		return err
	}
	data := ev.AppendJSON(make([]byte, 0, 512))
	if len(data) > p.cfg.Limits.MaxEventBytes {
		p.m.invalid.Inc()
		return fmt.Errorf("event %s: %d bytes encoded, more than the %d the engine accepts; trim attrs or unknown fields",
			ev.ID, len(data), p.cfg.Limits.MaxEventBytes)
	}
	m := &nats.Msg{
		Subject: pipeline.EventSubject(ev.Tenant, ev.Agent, p.cfg.Partitions),
		Data:    data,
		Header:  nats.Header{jetstream.MsgIDHeader: []string{ev.ID}},
	}
	if err := p.pub.publish(ctx, m); err != nil {
		return fmt.Errorf("publish event %s: %w", ev.ID, err)
	}
	return nil
}

// Flush waits until every published event is acknowledged or given up on,
// and returns the first event given up on since the previous Flush (nil
// when all landed), or ctx's error.
func (p *Producer) Flush(ctx context.Context) error { return p.pub.wait(ctx) }

// Close flushes (within ctx) and stops the producer; Publish fails
// afterwards.
func (p *Producer) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	p.pub.close()
	return err
}
