package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// Rule sets are distributed through the rules KV bucket
// (pipeline.RulesBucket), in two phases so that a set is validated whole on
// every worker before any worker uses it:
//
//	proposed       a Bundle under validation: every live worker compiles
//	               it and reports in its status key
//	active         the Bundle every worker runs; each revision of this key
//	               is one change of the rules, kept as the change log
//	status.<id>    a worker's Status: what it validated and what it runs
//
// PushRules writes the proposal, waits until every live worker validated
// it, then commits it to active with a compare-and-set on the revision it
// started from (two analysts cannot overwrite each other's change), and
// waits until every worker runs it. If any worker rejects the proposal,
// nothing changes anywhere. If a worker fails to apply a committed set,
// the previous set is committed again: every worker returns to it.
// Workers swap sets between two batches of a partition, keeping the state
// of every aggregate and rule that did not change (detectors.NewEngineFrom).
const (
	RulesKeyActive   = "active"
	RulesKeyProposed = "proposed"
	rulesStatusKey   = "status."
)

// MaxBundleBytes bounds a rule set's encoded size (a NATS message carries it).
const MaxBundleBytes = 900 << 10

// Bundle is a rule set as distributed: its files, their hash, and who
// changed it, when and why.
type Bundle struct {
	Hash    string       `json:"hash"`
	Files   []BundleFile `json:"files"`
	Author  string       `json:"author,omitempty"`
	Comment string       `json:"comment,omitempty"`
	Time    time.Time    `json:"time"`
	// Previous is the hash of the set this one replaced.
	Previous string `json:"previous,omitempty"`
	// Proposal is the revision of the proposal every worker validated.
	Proposal uint64 `json:"proposal,omitempty"`
}

// BundleFile is one rule file of a Bundle.
type BundleFile struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// NewBundle makes a bundle of rule files.
func NewBundle(srcs []rules.Source, set *rules.Set, author, comment string) *Bundle {
	b := &Bundle{Hash: set.Hash, Author: author, Comment: comment, Time: time.Now().UTC()}
	for _, s := range srcs {
		b.Files = append(b.Files, BundleFile{Name: s.Name, Text: string(s.Data)})
	}
	return b
}

// Sources returns the bundle's files as rule sources.
func (b *Bundle) Sources() []rules.Source {
	out := make([]rules.Source, len(b.Files))
	for i, f := range b.Files {
		out[i] = rules.Source{Name: f.Name, Data: []byte(f.Text)}
	}
	return out
}

// Compile compiles the bundle and checks that it is the set it says.
func (b *Bundle) Compile() (*rules.Set, error) {
	set, err := rules.Compile(b.Sources()...)
	if err != nil {
		return nil, err
	}
	if set.Hash != b.Hash {
		return nil, fmt.Errorf("rule set hash %s differs from the bundle's %s (another Tripline version?)", set.Hash, b.Hash)
	}
	return set, nil
}

// DecodeBundle decodes a bundle from the rules bucket.
func DecodeBundle(data []byte) (*Bundle, error) {
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("rule bundle: %w", err)
	}
	if b.Hash == "" || len(b.Files) == 0 {
		return nil, errors.New("rule bundle: no hash or no files")
	}
	return &b, nil
}

// Status is what a worker reports about rule sets.
type Status struct {
	Worker string `json:"worker"`
	// Proposal is the last proposal revision validated; ProposalError why
	// it was rejected ("" if it compiled).
	Proposal      uint64 `json:"proposal,omitempty"`
	ProposalError string `json:"proposal_error,omitempty"`
	// Active is the revision of active the worker runs (0: its own files),
	// Hash the set's hash; ActiveError why the last committed set could
	// not be applied ("" if it was).
	Active      uint64    `json:"active"`
	Hash        string    `json:"hash"`
	ActiveError string    `json:"active_error,omitempty"`
	Time        time.Time `json:"time"`
	// Live is set by RuleStatuses: the worker is running (a member of the
	// owners bucket). It is not stored.
	Live bool `json:"-"`
}

// ruleSet is the rule set a worker runs, split for its partitions.
type ruleSet struct {
	set *rules.Set
	// local holds the rules whose groups (their own and their by() groups)
	// stay within one agent (evaluated per partition); global the rest
	// (evaluated by the global partition's owner), possibly none.
	local, global *rules.Set
	rev           uint64 // revision of active, 0 for the configured files
}

func newRuleSet(set *rules.Set, rev uint64) *ruleSet {
	// A rule is local only if its group and every by() group it reads stay
	// within one agent: a by(task, …) aggregate needs every partition's events.
	return &ruleSet{
		set:    set,
		local:  set.Subset(set.RuleIsLocal),
		global: set.Subset(func(r *rules.CompiledRule) bool { return !set.RuleIsLocal(r) }),
		rev:    rev,
	}
}

func (rs *ruleSet) hasGlobal() bool { return len(rs.global.Rules) > 0 }

// forPartition returns the rules partition n evaluates.
func (rs *ruleSet) forPartition(n int) *rules.Set {
	if n == GlobalPartition {
		return rs.global
	}
	return rs.local
}

// Rules returns the rule set the worker runs now.
func (w *Worker) Rules() *rules.Set { return w.rules.Load().set }

