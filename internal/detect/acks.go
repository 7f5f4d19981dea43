package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/pipeline/enforce"
)

// AckWatchPartition is the leased role (one owner in the cluster) that
// follows revocations and enforcer acknowledgements: it measures
// time-to-enforce and alerts on a revocation that no enforcer applied.
const AckWatchPartition = -2

// ackWatchLookback is how far back a new owner of the role reads, so that
// revocations issued during a handover are still watched.
const ackWatchLookback = 10 * time.Minute

type issued struct {
	at     time.Time // issued_at
	seen   time.Time // when the watcher saw it
	tenant string
	rule   string
}

// watchAcks follows TL_REVOCATIONS and TL_ACKS. The first acknowledgement
// of a revoke or hold gives its time-to-enforce (applied_at − issued_at);
// one that no enforcer acknowledged within UnappliedAfter is logged at
// error level and counted, once.
func (w *Worker) watchAcks(ctx context.Context) error {
	start := w.cfg.Now().Add(-ackWatchLookback)
	open := func(stream string) (jetstream.MessagesContext, error) {
		c, err := w.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
		})
		if err != nil {
			return nil, fmt.Errorf("ack watch: %s: %w", stream, err)
		}
		return c.Messages()
	}
	revs, err := open(pipeline.RevocationsStream)
	if err != nil {
		return err
	}
	defer revs.Stop()
	acks, err := open(pipeline.AcksStream)
	if err != nil {
		return err
	}
	defer acks.Stop()

	type item struct {
		cmd *enforce.Command
		ack *enforce.Ack
	}
	in := make(chan item, 256)
	pump := func(it jetstream.MessagesContext, ack bool) {
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			var x item
			if ack {
				x.ack = &enforce.Ack{}
				if json.Unmarshal(m.Data(), x.ack) != nil {
					continue
				}
			} else {
				x.cmd = &enforce.Command{}
				if json.Unmarshal(m.Data(), x.cmd) != nil {
					continue
				}
			}
			select {
			case in <- x:
			case <-ctx.Done():
				return
			}
		}
	}
	go pump(revs, false)
	go pump(acks, true)

	pending := map[string]issued{}
	applied := map[string]bool{} // commands acknowledged at least once
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	w.log.Info().Msg("watching revocations and enforcer acknowledgements")
	for {
		select {
		case <-ctx.Done():
			return nil
		case x := <-in:
			switch {
			case x.cmd != nil && (x.cmd.Kind == enforce.KindRevoke || x.cmd.Kind == enforce.KindHold):
				if applied[x.cmd.ID] {
					continue // acknowledged before the watcher saw it
				}
				if x.cmd.ExpiresAt.After(w.cfg.Now()) {
					pending[x.cmd.ID] = issued{at: x.cmd.IssuedAt, seen: w.cfg.Now(), tenant: x.cmd.Tenant, rule: x.cmd.Rule}
				}
			case x.ack != nil:
				// The first ack of a command gives its time-to-enforce; the
				// ack carries issued_at, so the order in which the two
				// streams deliver does not matter.
				if applied[x.ack.CommandID] {
					continue
				}
				if len(applied) >= 1_000_000 {
					clear(applied) // bounded: at worst a late duplicate ack is observed twice
				}
				applied[x.ack.CommandID] = true
				delete(pending, x.ack.CommandID)
				if !x.ack.IssuedAt.IsZero() {
					w.m.timeToEnforce.Observe(x.ack.AppliedAt.Sub(x.ack.IssuedAt).Seconds())
				}
			}
			w.m.unappliedPending.Set(float64(len(pending)))
		case <-tick.C:
			now := w.cfg.Now()
			for id, p := range pending {
				if now.Sub(p.seen) >= w.cfg.UnappliedAfter {
					delete(pending, id)
					w.m.unapplied.Inc()
					w.log.Error().Str("command", id).Str("tenant", p.tenant).Str("rule", p.rule).
						Dur("waited", now.Sub(p.seen)).Msg("no enforcer applied this revocation: check that enforcers are connected and trust the engine key")
				}
			}
			w.m.unappliedPending.Set(float64(len(pending)))
		}
	}
}
