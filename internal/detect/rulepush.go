package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
)

// PushOptions tune PushRules.
type PushOptions struct {
	// Timeout bounds each phase: validation by every worker, then the swap
	// on every worker. Default 30s.
	Timeout time.Duration
	// Progress, when set, receives one line per step.
	Progress func(format string, args ...any)
}

// PushResult says what a push did.
type PushResult struct {
	Unchanged bool     // the bucket already held this set
	Revision  uint64   // revision of active now holding the set
	Previous  string   // hash of the set replaced ("" if none)
	Workers   []string // live workers that validated and run it
	// Applied is how long after the commit the last worker ran the set.
	Applied time.Duration
}

// PushError is a push that changed nothing (or was rolled back): Rejected
// maps each worker that refused the set to its reason.
type PushError struct {
	Stage      string // "validate" or "apply"
	Rejected   map[string]string
	Missing    []string // workers that did not answer in time
	RolledBack bool
}

func (e *PushError) Error() string {
	var parts []string
	for _, w := range slices.Sorted(maps.Keys(e.Rejected)) {
		parts = append(parts, fmt.Sprintf("worker %s: %s", w, e.Rejected[w]))
	}
	if len(e.Missing) > 0 {
		parts = append(parts, "no answer from "+strings.Join(e.Missing, ", "))
	}
	what := "rule set rejected; nothing changed"
	if e.Stage == "apply" {
		what = "rule set not applied everywhere"
		if e.RolledBack {
			what += "; rolled back to the previous set"
		}
	}
	return what + ": " + strings.Join(parts, "; ")
}

// PushRules distributes a rule set to every worker, transactionally: see
// the description of the rules bucket above. The caller has compiled and
// tested the set.
func PushRules(ctx context.Context, js jetstream.JetStream, b *Bundle, opt PushOptions) (*PushResult, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = 30 * time.Second
	}
	say := opt.Progress
	if say == nil {
		say = func(string, ...any) {}
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxBundleBytes {
		return nil, fmt.Errorf("rule set is %d bytes encoded, more than the %d a push carries", len(data), MaxBundleBytes)
	}
	kv, err := RulesBucket(ctx, js)
	if err != nil {
		return nil, err
	}
	owners, err := js.KeyValue(ctx, pipeline.OwnersBucket)
	if err != nil {
		return nil, fmt.Errorf("owners bucket (run tripline nats init): %w", err)
	}
	var curRev uint64
	var cur *Bundle
	switch e, err := kv.Get(ctx, RulesKeyActive); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, err
	default:
		curRev = e.Revision()
		if cur, err = DecodeBundle(e.Value()); err != nil {
			return nil, fmt.Errorf("active rule set (revision %d): %w", curRev, err)
		}
	}
	res := &PushResult{}
	if cur != nil {
		res.Previous = cur.Hash
		if cur.Hash == b.Hash {
			res.Unchanged, res.Revision = true, curRev
			return res, nil
		}
	}
	b.Previous = res.Previous
	live, err := members(ctx, owners)
	if err != nil {
		return nil, err
	}
	res.Workers = live

	// Phase 1: every live worker validates the proposal.
	prop, err := kv.Put(ctx, RulesKeyProposed, data)
	if err != nil {
		return nil, err
	}
	defer func() {
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = kv.Delete(bg, RulesKeyProposed)
	}()
	say("proposed as revision %d; waiting for %d worker(s) to validate it", prop, len(live))
	rejected, missing, err := waitStatus(ctx, kv, live, opt.Timeout, func(s *Status) (bool, string) {
		if s.Proposal != prop {
			return false, ""
		}
		return true, s.ProposalError
	})
	if err != nil {
		return nil, err
	}
	if len(rejected) > 0 || len(missing) > 0 {
		return nil, &PushError{Stage: "validate", Rejected: rejected, Missing: missing}
	}

	// Phase 2: commit, unless someone else committed meanwhile.
	b.Proposal = prop
	if data, err = json.Marshal(b); err != nil {
		return nil, err
	}
	var rev uint64
	if curRev == 0 {
		rev, err = kv.Create(ctx, RulesKeyActive, data)
	} else {
		rev, err = kv.Update(ctx, RulesKeyActive, data, curRev)
	}
	if err != nil {
		return nil, fmt.Errorf("commit: the active rule set changed since this push began (re-run it): %w", err)
	}
	committed := time.Now()
	res.Revision = rev
	say("committed as revision %d; waiting for the workers to swap", rev)
	rejected, missing, err = waitStatus(ctx, kv, live, opt.Timeout, func(s *Status) (bool, string) {
		if s.Active == rev {
			return true, ""
		}
		if s.ActiveError != "" && strings.HasPrefix(s.ActiveError, fmt.Sprintf("revision %d:", rev)) {
			return true, s.ActiveError
		}
		return false, ""
	})
	if err != nil {
		return res, err
	}
	res.Applied = time.Since(committed)
	if len(rejected) == 0 && len(missing) == 0 {
		return res, nil
	}
	perr := &PushError{Stage: "apply", Rejected: rejected, Missing: missing}
	if cur != nil && len(rejected) > 0 {
		cur.Comment = fmt.Sprintf("automatic rollback: revision %d was not applied by every worker", rev)
		cur.Author, cur.Time, cur.Previous, cur.Proposal = "tripline", time.Now().UTC(), b.Hash, 0
		if back, err := json.Marshal(cur); err == nil {
			if _, err := kv.Update(ctx, RulesKeyActive, back, rev); err == nil {
				perr.RolledBack = true
			}
		}
	}
	return res, perr
}

