package detect

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/rules"
)

// A rule is evaluated per partition only if its group and every by() group
// it reads stay within one agent; a by(task, …) aggregate needs the events
// of every partition, so its rule goes to the global partition.
func TestRuleSetSplitsOnByGroups(t *testing.T) {
	set, err := rules.Compile(rules.Source{Name: "r.yaml", Data: []byte(`rules:
  - id: session-in-agent
    description: agent rule reading a session sum
    group: [agent]
    condition: first_seen(destination) && by(session, sum(records, 1h)) >= 20
  - id: task-in-agent
    description: agent rule reading a task count
    group: [agent]
    condition: by(task, count(10m)) > 100
  - id: session-in-task
    description: task rule reading a session count
    group: [task]
    condition: by(session, count(10m)) > 100
  - id: plain
    description: a session rule
    condition: count(1m) > 100
`)})
	require.NoError(t, err)
	rs := newRuleSet(set, 0)
	ids := func(s *rules.Set) []string {
		var out []string
		for _, r := range s.Rules {
			out = append(out, r.ID)
		}
		return out
	}
	require.Equal(t, []string{"session-in-agent", "plain"}, ids(rs.forPartition(0)))
	require.Equal(t, []string{"task-in-agent", "session-in-task"}, ids(rs.forPartition(GlobalPartition)))
	require.True(t, rs.hasGlobal())
}
