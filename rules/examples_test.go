package rules

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The example rule set must always compile: it is what the README and the
// quickstart use.
func TestExamplesCompile(t *testing.T) {
	set, err := LoadPaths("examples")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(set.Rules), 8)
	for _, r := range set.Rules {
		require.NotEmpty(t, r.Version, r.ID)
		for _, v := range r.Variants {
			require.NotNil(t, v.Cond.Native, "rule %s should compile to native code", r.ID)
		}
	}
}
