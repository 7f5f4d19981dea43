// The default rule pack is tested from outside package rules: its tests run
// on the detector engine (internal/ruletest imports detectors, which imports
// rules), as `tripline rules test` runs them.
package rules_test

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/ruletest"
	"github.com/tripline/tripline/rules"
)

var (
	asiTag     = regexp.MustCompile(`^ASI(0[1-9]|10)$`)
	threatTag  = regexp.MustCompile(`^T([1-9]|1[0-5])$`)
	maestroTag = regexp.MustCompile(`^MAESTRO-L[1-7]$`)
)

func loadPack(t *testing.T) *rules.Set {
	t.Helper()
	srcs := rules.PackSources()
	require.NotEmpty(t, srcs, "no embedded pack files")
	for _, s := range srcs {
		require.True(t, strings.HasPrefix(s.Name, "pack:"), s.Name)
	}
	set, err := rules.Compile(srcs...)
	require.NoError(t, err)
	return set
}

// The embedded pack and the files on disk are the same rule set.
func TestPackEmbedMatchesDisk(t *testing.T) {
	disk, err := rules.LoadPaths("pack")
	require.NoError(t, err)
	require.Equal(t, disk.Hash, loadPack(t).Hash)
}

// Every rule of the pack documents itself and is tagged and tested.
func TestPackRulesComplete(t *testing.T) {
	set := loadPack(t)
	require.GreaterOrEqual(t, len(set.Rules), 16)
	for _, r := range set.Rules {
		require.NotEmpty(t, r.Description, r.ID)
		require.NotEmpty(t, strings.TrimSpace(r.Rationale), "%s has no rationale", r.ID)
		require.NotNil(t, r.Nodes["mode"], "%s does not state its mode", r.ID)
		require.True(t, slices.ContainsFunc(r.Tags, asiTag.MatchString), "%s has no ASI tag", r.ID)
		require.True(t, slices.ContainsFunc(r.Tags, threatTag.MatchString), "%s has no T tag", r.ID)
		require.True(t, slices.ContainsFunc(r.Tags, maestroTag.MatchString), "%s has no MAESTRO-L tag", r.ID)
	}
	for _, r := range set.Rules {
		for _, v := range r.Variants {
			require.NotNil(t, v.Cond.Native, "rule %s should compile to native code (no VM on the hot path)", r.ID)
		}
	}
	require.Empty(t, ruletest.Coverage(set), "rules lacking a positive or a negative test")
	for _, r := range set.Rules {
		pos, neg := 0, 0
		for _, tst := range set.Tests {
			if !slices.Contains(tst.Rules, r.ID) {
				continue
			}
			if len(tst.Expect) > 0 {
				pos++
			} else {
				neg++
			}
		}
		require.Positive(t, pos, "%s has no positive test", r.ID)
		require.Positive(t, neg, "%s has no negative test", r.ID)
	}
}

// The pack's ids must not collide with the examples', so that both can be
// loaded from rules/ together.
func TestPackIDsDistinctFromExamples(t *testing.T) {
	set := loadPack(t)
	ex, err := rules.Compile(rules.ExampleSources()...)
	require.NoError(t, err)
	for _, r := range ex.Rules {
		require.Nil(t, set.Rule(r.ID), "pack redefines example rule %s", r.ID)
	}
}

// Every test of the pack passes on the real engine. With -v it logs every
// decision with the values that made it fire. TRIPLINE_PACK_DIR runs the
// tests of another copy of the pack instead (when tuning it).
func TestPackTests(t *testing.T) {
	set := loadPack(t)
	if dir := os.Getenv("TRIPLINE_PACK_DIR"); dir != "" {
		var err error
		set, err = rules.LoadPaths(dir)
		require.NoError(t, err)
	}
	rep := ruletest.Run(set, ruletest.Config{})
	for _, res := range rep.Tests {
		if testing.Verbose() {
			for _, d := range res.Decisions {
				var vals []string
				for _, v := range d.Values {
					s := v.Name + "=" + strconv.FormatFloat(v.Value, 'g', 4, 64)
					if !slices.Contains(vals, s) {
						vals = append(vals, s)
					}
				}
				t.Logf("%s: %s at %s %s/%s/%s %s", res.Name, d.Rule, d.Time.Sub(ruletest.DefaultStart), d.Mode, d.Action, d.Scope, strings.Join(vals, " "))
			}
		}
		if !res.Pass {
			msg := res.Err
			if msg == "" {
				msg = res.Diff
			}
			t.Errorf("%s (%s):\n%s", res.Name, res.Pos, msg)
		}
	}
	require.True(t, rep.OK(), rep.Summary())
}
