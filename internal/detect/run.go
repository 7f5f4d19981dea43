package detect

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
)

type owned struct {
	rev    uint64
	cancel context.CancelFunc
	done   chan struct{}
	failed bool
}

// Run owns and runs partitions until ctx ends, then drains: each partition
// finishes its batch (publish, then ack), stops pulling, and gives its lease
// back so another worker takes over at once.
func (w *Worker) Run(ctx context.Context) error {
	kv, err := w.js.KeyValue(ctx, pipeline.OwnersBucket)
	if err != nil {
		return err
	}
	if err := w.syncRules(ctx); err != nil {
		return err
	}
	rulesDone := make(chan struct{})
	go func() {
		defer close(rulesDone)
		w.watchRules(ctx)
	}()
	defer func() { <-rulesDone }()
	ttl := w.cfg.Topology.LeaseTTL
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	parts := map[int]*owned{}
	stop := func(p int, o *owned) {
		o.cancel()
		<-o.done
		delete(parts, p)
	}
	defer func() {
		bg, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for p, o := range parts {
			stop(p, o)
			_ = kv.Delete(bg, leaseKey(p), jetstream.LastRevision(o.rev))
		}
		_ = kv.Delete(bg, memberKey(w.cfg.WorkerID))
		w.m.owned.Set(0)
		w.log.Info().Msg("worker stopped; leases released")
	}()
	for {
		if err := w.balance(ctx, kv, parts, stop); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("lease round failed; retrying")
		}
		w.m.owned.Set(float64(len(parts)))
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (w *Worker) balance(ctx context.Context, kv jetstream.KeyValue, parts map[int]*owned, stop func(int, *owned)) error {
	id := w.cfg.WorkerID
	if _, err := kv.Put(ctx, memberKey(id), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return err
	}
	live, err := members(ctx, kv)
	if err != nil {
		return err
	}
	want := map[int]bool{}
	for _, p := range assign(id, live, w.cfg.Topology.Partitions, w.rules.Load().hasGlobal()) {
		want[p] = true
	}
	// renew, and drop what failed or was lost
	for p, o := range parts {
		select {
		case <-o.done:
			o.failed = true
		default:
		}
		if o.failed {
			stop(p, o)
			_ = kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(o.rev))
			continue
		}
		rev, err := kv.Update(ctx, leaseKey(p), []byte(id), o.rev)
		if err != nil {
			w.log.Warn().Err(err).Int("partition", p).Msg("lease lost; stopping partition")
			stop(p, o)
			continue
		}
		o.rev = rev
	}
	// hand back what another worker should now own
	for p, o := range parts {
		if !want[p] {
			stop(p, o)
			_ = kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(o.rev))
			w.log.Info().Int("partition", p).Msg("partition handed over")
		}
	}
	// take what is ours and free
	for p := range want {
		if parts[p] != nil {
			continue
		}
		rev, err := kv.Create(ctx, leaseKey(p), []byte(id))
		if errors.Is(err, jetstream.ErrKeyExists) {
			e, gerr := kv.Get(ctx, leaseKey(p))
			if gerr != nil || string(e.Value()) != id {
				continue // held by someone else until it expires or is released
			}
			rev, err = e.Revision(), nil // our own lease from before a restart
		}
		if err != nil {
			return err
		}
		pctx, cancel := context.WithCancel(ctx)
		o := &owned{rev: rev, cancel: cancel, done: make(chan struct{})}
		parts[p] = o
		run := func(ctx context.Context) error { return newPartition(w, p).run(ctx) }
		if p == AckWatchPartition {
			run = w.watchAcks
		}
		go func() {
			defer close(o.done)
			if err := run(pctx); err != nil {
				w.log.Error().Err(err).Int("partition", p).Msg("partition stopped")
			}
		}()
	}
	return nil
}
