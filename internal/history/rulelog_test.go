package history_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/detect"
	"github.com/tripline/tripline/rules"
)

func bundle(t *testing.T, text, author, comment string) []byte {
	t.Helper()
	src := rules.Source{Name: "r.yaml", Data: []byte(text)}
	set, err := rules.Compile(src)
	require.NoError(t, err)
	b, err := json.Marshal(detect.NewBundle([]rules.Source{src}, set, author, comment))
	require.NoError(t, err)
	return b
}

const logRule = `rules:
  - id: denied
    description: denied calls
    condition: count(5m, outcome == "denied") >= params.max
    params: {max: 5}
`

// TestRuleChangesAreLogged commits rule sets to the bucket and checks that
// the history keeps each one once — who, when, why and the diff — across a
// restart of the follower.
func TestRuleChangesAreLogged(t *testing.T) {
	e := newWEnv(t, "")
	ctx := context.Background()
	kv, err := detect.RulesBucket(ctx, e.js)
	require.NoError(t, err)
	_, err = kv.Put(ctx, detect.RulesKeyActive, bundle(t, logRule, "alice", "first"))
	require.NoError(t, err)
	_, err = kv.Put(ctx, detect.RulesKeyActive, bundle(t, strings.Replace(logRule, "max: 5", "max: 3", 1), "bob", "tighter (SOC-9)"))
	require.NoError(t, err)

	follow := func() (stop func()) {
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = e.s.FollowRuleChanges(fctx, e.js, zerolog.New(zerolog.NewTestWriter(t)))
		}()
		return func() { cancel(); <-done }
	}
	count := func() int {
		var n uint64
		require.NoError(t, e.s.Conn.QueryRow(ctx, "SELECT count() FROM "+e.s.T("rule_changes")).Scan(&n))
		return int(n)
	}
	stop := follow()
	require.Eventually(t, func() bool { return count() == 2 }, 10*time.Second, 50*time.Millisecond)
	stop()

	stop = follow() // a restart re-reads the bucket's history and writes nothing twice
	_, err = kv.Put(ctx, detect.RulesKeyActive, bundle(t, logRule, "carol", "rollback"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return count() == 3 }, 10*time.Second, 50*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	stop()
	require.Equal(t, 3, count())

	cs, err := e.s.RuleChanges(ctx, 10)
	require.NoError(t, err)
	require.Len(t, cs, 3)
	require.Equal(t, "carol", cs[0].Author)
	require.Equal(t, "bob", cs[1].Author)
	require.Equal(t, "tighter (SOC-9)", cs[1].Comment)
	require.Contains(t, cs[1].Diff, "params.max 5 → 3")
	require.Contains(t, cs[0].Diff, "params.max 3 → 5")
	require.Equal(t, "first set in the log: 1 rules", cs[2].Diff)
	require.Equal(t, 1, cs[1].Rules)
	require.WithinDuration(t, time.Now(), cs[0].Time, time.Minute)
}