// install makes rs the worker's rule set: each partition switches to it
// before its next batch.
func (w *Worker) install(rs *ruleSet, b *Bundle) {
	old := w.rules.Swap(rs)
	w.m.rulesInfo.Reset()
	w.m.rulesInfo.WithLabelValues(rs.set.Hash).Set(1)
	w.m.rulesRevision.Set(float64(rs.rev))
	w.m.rulesCount.Set(float64(len(rs.set.Rules)))
	if old == nil {
		return
	}
	w.m.reloads.WithLabelValues("applied").Inc()
	ev := w.log.Info().Uint64("revision", rs.rev).Str("hash", rs.set.Hash).Str("previous", old.set.Hash).
		Str("diff", rules.Diff(old.set, rs.set).String())
	if b != nil {
		ev = ev.Str("author", b.Author).Str("comment", b.Comment)
	}
	ev.Msg("rule set swapped")
}

// putStatus updates the worker's status record (guarded by mu) and writes
// it to its key in the rules bucket.
func (w *Worker) putStatus(ctx context.Context, kv jetstream.KeyValue, update func(*Status)) {
	w.mu.Lock()
	update(&w.status)
	w.status.Worker, w.status.Time = w.cfg.WorkerID, w.cfg.Now().UTC()
	cur := w.rules.Load()
	w.status.Active, w.status.Hash = cur.rev, cur.set.Hash
	b, _ := json.Marshal(w.status)
	w.mu.Unlock()
	if _, err := kv.Put(ctx, rulesStatusKey+w.cfg.WorkerID, b); err != nil && ctx.Err() == nil {
		w.log.Warn().Err(err).Msg("rule status not written")
	}
}

// syncRules loads the active set from the bucket, if there is one, before
// the worker takes partitions: the bucket is the cluster's truth, the
// configured files are only the default until a set is pushed.
func (w *Worker) syncRules(ctx context.Context) error {
	e, err := w.rulesKV.Get(ctx, RulesKeyActive)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		w.putStatus(ctx, w.rulesKV, func(*Status) {})
		return nil
	}
	if err != nil {
		return fmt.Errorf("rules bucket: %w", err)
	}
	w.applyActive(ctx, e)
	return nil
}

// watchRules follows proposals and commits until ctx ends.
func (w *Worker) watchRules(ctx context.Context) {
	var prepared *ruleSet // the last proposal that compiled
	var preparedHash string
	for ctx.Err() == nil {
		wt, err := w.rulesKV.WatchFiltered(ctx, []string{RulesKeyActive, RulesKeyProposed})
		if err != nil {
			w.log.Warn().Err(err).Msg("rules watch failed; retrying")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range wt.Updates() {
			if e == nil {
				continue // initial values done
			}
			switch e.Key() {
			case RulesKeyProposed:
				prepared, preparedHash = nil, ""
				if e.Operation() != jetstream.KeyValuePut {
					continue
				}
				b, set, err := compileEntry(e)
				if err != nil {
					w.m.reloads.WithLabelValues("rejected").Inc()
					w.log.Error().Err(err).Uint64("proposal", e.Revision()).Msg("proposed rule set rejected")
				} else {
					prepared, preparedHash = newRuleSet(set, 0), b.Hash
					w.log.Info().Uint64("proposal", e.Revision()).Str("hash", preparedHash).Msg("proposed rule set validated")
				}
				rev := e.Revision()
				w.putStatus(ctx, w.rulesKV, func(s *Status) {
					s.Proposal, s.ProposalError = rev, errString(err)
				})
			case RulesKeyActive:
				if e.Operation() != jetstream.KeyValuePut {
					continue
				}
				if cur := w.rules.Load(); cur.rev == e.Revision() {
					continue
				}
				if prepared != nil {
					if b, err := DecodeBundle(e.Value()); err == nil && b.Hash == preparedHash {
						prepared.rev = e.Revision()
						w.install(prepared, b)
						prepared, preparedHash = nil, ""
						w.putStatus(ctx, w.rulesKV, func(s *Status) { s.ActiveError = "" })
						continue
					}
				}
				w.applyActive(ctx, e)
			}
		}
		wt.Stop()
	}
}

// applyActive compiles and installs a committed set; on failure the worker
// keeps its set and reports the error (PushRules then rolls back).
func (w *Worker) applyActive(ctx context.Context, e jetstream.KeyValueEntry) {
	b, set, err := compileEntry(e)
	if err != nil {
		w.m.reloads.WithLabelValues("rejected").Inc()
		w.log.Error().Err(err).Uint64("revision", e.Revision()).Msg("committed rule set cannot be applied; keeping the current set")
		w.putStatus(ctx, w.rulesKV, func(s *Status) { s.ActiveError = fmt.Sprintf("revision %d: %v", e.Revision(), err) })
		return
	}
	w.install(newRuleSet(set, e.Revision()), b)
	w.putStatus(ctx, w.rulesKV, func(s *Status) { s.ActiveError = "" })
}

// compileEntry decodes and compiles the bundle a bucket entry holds.
func compileEntry(e jetstream.KeyValueEntry) (*Bundle, *rules.Set, error) {
	b, err := DecodeBundle(e.Value())
	if err != nil {
		return nil, nil, err
	}
	set, err := b.Compile()
	return b, set, err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// RulesBucket opens the rules bucket.
func RulesBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, pipeline.RulesBucket)
	if err != nil {
		return nil, fmt.Errorf("rules bucket %s (run tripline nats init): %w", pipeline.RulesBucket, err)
	}
	return kv, nil
}
