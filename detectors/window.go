package detectors

import (
	"math"
	"math/bits"
	"slices"
)

// Sliding windows are rings of buckets on event time (milliseconds). A ring
// over a window W with n buckets has buckets of width W/n; reading it at time
// t sums the bucket holding t and the n-1 before it, so it covers between
// W-W/n and W of history. All rings of a group live in one []int64 slab:
// [head, b0, b1, …, b(n-1)] per ring, where head is the bucket number
// (t / width) of the newest bucket.

type ringSpec struct {
	width int64 // bucket width, ms
	n     int64 // buckets
	off   int   // offset of this ring in the group's slab
}

func (r ringSpec) add(slab []int64, t, v int64) bool {
	idx := t / r.width
	head := slab[r.off]
	b := slab[r.off+1 : r.off+1+int(r.n)]
	switch {
	case idx > head:
		gap := idx - head
		if gap >= r.n || head == 0 {
			clear(b)
		} else {
			for k := head + 1; k <= idx; k++ {
				b[k%r.n] = 0
			}
		}
		slab[r.off] = idx
	case idx <= head-r.n:
		return false // older than the ring holds
	}
	b[idx%r.n] += v
	return true
}

func (r ringSpec) sum(slab []int64, t int64) int64 {
	idx := t / r.width
	head := slab[r.off]
	if head == 0 {
		return 0
	}
	b := slab[r.off+1 : r.off+1+int(r.n)]
	hi := min(idx, head)
	lo := max(idx-r.n+1, head-r.n+1)
	var s int64
	for k := lo; k <= hi; k++ {
		s += b[k%r.n]
	}
	return s
}

// distinct counts distinct values in a sliding window: exactly (value hash →
// last seen) up to a cap, then with a HyperLogLog per bucket.
type distinct struct {
	exact  []hashTime
	sketch *hllRing
}

type hashTime struct {
	h uint64
	t int64
}

func (d *distinct) add(h uint64, t, window int64, capExact int, rs ringSpec) {
	if d.sketch != nil {
		d.sketch.add(h, t, rs)
		return
	}
	for i := range d.exact {
		if d.exact[i].h == h {
			if t > d.exact[i].t {
				d.exact[i].t = t
			}
			return
		}
	}
	if len(d.exact) >= capExact {
		// drop values that left the window before giving up on exactness
		d.exact = slices.DeleteFunc(d.exact, func(e hashTime) bool { return e.t <= t-window })
	}
	if len(d.exact) < capExact {
		d.exact = append(d.exact, hashTime{h, t})
		return
	}
	d.sketch = newHLLRing(rs)
	for _, e := range d.exact {
		d.sketch.add(e.h, e.t, rs)
	}
	d.sketch.add(h, t, rs)
	d.exact = nil
}

func (d *distinct) count(t, window int64, rs ringSpec) int64 {
	if d.sketch != nil {
		return d.sketch.estimate(t, rs)
	}
	var n int64
	for _, e := range d.exact {
		if e.t > t-window && e.t <= t {
			n++
		}
	}
	return n
}

// hllRing is one HyperLogLog (2^hllP registers) per window bucket; the window
// estimate merges the buckets in range. Standard error ≈ 1.04/√128 ≈ 9%.
const hllP = 7

type hllRing struct {
	heads []int64
	regs  [][1 << hllP]uint8
}

func newHLLRing(rs ringSpec) *hllRing {
	return &hllRing{heads: make([]int64, rs.n), regs: make([][1 << hllP]uint8, rs.n)}
}

func (h *hllRing) add(x uint64, t int64, rs ringSpec) {
	idx := t / rs.width
	i := idx % rs.n
	if h.heads[i] != idx {
		if h.heads[i] > idx {
			return // too old for this bucket
		}
		h.heads[i] = idx
		h.regs[i] = [1 << hllP]uint8{}
	}
	reg := x >> (64 - hllP)
	rho := uint8(bits.LeadingZeros64(x<<hllP|1<<(hllP-1)) + 1)
	if rho > h.regs[i][reg] {
		h.regs[i][reg] = rho
	}
}

// invPow2[v] is 2^-v, for the estimate's harmonic mean.
var invPow2 = func() (t [66]float64) {
	for v := range t {
		t[v] = math.Ldexp(1, -v)
	}
	return t
}()

