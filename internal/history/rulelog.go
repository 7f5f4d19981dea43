package history

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/rules"
)

// RuleChange is one row of rule_changes: a committed rule set.
type RuleChange struct {
	Revision uint64
	Hash     string
	Time     time.Time
	Author   string
	Comment  string
	Previous string
	Rules    int
	Diff     string // what changed against the previous revision
	Files    []detect.BundleFile
}

// FollowRuleChanges copies every committed rule set of the rules bucket
// (the history it still holds, then each new commit) into rule_changes,
// with the diff against the set before it, until ctx ends. Revisions
// already stored are skipped, so any number of history writers may run it
// and a restart writes nothing twice. A failed insert is retried.
func (s *Schema) FollowRuleChanges(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) error {
	kv, err := detect.RulesBucket(ctx, js)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		var prev *rules.Set // the watch replays the history from its start
		stored, err := s.storedRevisions(ctx)
		if err != nil {
			log.Warn().Err(err).Msg("rule change log: cannot read rule_changes; retrying")
			sleep(ctx, 5*time.Second)
			continue
		}
		w, err := kv.Watch(ctx, detect.RulesKeyActive, jetstream.IncludeHistory())
		if err != nil {
			log.Warn().Err(err).Msg("rule change log: watch failed; retrying")
			sleep(ctx, 5*time.Second)
			continue
		}
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			c, set := ruleChange(e, prev)
			prev = set
			if h, ok := stored[c.Revision]; ok && h == c.Hash {
				continue
			}
			for ctx.Err() == nil {
				if err := s.InsertRuleChange(ctx, c); err != nil {
					log.Warn().Err(err).Uint64("revision", c.Revision).Msg("rule change log: insert failed; retrying")
					sleep(ctx, 5*time.Second)
					continue
				}
				stored[c.Revision] = c.Hash
				log.Info().Uint64("revision", c.Revision).Str("hash", c.Hash).Str("author", c.Author).Msg("rule change logged")
				break
			}
		}
		_ = w.Stop()
	}
	return nil
}

// ruleChange describes a committed bundle against the set before it (nil:
// the first one the bucket holds). It returns the bundle's compiled set,
// or nil when it does not compile with this version.
func ruleChange(e jetstream.KeyValueEntry, prev *rules.Set) (*RuleChange, *rules.Set) {
	c := &RuleChange{Revision: e.Revision(), Time: e.Created()}
	b, err := detect.DecodeBundle(e.Value())
	if err != nil {
		c.Diff = err.Error()
		return c, nil
	}
	c.Hash, c.Author, c.Comment, c.Previous, c.Files = b.Hash, b.Author, b.Comment, b.Previous, b.Files
	if !b.Time.IsZero() {
		c.Time = b.Time
	}
	set, err := b.Compile()
	switch {
	case err != nil:
		c.Diff = fmt.Sprintf("does not compile with this version: %v", err)
	case prev == nil:
		c.Rules = len(set.Rules)
		c.Diff = fmt.Sprintf("first set in the log: %d rules", len(set.Rules))
	default:
		c.Rules = len(set.Rules)
		c.Diff = rules.Diff(prev, set).String()
	}
	return c, set
}

func (s *Schema) storedRevisions(ctx context.Context) (map[uint64]string, error) {
	rows, err := s.Conn.Query(ctx, "SELECT revision, hash FROM "+s.T(TableRuleChanges))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uint64]string{}
	for rows.Next() {
		var rev uint64
		var hash string
		if err := rows.Scan(&rev, &hash); err != nil {
			return nil, err
		}
		out[rev] = hash
	}
	return out, rows.Err()
}

// RuleChangeColumns are the columns of rule_changes the log fills.
var RuleChangeColumns = []string{"revision", "hash", "ts_ms", "date", "author", "comment", "previous", "rules", "diff", "file_names", "file_texts"}

// InsertRuleChange writes one row of rule_changes.
func (s *Schema) InsertRuleChange(ctx context.Context, c *RuleChange) error {
	names, texts := make([]string, len(c.Files)), make([]string, len(c.Files))
	for i, f := range c.Files {
		names[i], texts[i] = f.Name, f.Text
	}
	cols := []any{
		[]uint64{c.Revision}, []string{c.Hash}, []int64{c.Time.UnixMilli()}, []time.Time{c.Time.UTC()},
		[]string{c.Author}, []string{c.Comment}, []string{c.Previous}, []uint32{uint32(c.Rules)}, []string{c.Diff},
		[][]string{names}, [][]string{texts},
	}
	return appendColumns(ctx, s.Conn, insertSQL(s.T(TableRuleChanges), RuleChangeColumns), cols)
}

// RuleChanges reads the change log, newest first (at most limit rows).
func (s *Schema) RuleChanges(ctx context.Context, limit int) ([]RuleChange, error) {
	rows, err := s.Conn.Query(ctx, `SELECT revision, hash, any(ts_ms), any(author), any(comment), any(previous), any(rules), any(diff)
FROM `+s.T(TableRuleChanges)+` GROUP BY revision, hash ORDER BY revision DESC LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RuleChange
	for rows.Next() {
		var c RuleChange
		var ms int64
		var n uint32
		if err := rows.Scan(&c.Revision, &c.Hash, &ms, &c.Author, &c.Comment, &c.Previous, &n, &c.Diff); err != nil {
			return nil, err
		}
		c.Time, c.Rules = time.UnixMilli(ms).UTC(), int(n)
		out = append(out, c)
	}
	return out, rows.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
