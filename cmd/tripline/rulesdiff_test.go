package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/rules"
)

// tunedRules is goodRules with bulk-read in shadow at 7 reads, exfil
// gone and a rule added.
func tunedRules(t *testing.T) string {
	t.Helper()
	dir := thresholdRules(t, 7)
	vol := filepath.Join(dir, "volume.yaml")
	data, err := os.ReadFile(vol)
	require.NoError(t, err)
	out := strings.Replace(string(data), "    mode: enforce\n", "    mode: shadow\n", 1)
	require.NotEqual(t, string(data), out)
	require.NoError(t, os.WriteFile(vol, []byte(out), 0o644))
	require.NoError(t, os.Remove(filepath.Join(dir, "sequences.yaml")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "added.yaml"), []byte(`
rules:
  - id: many-writes
    description: many writes
    match: action == "write"
    condition: count(1m, action == "write") > 3
`), 0o644))
	return dir
}

func TestRulesDiff(t *testing.T) {
	tuned := tunedRules(t)
	oldSet, err := rules.LoadPaths(goodRules)
	require.NoError(t, err)
	newSet, err := rules.LoadPaths(tuned)
	require.NoError(t, err)

	code, out, errOut := tripline(t, "", "rules", "diff", goodRules, tuned)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, `old: `+goodRules+` (set `+oldSet.Hash+`, 2 rules)
new: `+tuned+` (set `+newSet.Hash+`, 2 rules)

+ rule many-writes (shadow alert)
- rule exfil (enforce revoke session)
~ rule bulk-read: mode enforce → shadow; params.reads 5 → 7
`, out)

	// --exit-code: 1 when they differ, 0 when they do not.
	code, _, _ = tripline(t, "", "rules", "diff", goodRules, tuned, "--exit-code")
	require.Equal(t, 1, code)
	code, out, _ = tripline(t, "", "rules", "diff", goodRules, goodRules, "--exit-code")
	require.Equal(t, 0, code)
	require.True(t, strings.HasSuffix(out, "\nno changes (2 rules)\n"), out)

	// builtin is the default pack.
	code, out, errOut = tripline(t, "", "rules", "diff", "builtin", "builtin")
	require.Equal(t, 0, code, errOut)
	pack, err := rules.Compile(rules.PackSources()...)
	require.NoError(t, err)
	require.Contains(t, out, "old: builtin (set "+pack.Hash)
	require.Contains(t, out, "no changes")

	// JSON.
	code, out, errOut = tripline(t, "", "rules", "diff", goodRules, tuned, "--json")
	require.Equal(t, 0, code, errOut)
	var got rulesDiffJSON
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Equal(t, rules.Diff(oldSet, newSet), got.Diff)
	require.Nil(t, got.Impact)
	require.NotContains(t, out, `"impact"`)
}

func TestRulesDiffImpact(t *testing.T) {
	tuned := tunedRules(t)
	code, out, errOut := tripline(t, "", "rules", "diff", goodRules, tuned, "--events", sample)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "~ rule bulk-read: mode enforce → shadow; params.reads 5 → 7\n\nBacktest on "+sample+":\n\nRULE ")
	// bulk-read fires for fewer sessions with 7 reads than with 5.
	require.Regexp(t, `\nbulk-read\s+changed\s+\d+\s+6\s+0\s+[1-9]\d*\s+\d+\n`, out)
	require.Regexp(t, `\nexfil\s+removed\s+0\s+1\s+0\s+1\s+0\n`, out)
	require.Contains(t, out, "NEW and OLD count decisions with the new rules and with the old rules.")
	require.Contains(t, out, "\nbulk-read fires only with the old rules for ")
	require.Contains(t, out, "\nevents 196  malformed 4 ")

	code, out, errOut = tripline(t, "", "rules", "diff", goodRules, tuned, "--events", sample, "--json")
	require.Equal(t, 0, code, errOut)
	var got rulesDiffJSON
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.NotNil(t, got.Impact)
	require.EqualValues(t, 196, got.Impact.New.Events)
	require.Len(t, got.Impact.Rules, 3) // the new set's rules in order, then the removed ones
	require.Equal(t, "many-writes", got.Impact.Rules[0].Rule)
	require.Equal(t, "added", got.Impact.Rules[0].Change)
	require.Equal(t, "bulk-read", got.Impact.Rules[1].Rule)
	require.Equal(t, "changed", got.Impact.Rules[1].Change)
	require.Positive(t, got.Impact.Rules[1].OnlyOld)
	require.Equal(t, "removed", got.Impact.Rules[2].Change)
	require.Equal(t, []string{"exfil"}, []string{got.Diff.Removed[0].ID})

	// The same comparison as rules backtest --against.
	code, bt, errOut := tripline(t, "", "rules", "backtest", "--rules", tuned, "--against", goodRules, "--events", sample, "--json")
	require.Equal(t, 0, code, errOut)
	var c jsonComparison
	require.NoError(t, json.Unmarshal([]byte(bt), &c))
	require.Equal(t, c.Rules, got.Impact.Rules)
	require.Equal(t, c.Agents, got.Impact.Agents)
}

func TestRulesDiffErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("rules:\n  - id: x\n"), 0o644))
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{goodRules}, 2},
		{[]string{goodRules, goodRules, goodRules}, 2},
		{[]string{goodRules, "no/such/dir"}, 2},
		{[]string{goodRules, goodRules, "--tenant", "acme"}, 2},                  // history flag without history
		{[]string{goodRules, goodRules, "--strict"}, 2},                          // no events
		{[]string{goodRules, goodRules, "--events", sample, "--since", "1h"}, 2}, // both inputs
		{[]string{goodRules, bad}, 1},                                            // invalid rules
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := tripline(t, "", append([]string{"rules", "diff"}, tc.args...)...)
			require.Equal(t, tc.code, code, errOut)
		})
	}
}