func (h *hllRing) estimate(t int64, rs ringSpec) int64 {
	idx := t / rs.width
	var m [1 << hllP]uint8
	for i := range rs.n {
		if hd := h.heads[i]; hd > idx-rs.n && hd <= idx {
			for r, v := range h.regs[i] {
				if v > m[r] {
					m[r] = v
				}
			}
		}
	}
	const M = 1 << hllP
	var sum float64
	zeros := 0
	for _, v := range m {
		sum += invPow2[v]
		if v == 0 {
			zeros++
		}
	}
	alpha := 0.7213 / (1 + 1.079/float64(M))
	est := alpha * M * M / sum
	if est <= 2.5*M && zeros > 0 {
		est = M * math.Log(float64(M)/float64(zeros))
	}
	return int64(est + 0.5)
}

// terms remembers when each value of a field was last seen for first_seen().
type terms struct {
	m map[uint64]int64
}

// seen records value h at t and reports whether it is new: never seen, or not
// within the horizon. When the set grows past max, terms outside the
// horizon go first, then the least recently seen.
func (s *terms) seen(h uint64, t, horizon int64, max int) bool {
	if s.m == nil {
		s.m = make(map[uint64]int64, 4)
	}
	last, ok := s.m[h]
	isNew := !ok || last <= t-horizon
	if t > last {
		s.m[h] = t
	}
	if len(s.m) > max {
		s.evict(t, horizon, max)
	}
	return isNew
}

func (s *terms) evict(t, horizon int64, max int) {
	for k, v := range s.m {
		if v <= t-horizon {
			delete(s.m, k)
		}
	}
	if len(s.m) <= max {
		return
	}
	ts := make([]int64, 0, len(s.m))
	for _, v := range s.m {
		ts = append(ts, v)
	}
	slices.Sort(ts)
	cut := ts[len(ts)-max*9/10] // keep the newest 90% of max
	for k, v := range s.m {
		if v < cut {
			delete(s.m, k)
		}
	}
}

// seq tracks ordered steps within a span. start[i] is the start time of the
// most recent chain that completed step i (0: none).
type seq struct {
	start []int64
	ids   [][]byte // event id that completed each step
}

// step advances the chains with an event at t matching the given steps and
// reports whether it completed the last step.
func (s *seq) step(matches []bool, t, span int64, id string) bool {
	n := len(matches)
	if s.start == nil {
		s.start = make([]int64, n)
		s.ids = make([][]byte, n)
	}
	done := false
	for i := n - 1; i >= 1; i-- {
		if matches[i] && s.start[i-1] != 0 && t-s.start[i-1] <= span && t >= s.start[i-1] {
			if i == n-1 {
				done = true
			}
			if s.start[i-1] > s.start[i] || i == n-1 {
				s.start[i] = s.start[i-1]
				s.ids[i] = append(s.ids[i][:0], id...)
			}
		}
	}
	if matches[0] {
		s.start[0] = t
		s.ids[0] = append(s.ids[0][:0], id...)
	}
	return done
}

// baseline keeps an exponentially weighted mean and variance of another
// aggregate's value, sampled once per tumbling window in which the group was
// active (the largest value seen in that window). Idle windows are not
// samples: the baseline is the agent's level when it works, so a daily rhythm
// does not make every morning look anomalous.
type baseline struct {
	cur       int64 // current tumbling window number
	peak      float64
	mean, vr  float64
	n         uint32
	hasWindow bool
}

const baselineMinAlpha = 1.0 / 32

func (b *baseline) observe(v float64, t, window int64) {
	idx := t / window
	switch {
	case !b.hasWindow:
		b.cur, b.peak, b.hasWindow = idx, v, true
	case idx > b.cur:
		b.push(b.peak)
		b.cur, b.peak = idx, v
	case idx == b.cur && v > b.peak:
		b.peak = v
	}
}

func (b *baseline) push(x float64) {
	b.n++
	alpha := max(1/float64(b.n), baselineMinAlpha)
	diff := x - b.mean
	incr := alpha * diff
	b.mean += incr
	b.vr = (1 - alpha) * (b.vr + diff*incr)
}

func (b *baseline) stddev() float64 { return math.Sqrt(b.vr) }

// z is how many spreads the current value is above the mean. The spread is
// floored at max(1, √mean) — the noise of a Poisson count — so a perfectly
// regular agent does not turn a small change into a huge score.
func (b *baseline) z(cur float64) float64 {
	if b.n == 0 {
		return 0
	}
	sd := max(b.stddev(), 1, math.Sqrt(math.Abs(b.mean)))
	return (cur - b.mean) / sd
}
