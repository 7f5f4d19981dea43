package score_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tripline/tripline/internal/backtest"
	"github.com/tripline/tripline/internal/score"
	"github.com/tripline/tripline/internal/sim"
	"github.com/tripline/tripline/pipeline"
	"github.com/tripline/tripline/rules"
)

// simSource streams a simulation into the scorer without a file.
type simSource struct {
	s *sim.Sim
	n int64
}

func (src *simSource) Read(_ context.Context, out []pipeline.Event) (int, error) {
	for i := range out {
		if _, _, ok := src.s.Next(&out[i]); !ok {
			return i, io.EOF
		}
		src.n++
	}
	return len(out), nil
}

func (src *simSource) Position() backtest.Position { return backtest.Position{Lines: src.n} }

// TestPackOnTheSimulator is the pack's acceptance test: on a two-day
// simulation of every population with every attack scenario, each attack
// instance is detected and would be stopped (a revoke or hold, its time
// reported), no benign session is revoked or held by an enforcing rule, and
// the shadow rules would stop under 1% of benign sessions. The pack was
// tuned on seeds 1, 2, 3 and 11; seed 42 was held out, so the gate is not
// the data the thresholds were read from.
func TestPackOnTheSimulator(t *testing.T) {
	set, err := rules.Compile(rules.PackSources()...)
	require.NoError(t, err)
	s, err := sim.New(sim.Config{Seed: 42, Agents: 60, Scenarios: sim.ScenarioNames(), Repeat: 2})
	require.NoError(t, err)
	var lb bytes.Buffer
	for _, l := range s.Labels() {
		b, err := json.Marshal(l)
		require.NoError(t, err)
		lb.Write(append(b, '\n'))
	}
	labels, err := score.ReadLabels(&lb)
	require.NoError(t, err)
	r, err := score.Run(context.Background(), set, &simSource{s: s}, labels, score.Config{})
	require.NoError(t, err)

	require.Len(t, r.Scenarios, len(sim.ScenarioNames()))
	for _, sc := range r.Scenarios {
		require.Equal(t, sc.Instances, sc.Detected, "%s: detected", sc.Scenario)
		require.Equal(t, sc.Instances, sc.WouldStop, "%s: would be stopped", sc.Scenario)
		require.Positive(t, sc.TimeToStopMax, "%s: time to stop reported", sc.Scenario)
		t.Logf("%-17s %d/%d stopped in enforce, time to stop median %s max %s, harmful calls through %d",
			sc.Scenario, sc.Stopped, sc.Instances, time.Duration(sc.TimeToStopMedian), time.Duration(sc.TimeToStopMax), sc.HarmfulTotal)
	}
	b := r.Benign
	require.Greater(t, b.Sessions, int64(1000))
	require.Zero(t, b.WithEnforceStop, "benign sessions revoked or held in mode enforce")
	require.Less(t, b.ShadowStopRate, 0.01, "benign sessions a shadow rule would stop: %d of %d", b.WithShadowStop, b.Sessions)
	t.Logf("benign: %d sessions, %d with a decision, %d with a shadow stop, %d enforce", b.Sessions, b.WithDecision, b.WithShadowStop, b.WithEnforceStop)
}