// waitStatus polls the live workers' status keys until done says each has
// answered, or the timeout. It returns the non-empty answers by worker and
// the workers that did not answer.
func waitStatus(ctx context.Context, kv jetstream.KeyValue, live []string, timeout time.Duration, done func(*Status) (bool, string)) (map[string]string, []string, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answered := map[string]string{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
poll:
	for len(answered) < len(live) {
		for _, w := range live {
			if _, ok := answered[w]; ok {
				continue
			}
			e, err := kv.Get(wctx, rulesStatusKey+w)
			if err != nil {
				continue
			}
			var s Status
			if json.Unmarshal(e.Value(), &s) != nil {
				continue
			}
			if ok, msg := done(&s); ok {
				answered[w] = msg
			}
		}
		if len(answered) == len(live) {
			break
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			break poll
		case <-tick.C:
		}
	}
	rejected := map[string]string{}
	var missing []string
	for _, w := range live {
		msg, ok := answered[w]
		switch {
		case !ok:
			missing = append(missing, w)
		case msg != "":
			rejected[w] = msg
		}
	}
	return rejected, missing, nil
}

// RuleRevision is one committed rule set, for the change log.
type RuleRevision struct {
	Revision uint64
	Bundle   *Bundle
}

// RuleHistory returns the committed rule sets the bucket still holds, oldest
// first.
func RuleHistory(ctx context.Context, js jetstream.JetStream) ([]RuleRevision, error) {
	kv, err := RulesBucket(ctx, js)
	if err != nil {
		return nil, err
	}
	es, err := kv.History(ctx, RulesKeyActive)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []RuleRevision
	for _, e := range es {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		b, err := DecodeBundle(e.Value())
		if err != nil {
			continue
		}
		out = append(out, RuleRevision{Revision: e.Revision(), Bundle: b})
	}
	return out, nil
}

// RuleStatuses returns the rule status of every worker that reported one,
// by worker id; Live says whether it is a member now (a stopped worker's
// status stays in the bucket).
func RuleStatuses(ctx context.Context, js jetstream.JetStream) ([]Status, error) {
	kv, err := RulesBucket(ctx, js)
	if err != nil {
		return nil, err
	}
	owners, err := js.KeyValue(ctx, pipeline.OwnersBucket)
	if err != nil {
		return nil, fmt.Errorf("owners bucket (run tripline nats init): %w", err)
	}
	live, err := members(ctx, owners)
	if err != nil {
		return nil, err
	}
	l, err := kv.ListKeysFiltered(ctx, rulesStatusKey+"*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []Status
	for k := range l.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var s Status
		if json.Unmarshal(e.Value(), &s) == nil {
			s.Live = slices.Contains(live, s.Worker)
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Worker, b.Worker) })
	return out, nil
}
