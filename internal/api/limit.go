package api

import (
	"math"
	"sync"
	"time"
)

// RateLimit is a token bucket: Burst requests at once, refilled at
// PerSecond requests a second.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// DefaultRateLimit is the per-token limit when Options.RateLimit is zero.
var DefaultRateLimit = RateLimit{PerSecond: 10, Burst: 20}

// limiter holds one token bucket per key (per API token: the set of keys
// is the configured tokens, so it is bounded).
type limiter struct {
	rate    RateLimit
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(r RateLimit) *limiter {
	return &limiter{rate: r, buckets: map[string]*bucket{}}
}

// allow takes one request from key's bucket at now. When the bucket is
// empty it returns false and how long until a request is allowed again.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: float64(l.rate.Burst), last: now}
		l.buckets[key] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = math.Min(float64(l.rate.Burst), b.tokens+elapsed.Seconds()*l.rate.PerSecond)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate.PerSecond * float64(time.Second))
	return false, wait
}
