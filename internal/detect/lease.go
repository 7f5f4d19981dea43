package detect

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Partition ownership uses leases in the owners KV bucket, whose entries
// expire after the lease TTL unless renewed:
//
//	w.<worker id>  membership: every live worker renews its own key
//	p.<partition>  lease: the owning worker's id
//
// Every worker computes the same assignment from the live members by
// rendezvous hashing, so partitions spread evenly and move as little as
// possible when a worker joins or leaves. A worker takes a lease with
// Create (which fails while another worker holds it), renews it with
// Update on the revision it holds (which fails if anyone else took it), and
// gives it up with a revision-checked Delete after draining. When a worker
// dies its leases expire and the partitions' new owners take them.

func memberKey(id string) string { return "w." + id }
func leaseKey(p int) string {
	if p == GlobalPartition {
		return "p.global"
	}
	if p == AckWatchPartition {
		return "p.acks"
	}
	return "p." + strconv.Itoa(p)
}

// assign returns the partitions worker should own among members; with
// global, the global pseudo-partition is one of them.
func assign(worker string, members []string, partitions int, global bool) []int {
	var out []int
	for p := range partitions {
		if owner(p, members) == worker {
			out = append(out, p)
		}
	}
	if global && owner(GlobalPartition, members) == worker {
		out = append(out, GlobalPartition)
	}
	if owner(AckWatchPartition, members) == worker {
		out = append(out, AckWatchPartition)
	}
	return out
}

func owner(p int, members []string) string {
	var best string
	var bestScore uint64
	for _, m := range members {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%s", p, m)
		if s := h.Sum64(); best == "" || s > bestScore || s == bestScore && m < best {
			best, bestScore = m, s
		}
	}
	return best
}

// members lists live workers from their membership keys.
func members(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	l, err := kv.ListKeysFiltered(ctx, "w.*")
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, strings.TrimPrefix(k, "w."))
	}
	slices.Sort(out)
	return out, nil
}
