package enforce

import "sync"

const lockShards = 32 // a power of two

// shardedRWMutex is a reader-biased lock for Check. A sync.RWMutex keeps
// one reader count that every RLock writes, so concurrent Checks on
// different cores fight over its cache line (measured: a plain RWMutex
// doubles the cost of a parallel Check). Readers take one shard picked at
// random; writers, which are rare (a command applied, a sweep, a reload),
// take them all, in order.
type shardedRWMutex struct {
	shards [lockShards]struct {
		sync.RWMutex
		_ [40]byte // one cache line each
	}
}

// rlock read-locks the shard r picks (r: a random number) and returns it
// for runlock.
func (l *shardedRWMutex) rlock(r uint32) uint32 {
	i := r & (lockShards - 1)
	l.shards[i].RLock()
	return i
}

func (l *shardedRWMutex) runlock(i uint32) { l.shards[i].RUnlock() }

func (l *shardedRWMutex) lock() {
	for i := range l.shards {
		l.shards[i].Lock()
	}
}

func (l *shardedRWMutex) unlock() {
	for i := range l.shards {
		l.shards[i].Unlock()
	}
}
