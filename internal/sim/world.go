package sim

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// The world: tenants with their time zones and outages, agents with their
// instances and rotating credentials, and the daily rhythm. Everything an
// attack needs to know about its victim at a given time (instance name,
// credential, activity) is a pure function of the configuration and the
// time, so attacks can be planned up front without running the benign
// traffic.

// mix hashes values into a 64-bit key (splitmix64 steps).
func mix(vals ...uint64) uint64 {
	h := uint64(0x243f6a8885a308d3)
	for _, v := range vals {
		h = splitmix(h ^ splitmix(v))
	}
	return h
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// newRand returns a generator of its own for one part of the simulation,
// so that the parts do not disturb each other's draws: adding an attack
// changes no benign event.
func newRand(vals ...uint64) *rand.Rand {
	k := mix(vals...)
	return rand.New(rand.NewPCG(k, splitmix(k)))
}

// Namespaces of the keys.
const (
	nsAgent uint64 = iota + 1
	nsTenant
	nsInstance
	nsCredential
	nsSession
	nsTask
	nsAttack
	nsPlacement
	nsSub
	nsRoleStats
)

const hexDigits = "0123456789abcdef"

// hexID is n lower-case hex digits of k.
func hexID(k uint64, n int) string {
	var b [16]byte
	for i := range n {
		b[i] = hexDigits[(k>>(4*(n-1-i)))&15]
	}
	return string(b[:n])
}

// b36 is n base-36 digits of k, like the suffix of a pod name.
func b36(k uint64, n int) string {
	const digits = "0123456789bcdfghjklmnpqrstvwxz" // no vowels, as Kubernetes does
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[k%uint64(len(digits))]
		k /= uint64(len(digits))
	}
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

// lognorm draws a log-normal value with the given median and spread (the
// standard deviation of its logarithm): the heavy-tailed sizes and think
// times of real traffic.
func lognorm(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

// bytesOf is a log-normal byte count, at least 1.
func bytesOf(r *rand.Rand, median, sigma float64) int64 {
	return max(1, int64(lognorm(r, median, sigma)))
}

// between is a uniform duration in [lo, hi).
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}

// think is a log-normal pause with the given median, between 200 ms and
// 20 times the median.
func think(r *rand.Rand, median time.Duration, sigma float64) time.Duration {
	d := time.Duration(lognorm(r, float64(median), sigma))
	return min(max(d, 200*time.Millisecond), 20*median)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// tenant is one customer of Tripline.
type tenant struct {
	idx     int
	name    string
	domain  string        // trust and mail domain: <name>.example
	tz      time.Duration // offset of its local time from UTC
	staff   []string      // the humans agents act for
	outages []outage
	rollout time.Duration // when the new tool reaches its role (past the run: never)
	attrs   [8]map[string]string
}

// outage is a window in which a downstream dependency of a tenant fails.
type outage struct {
	from, to time.Duration
	dep      dependency
}

var tenantNames = []string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"}

// tenantZones are the tenants' UTC offsets, in minutes: the Americas,
// Europe and Asia, so that some tenant is always at work.
var tenantZones = []int{-5 * 60, 60, 9 * 60, -8 * 60, 5*60 + 30, 0, -3 * 60, 8 * 60}

func tenantName(i int) string {
	if i < len(tenantNames) {
		return tenantNames[i]
	}
	return "tenant" + itoa(i+1)
}

var firstNames = []string{"ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hiro", "ines", "jonas", "kai", "lena",
	"marta", "nils", "olga", "priya", "quinn", "rosa", "sam", "tariq", "uma", "viktor", "wen", "yara", "zoe"}
var lastNames = []string{"adams", "baker", "costa", "dubois", "evans", "fischer", "garcia", "haddad", "ito", "jensen",
	"kowalski", "lopez", "moreau", "nakamura", "okafor", "patel", "rossi", "schmidt", "tanaka", "varga", "weber", "young"}

func person(k uint64) string {
	return firstNames[k%uint64(len(firstNames))] + "." + lastNames[(k>>16)%uint64(len(lastNames))]
}

// attrsFor returns the shared attribute map of a call to a tool with the
// given flags (nil when it has none).
func (tn *tenant) attrsFor(f toolFlags) map[string]string {
	return tn.attrs[f&7]
}

func (tn *tenant) initAttrs() {
	for f := range toolFlags(8) {
		if f == 0 {
			continue
		}
		m := map[string]string{}
		if f&untrusted != 0 {
			m["trust"] = "untrusted"
		}
		if f&dataTool != 0 {
			m["resource_tenant"] = tn.name
		}
		if f&privileged != 0 {
			m["privileged"] = "true"
		}
		tn.attrs[f] = m
	}
}

// outageOf reports whether dep of tenant tn is down at t (or everything
// is).
func (tn *tenant) outageOf(dep dependency, t time.Duration) bool {
	for _, o := range tn.outages {
		if (o.dep == dep && dep != depNone || o.dep == depAll) && t >= o.from && t < o.to {
			return true
		}
	}
	return false
}

// clock locates offsets in local time.
type clock struct {
	start int64 // Config.Start in unix nanoseconds
}

// local returns the local hour (0–23) at offset t in a zone, whether it is
// a weekend day there, and the offset at which that hour ends.
func (c clock) local(tz, t time.Duration) (hour int, weekend bool, end time.Duration) {
	abs := c.start + int64(t) + int64(tz)
	h := floorDiv(abs, int64(time.Hour))
	day := floorDiv(h, 24)
	wd := (day + 4) % 7 // 1970-01-01 was a Thursday; 0 is Sunday
	if wd < 0 {
		wd += 7
	}
	hour = int(h - day*24)
	return hour, wd == 0 || wd == 6, time.Duration((h+1)*int64(time.Hour) - c.start - int64(tz))
}

// next returns the offset of the next local hh:mm at or after t.
func (c clock) next(tz, t time.Duration, hh, mm int) time.Duration {
	abs := c.start + int64(t) + int64(tz)
	day := floorDiv(abs, int64(24*time.Hour))
	at := day*int64(24*time.Hour) + int64(hh)*int64(time.Hour) + int64(mm)*int64(time.Minute)
	if at < abs {
		at += int64(24 * time.Hour)
	}
	return time.Duration(at - c.start - int64(tz))
}

// rhythm is a daily activity curve: a weight per local hour (peak 1) and
// the factor applied on weekends.
type rhythm struct {
	hours   [24]float64
	weekend float64
}

// office hours: a morning ramp, a lunch dip, a quiet night.
var officeHours = [24]float64{0.02, 0.015, 0.01, 0.01, 0.015, 0.03, 0.08, 0.3, 0.7, 0.95, 1, 0.95,
	0.75, 0.9, 1, 0.95, 0.8, 0.55, 0.3, 0.18, 0.12, 0.08, 0.05, 0.03}

// developer hours: a later start and a long evening tail.
var devHours = [24]float64{0.06, 0.03, 0.02, 0.01, 0.01, 0.02, 0.04, 0.1, 0.35, 0.7, 0.9, 1,
	0.8, 0.85, 1, 1, 0.95, 0.8, 0.6, 0.45, 0.4, 0.35, 0.25, 0.12}

func (rh *rhythm) weight(hour int, weekend bool) float64 {
	w := rh.hours[hour]
	if weekend {
		w *= rh.weekend
	}
	return w
}

// instance is one running copy of an agent (a pod): its name changes when
// it restarts, and its credential rotates about hourly (and at restarts).
type instance struct {
	base     string // name prefix
	key      uint64
	period   time.Duration // credential lifetime
	phase    time.Duration
	restarts []time.Duration // in order
	// fixed name and credential (an attacker's copy), when set
	fixedName, fixedCred string

	// cache of name and credential for (cGen, cEpoch)
	cGen         int
	cEpoch       int64
	cName, cCred string
	cOK          bool

	// the credential the instance last obtained (credKey+1; 0: none yet),
	// for the token refresh of benign sessions
	seen     uint64
	seenCred string
	seenGen  int
}

func newInstance(base string, key uint64, r *rand.Rand, from, to time.Duration, restartsPerDay float64) *instance {
	in := &instance{base: base, key: key}
	in.period = between(r, 50*time.Minute, 70*time.Minute)
	in.phase = between(r, 0, in.period)
	if restartsPerDay > 0 {
		mean := float64(24*time.Hour) / restartsPerDay
		for t := from + time.Duration(r.ExpFloat64()*mean); t < to; t += time.Duration(r.ExpFloat64() * mean) {
			in.restarts = append(in.restarts, t)
		}
	}
	return in
}

func (in *instance) gen(t time.Duration) int {
	n := 0
	for _, r := range in.restarts {
		if r > t {
			break
		}
		n++
	}
	return n
}

func (in *instance) epoch(t time.Duration) int64 {
	return floorDiv(int64(t+in.phase), int64(in.period))
}

// epochEnd is when the credential in use at t expires.
func (in *instance) epochEnd(t time.Duration) time.Duration {
	return time.Duration((in.epoch(t)+1)*int64(in.period)) - in.phase
}

// credKey identifies the credential in use at t.
func (in *instance) credKey(t time.Duration) uint64 {
	return mix(in.key, uint64(in.gen(t)), uint64(in.epoch(t)))
}

// at returns the instance's name and credential at t.
func (in *instance) at(t time.Duration) (name, cred string) {
	if in.fixedName != "" {
		return in.fixedName, in.fixedCred
	}
	g, e := in.gen(t), in.epoch(t)
	if !in.cOK || g != in.cGen || e != in.cEpoch {
		if !in.cOK || g != in.cGen {
			in.cName = in.base + "-" + b36(mix(in.key, uint64(g)), 5)
		}
		in.cGen, in.cEpoch, in.cOK = g, e, true
		in.cCred = "tok-" + hexID(mix(nsCredential, in.key, uint64(g), uint64(e)), 12)
	}
	return in.cName, in.cCred
}

// stable reports whether the instance keeps one name and credential over
// [from, to].
func (in *instance) stable(from, to time.Duration) bool {
	return in.fixedName != "" || in.gen(from) == in.gen(to) && in.epoch(from) == in.epoch(to)
}
