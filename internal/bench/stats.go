package bench

import (
	"math"
	"slices"
	"time"
)

// Summary is a figure over the runs: min, median, max and each run's value.
type Summary struct {
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// summarize returns the summary of xs, or nil when there are none.
func summarize(xs []float64) *Summary {
	if len(xs) == 0 {
		return nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	runs := make([]float64, len(xs))
	for i, x := range xs {
		runs[i] = round(x)
	}
	return &Summary{Min: round(s[0]), Median: round(median(s)), Max: round(s[len(s)-1]), Runs: runs}
}

// round keeps what a measurement on a noisy machine can say: whole
// numbers from 1000 up, three decimals below.
func round(x float64) float64 {
	if math.Abs(x) >= 1000 {
		return math.Round(x)
	}
	return math.Round(x*1000) / 1000
}

// median of sorted values.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile returns the q-quantile (0 < q ≤ 1) of ds by nearest rank: the
// smallest sample with at least q of the samples at or below it. With
// fewer than 100 samples the p99 is the maximum.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ms converts a duration to milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }
