package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SetDiff is what changed between two rule sets, rule by rule: the rules
// only in the new set, only in the old one, and those whose version
// differs with the fields that changed. Every list is sorted by rule id, so
// the same two sets always give the same diff.
type SetDiff struct {
	OldHash   string       `json:"old_hash"`
	NewHash   string       `json:"new_hash"`
	Added     []RuleInfo   `json:"added"`
	Removed   []RuleInfo   `json:"removed"`
	Changed   []RuleChange `json:"changed"`
	Unchanged int          `json:"unchanged"` // rules of the same version in both
}

// RuleInfo names an added or removed rule and what it does.
type RuleInfo struct {
	ID      string `json:"id"`
	Version string `json:"version"`
	Mode    string `json:"mode"`
	Action  string `json:"action"`
	Scope   string `json:"scope,omitempty"`
}

// RuleChange is a rule present in both sets with another version.
type RuleChange struct {
	ID         string        `json:"id"`
	OldVersion string        `json:"old_version"`
	NewVersion string        `json:"new_version"`
	Fields     []FieldChange `json:"fields"` // empty: only the spelling changed (a default written out, 120 as 120.0)
}

// FieldChange is one field of a rule, as an analyst reads it: Field is
// "mode", "params.max_calls", "overrides[tenant=acme].params.max_bytes",
// "exceptions[agent == \"x\"].expires", …; Old and New are the values
// written compactly, "" when the field (a param, an override, an
// exception) is absent on that side.
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// Empty reports whether the sets hold the same rules in the same versions.
func (d *SetDiff) Empty() bool {
	return len(d.Added) == 0 && len(d.Removed) == 0 && len(d.Changed) == 0
}

// Diff compares two rule sets by rule id: what changes when oldSet is
// replaced by newSet. It only reads the sets.
func Diff(oldSet, newSet *Set) *SetDiff {
	d := &SetDiff{OldHash: oldSet.Hash, NewHash: newSet.Hash, Added: []RuleInfo{}, Removed: []RuleInfo{}, Changed: []RuleChange{}}
	for _, nr := range newSet.Rules {
		or := oldSet.Rule(nr.ID)
		switch {
		case or == nil:
			d.Added = append(d.Added, info(nr))
		case or.Version == nr.Version:
			d.Unchanged++
		default:
			d.Changed = append(d.Changed, RuleChange{
				ID: nr.ID, OldVersion: or.Version, NewVersion: nr.Version,
				Fields: diffRule(oldSet, newSet, or, nr),
			})
		}
	}
	for _, or := range oldSet.Rules {
		if newSet.Rule(or.ID) == nil {
			d.Removed = append(d.Removed, info(or))
		}
	}
	slices.SortFunc(d.Added, func(a, b RuleInfo) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(d.Removed, func(a, b RuleInfo) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(d.Changed, func(a, b RuleChange) int { return strings.Compare(a.ID, b.ID) })
	return d
}

func info(r *CompiledRule) RuleInfo {
	return RuleInfo{ID: r.ID, Version: r.Version, Mode: r.Mode, Action: r.Action, Scope: r.Scope}
}

// String renders the diff compactly, one line a rule:
//
//   - rule new-rule (enforce revoke session)
//   - rule old-rule (shadow alert)
//     ~ rule tuned: mode shadow → enforce; params.max_calls 120 → 60
//     12 rules unchanged
func (d *SetDiff) String() string {
	var b strings.Builder
	for _, r := range d.Added {
		fmt.Fprintf(&b, "+ rule %s (%s)\n", r.ID, r.what())
	}
	for _, r := range d.Removed {
		fmt.Fprintf(&b, "- rule %s (%s)\n", r.ID, r.what())
	}
	for _, c := range d.Changed {
		fmt.Fprintf(&b, "~ rule %s: ", c.ID)
		if len(c.Fields) == 0 {
			fmt.Fprintf(&b, "version %s → %s, same effective rule (a default written out or a value respelled)\n", c.OldVersion, c.NewVersion)
			continue
		}
		for i, f := range c.Fields {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(f.String())
		}
		b.WriteByte('\n')
	}
	switch {
	case d.Empty():
		fmt.Fprintf(&b, "no changes (%s)\n", plural(d.Unchanged, "rule"))
	case d.Unchanged > 0:
		fmt.Fprintf(&b, "%s unchanged\n", plural(d.Unchanged, "rule"))
	}
	return b.String()
}

func (r RuleInfo) what() string {
	s := r.Mode + " " + r.Action
	if r.Scope != "" {
		s += " " + r.Scope
	}
	return s
}

// String renders one change: "mode shadow → enforce", "params.burst
// (none) → 5".
func (f FieldChange) String() string {
	return f.Field + " " + orNone(f.Old) + " → " + orNone(f.New)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// diffRule lists the fields that differ, in the order an analyst weighs
// them: what the rule does first, then when it fires, then the rest.
func diffRule(oldSet, newSet *Set, o, n *CompiledRule) []FieldChange {
	var out []FieldChange
	field := func(name, ov, nv string) {
		if ov != nv {
			out = append(out, FieldChange{Field: name, Old: ov, New: nv})
		}
	}
	field("mode", o.Mode, n.Mode)
	field("action", o.Action, n.Action)
	field("scope", o.Scope, n.Scope)
	field("severity", o.Severity, n.Severity)
	field("condition", oneLine(o.Condition), oneLine(n.Condition))
	field("match", oneLine(o.Match), oneLine(n.Match))
	field("group", groupName(oldSet, o), groupName(newSet, n))
	out = append(out, diffParams("params.", o.Params, n.Params)...)
	out = append(out, diffOverrides(o.Overrides, n.Overrides)...)
	out = append(out, diffExceptions(o.Rule.Exceptions, n.Rule.Exceptions)...)
	field("cooldown", formatDuration(time.Duration(o.Cooldown)), formatDuration(time.Duration(n.Cooldown)))
	field("revoke_for", formatDuration(time.Duration(o.RevokeFor)), formatDuration(time.Duration(n.RevokeFor)))
	field("hold_timeout", formatOptDuration(o.HoldTimeout), formatOptDuration(n.HoldTimeout))
	field("on_timeout", o.OnTimeout, n.OnTimeout)
	field("tags", formatList(o.Tags), formatList(n.Tags))
	field("description", o.Description, n.Description)
	return out
}

// groupName is the rule's canonical group key without the tenant, which
// every key holds: "session", "agent,tool".
func groupName(s *Set, r *CompiledRule) string {
	if r.Group >= 0 && r.Group < len(s.Groups) {
		return strings.Join(slices.DeleteFunc(slices.Clone(s.Groups[r.Group].Fields), func(f string) bool { return f == "tenant" }), ",")
	}
	return strings.Join(r.Rule.Group, ",")
}

func diffParams(prefix string, o, n map[string]any) []FieldChange {
	var out []FieldChange
	for _, k := range unionKeys(o, n) {
		ov, ook := o[k]
		nv, nok := n[k]
		os, ns := "", ""
		if ook {
			os = formatValue(ov)
		}
		if nok {
			ns = formatValue(nv)
		}
		if os != ns {
			out = append(out, FieldChange{Field: prefix + k, Old: os, New: ns})
		}
	}
	return out
}

func unionKeys(maps ...map[string]any) []string {
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// diffOverrides pairs overrides by who they apply to (tenant and agent).
func diffOverrides(o, n []*Override) []FieldChange {
	key := func(ov *Override) string {
		var parts []string
		if ov.Tenant != "" {
			parts = append(parts, "tenant="+ov.Tenant)
		}
		if ov.Agent != "" {
			parts = append(parts, "agent="+ov.Agent)
		}
		return "overrides[" + strings.Join(parts, ",") + "]"
	}
	summary := func(ov *Override) string {
		var parts []string
		for _, k := range unionKeys(ov.Params) {
			parts = append(parts, k+"="+formatValue(ov.Params[k]))
		}
		s := strings.Join(parts, " ")
		if ov.Comment != "" {
			s += " (" + oneLine(ov.Comment) + ")"
		}
		return s
	}
	return pairUp(o, n, key, summary, func(k string, ov, nv *Override) (out []FieldChange) {
		out = append(out, diffParams(k+".params.", ov.Params, nv.Params)...)
		if a, b := oneLine(ov.Comment), oneLine(nv.Comment); a != b {
			out = append(out, FieldChange{Field: k + ".comment", Old: a, New: b})
		}
		return out
	})
}

// diffExceptions pairs exceptions by their match expression.
func diffExceptions(o, n []*Exception) []FieldChange {
	key := func(e *Exception) string { return "exceptions[" + oneLine(e.Match) + "]" }
	summary := func(e *Exception) string {
		s := "expires " + formatDate(e.Expires)
		if c := oneLine(e.Comment); c != "" {
			s += " (" + c + ")"
		}
		return s
	}
	return pairUp(o, n, key, summary, func(k string, ov, nv *Exception) (out []FieldChange) {
		if a, b := formatDate(ov.Expires), formatDate(nv.Expires); a != b {
			out = append(out, FieldChange{Field: k + ".expires", Old: a, New: b})
		}
		if a, b := oneLine(ov.Comment), oneLine(nv.Comment); a != b {
			out = append(out, FieldChange{Field: k + ".comment", Old: a, New: b})
		}
		return out
	})
}

// pairUp pairs two lists by key: an item only in the old list is removed,
// only in the new one added, and both changes fields.
func pairUp[T any](o, n []*T, key, summary func(*T) string, both func(k string, ov, nv *T) []FieldChange) []FieldChange {
	olds, news := keyed(o, key), keyed(n, key)
	var out []FieldChange
	for _, k := range sortedKeys(olds, news) {
		ov, nv := olds[k], news[k]
		switch {
		case ov == nil:
			out = append(out, FieldChange{Field: k, New: summary(nv)})
		case nv == nil:
			out = append(out, FieldChange{Field: k, Old: summary(ov)})
		default:
			out = append(out, both(k, ov, nv)...)
		}
	}
	return out
}

// keyed indexes items by key; a key seen again gets "#2", "#3", … so that
// no item is lost.
func keyed[T any](items []*T, key func(*T) string) map[string]*T {
	m := make(map[string]*T, len(items))
	for _, it := range items {
		if it == nil {
			continue
		}
		k := key(it)
		for i := 2; m[k] != nil; i++ {
			k = fmt.Sprintf("%s#%d", key(it), i)
		}
		m[k] = it
	}
	return m
}

func sortedKeys[T any](a, b map[string]*T) []string {
	var keys []string
	for _, m := range []map[string]*T{a, b} {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// oneLine collapses runs of white space, so that a condition re-wrapped
// over more lines is the same condition.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// formatValue writes a param value compactly: 120, 0.5, "text", ["a","b"].
func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int, int64, uint64, bool:
		return fmt.Sprint(x)
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

func formatList(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return "[" + strings.Join(l, ", ") + "]"
}

func formatDate(d Date) string {
	if d.IsZero() {
		return ""
	}
	t := d.UTC()
	if t.Equal(t.Truncate(24 * time.Hour)) {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.RFC3339)
}

func formatOptDuration(d Duration) string {
	if d == 0 {
		return ""
	}
	return formatDuration(time.Duration(d))
}

// formatDuration writes a duration the way rules do: 90s, 5m, 1h30m, 7d.
func formatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
