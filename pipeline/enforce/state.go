package enforce

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
)

// maxCommandBytes bounds a KV value the enforcer will try to decode.
const maxCommandBytes = 64 << 10

// Scope slots of a tenant index. The tool scope is keyed by (agent, tool)
// and has its own map.
const (
	slotSession = iota
	slotInstance
	slotAgent
	slotTask
	slotPrincipal
	slotCredential
	numSlots
	slotTool = numSlots
)

func scopeSlot(scope string) int {
	switch scope {
	case ScopeSession:
		return slotSession
	case ScopeInstance:
		return slotInstance
	case ScopeAgent:
		return slotAgent
	case ScopeTask:
		return slotTask
	case ScopePrincipal:
		return slotPrincipal
	case ScopeCredential:
		return slotCredential
	case ScopeTool:
		return slotTool
	}
	return -1
}

// entry is one active revoke or hold. Entries are immutable once indexed,
// so states may share them.
type entry struct {
	id      string
	sig     string
	kind    string
	hold    bool
	tenant  string
	slot    int
	value   string
	tool    string
	reason  string
	expires int64 // unix nanoseconds
	// holdUntil (unix ns, 0: none) is when a hold times out into a deny.
	holdUntil int64
	issued    time.Time
}

type toolKey struct{ agent, tool string }

// tenantIndex holds one tenant's active commands by scope. Check skips
// the scopes nobody revoked (counts), and asks a Bloom filter before each
// map: most calls match nothing, and the filter answers that from a few
// words instead of seven map probes, which matters once the index no
// longer fits in the CPU caches.
type tenantIndex struct {
	counts  [numSlots + 1]int32 // entries per slot, the tool slot last
	n       int
	filter  []uint64 // blocked Bloom filter of (slot, value[, tool]) hashes; len a power of two
	removed int      // removals since the filter was built (their bits stay set)
	byValue [numSlots]map[string][]*entry
	byTool  map[toolKey][]*entry
}

// mayHave reports whether a command with hash h may be in the index; a
// false positive only costs a map lookup.
func (t *tenantIndex) mayHave(h uint64) bool {
	w := t.filter[h&uint64(len(t.filter)-1)]
	m := uint64(1)<<(h>>58) | uint64(1)<<((h>>52)&63)
	return w&m == m
}

func (t *tenantIndex) addHash(h uint64) {
	t.filter[h&uint64(len(t.filter)-1)] |= uint64(1)<<(h>>58) | uint64(1)<<((h>>52)&63)
}

// rebuild sizes the filter at half a word (32 bits) per entry, at least
// one cache line, and refills it. With two bits per entry in one word, a
// probe for an absent value passes about 0.5% of the time.
func (t *tenantIndex) rebuild(seed maphash.Seed) {
	words := 8
	for 2*words < t.n {
		words *= 2
	}
	t.filter = make([]uint64, words)
	t.removed = 0
	for slot, m := range t.byValue {
		for v := range m {
			t.addHash(keyHash(seed, slot, v, ""))
		}
	}
	for k := range t.byTool {
		t.addHash(keyHash(seed, slotTool, k.agent, k.tool))
	}
}

// keyHash hashes a scope slot and its value (and tool, for the tool slot).
func keyHash(seed maphash.Seed, slot int, v, tool string) uint64 {
	h := maphash.String(seed, v)
	if tool != "" {
		h ^= maphash.String(seed, tool) * 0x9e3779b97f4a7c15
	}
	h ^= uint64(slot+1) * 0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h
}

// record remembers an applied command: replay protection and ack-once.
type record struct {
	sig   string
	until int64 // forget after (unix ns)
}

// state is the enforcer's view of the revocations bucket. Check reads it
// under the enforcer's read lock; only the enforcer's run goroutine
// mutates it (under the write lock) or replaces it.
type state struct {
	seed    maphash.Seed // of the tenant filters
	tenants map[string]*tenantIndex
	// byID holds the active revoke/hold commands by id (= KV key).
	byID map[string]*entry
	// applied holds every command applied (any kind) by command id.
	applied map[string]record
	// lifted holds the ids of lifted commands: a revoke or hold for one of
	// them is a replay.
	lifted map[string]int64
}

func newState() *state {
	return &state{
		seed:    maphash.MakeSeed(),
		tenants: map[string]*tenantIndex{},
		byID:    map[string]*entry{},
		applied: map[string]record{},
		lifted:  map[string]int64{},
	}
}

// clone copies the maps (not the immutable entries): reconciliation
// applies the reloaded bucket to a clone and swaps it in whole.
func (s *state) clone() *state {
	c := &state{
		seed:    s.seed,
		tenants: make(map[string]*tenantIndex, len(s.tenants)),
		byID:    maps.Clone(s.byID),
		applied: maps.Clone(s.applied),
		lifted:  maps.Clone(s.lifted),
	}
	for name, t := range s.tenants {
		ct := &tenantIndex{counts: t.counts, n: t.n, filter: slices.Clone(t.filter), removed: t.removed, byTool: maps.Clone(t.byTool)}
		for i, m := range t.byValue {
			ct.byValue[i] = maps.Clone(m)
		}
		c.tenants[name] = ct
	}
	// Slices are shared with s: remove builds a new slice rather than
	// editing one in place, so s is never changed through c.
	return c
}

// check evaluates a call against the state at now (unix ns). It allocates
// nothing.
func (s *state) check(c *Call, now int64) Verdict {
	t := s.tenants[c.Tenant]
	if t == nil {
		return Verdict{}
	}
	var hold *entry
	vals := [numSlots]string{c.Session, c.Instance, c.Agent, c.Task, c.Principal, c.Credential}
	for i, v := range vals {
		if t.counts[i] == 0 || v == "" || !t.mayHave(keyHash(s.seed, i, v, "")) {
			continue
		}
		if verdict, deny := scan(t.byValue[i][v], now, &hold); deny {
			return verdict
		}
	}
	if t.counts[slotTool] > 0 && c.Agent != "" && c.Tool != "" && t.mayHave(keyHash(s.seed, slotTool, c.Agent, c.Tool)) {
		if verdict, deny := scan(t.byTool[toolKey{c.Agent, c.Tool}], now, &hold); deny {
			return verdict
		}
	}
	if hold != nil && c.Action != string(pipeline.ActionRead) {
		return Verdict{Decision: Hold, CommandID: hold.id, Reason: hold.reason}
	}
	return Verdict{}
}

// scan looks through one key's active entries: a revoke (or a hold that
// timed out into a deny) gives a Deny verdict; otherwise the first active
// hold is kept in *hold.
func scan(es []*entry, now int64, hold **entry) (Verdict, bool) {
	for _, e := range es {
		if e.expires <= now {
			continue
		}
		if !e.hold {
			return Verdict{Decision: Deny, CommandID: e.id, Reason: e.reason}, true
		}
		if e.holdUntil != 0 && now >= e.holdUntil {
			return Verdict{Decision: Deny, CommandID: e.id, Reason: ReasonHoldTimedOut}, true
		}
		if *hold == nil {
			*hold = e
		}
	}
	return Verdict{}, false
}

func (s *state) insert(e *entry) {
	t := s.tenants[e.tenant]
	if t == nil {
		t = &tenantIndex{}
		s.tenants[e.tenant] = t
	}
	if e.slot == slotTool {
		if t.byTool == nil {
			t.byTool = map[toolKey][]*entry{}
		}
		k := toolKey{e.value, e.tool}
		t.byTool[k] = appendEntry(t.byTool[k], e)
	} else {
		m := t.byValue[e.slot]
		if m == nil {
			m = map[string][]*entry{}
			t.byValue[e.slot] = m
		}
		m[e.value] = appendEntry(m[e.value], e)
	}
	t.n++
	t.counts[e.slot]++
	if 2*len(t.filter) < t.n {
		t.rebuild(s.seed)
	} else {
		t.addHash(keyHash(s.seed, e.slot, e.value, e.tool))
	}
	s.byID[e.id] = e
}

// appendEntry returns a new slice: slices may be shared with a clone.
func appendEntry(list []*entry, e *entry) []*entry {
	out := make([]*entry, len(list), len(list)+1)
	copy(out, list)
	return append(out, e)
}

func (s *state) remove(e *entry) {
	delete(s.byID, e.id)
	t := s.tenants[e.tenant]
	if t == nil {
		return
	}
	if e.slot == slotTool {
		k := toolKey{e.value, e.tool}
		if l := without(t.byTool[k], e); len(l) > 0 {
			t.byTool[k] = l
		} else {
			delete(t.byTool, k)
		}
	} else {
		m := t.byValue[e.slot]
		if l := without(m[e.value], e); len(l) > 0 {
			m[e.value] = l
		} else {
			delete(m, e.value)
		}
	}
	t.n--
	t.counts[e.slot]--
	if t.n <= 0 {
		delete(s.tenants, e.tenant)
		return
	}
	if t.removed++; t.removed > t.n {
		t.rebuild(s.seed) // shed the removed commands' bits (and shrink)
	}
}

func without(list []*entry, e *entry) []*entry {
	out := make([]*entry, 0, len(list))
	for _, x := range list {
		if x != e {
			out = append(out, x)
		}
	}
	return out
}

// parsed is the outcome of reading one KV update.
type parsed struct {
	cmd    *Command
	reject string // a Reject* reason, "" when cmd is usable
	err    error  // detail of the rejection, for the log
	noop   bool   // nothing to do (a delete of nothing active)
	known  bool   // the command applied before, with this signature (reject is RejectReplayed)
}

// parse turns a KV update into a verified command. It only reads s: for
// delete and purge operations (is there something active to protect?) and
// to recognise a command it applied before. It is safe to call from
// several goroutines while nobody changes s.
func (s *state) parse(key string, op jetstream.KeyValueOp, data []byte, kr Keyring, now time.Time, skew time.Duration) parsed {
	if op != jetstream.KeyValuePut {
		// Nothing unsigned lifts a command. A delete of a command that is
		// still active is an attempt to lift it; a delete of one that has
		// expired (or is about to, within the clock skew: the bucket's TTL
		// markers) is housekeeping.
		if e := s.byID[key]; e != nil && e.expires > now.Add(skew).UnixNano() {
			return parsed{reject: RejectUnsigned, err: fmt.Errorf("KV %s of active command %s ignored: only a signed lift ends a command", opName(op), key)}
		}
		return parsed{noop: true}
	}
	if len(data) > maxCommandBytes {
		return parsed{reject: RejectMalformed, err: fmt.Errorf("%w: %d bytes", ErrMalformed, len(data))}
	}
	c := new(Command)
	if err := json.Unmarshal(data, c); err != nil {
		return parsed{reject: RejectMalformed, err: fmt.Errorf("%w: %v", ErrMalformed, err)}
	}
	if r, ok := s.applied[c.ID]; ok && c.Sig != "" && r.sig == c.Sig {
		// Seen and verified before: a redelivery, or a reload re-reading
		// it. Skipping the verification is safe because nothing follows
		// from it: whatever else the value says, it changes nothing.
		_, lifted := s.lifted[c.ID]
		lifted = lifted && c.Kind != KindLift // put back after its lift: a replay even on a reload
		return parsed{reject: RejectReplayed, known: !lifted, err: fmt.Errorf("command %s applied before with the same signature", c.ID)}
	}
	if err := kr.Verify(c); err != nil {
		return parsed{reject: verifyReason(err), err: err}
	}
	want := c.ID
	if c.Kind == KindLift {
		want = c.Lifts
	}
	if key != want {
		return parsed{reject: RejectMalformed, err: fmt.Errorf("%w: %s command %s stored under key %q", ErrMalformed, c.Kind, c.ID, key)}
	}
	if c.IssuedAt.After(now.Add(skew)) {
		return parsed{reject: RejectFuture, err: fmt.Errorf("command %s issued at %s, more than %s ahead of this enforcer's clock", c.ID, c.IssuedAt.Format(time.RFC3339), skew)}
	}
	return parsed{cmd: c}
}

func verifyReason(err error) string {
	switch {
	case errors.Is(err, ErrUnsigned):
		return RejectUnsigned
	case errors.Is(err, ErrUnknownKey):
		return RejectUnknownKey
	case errors.Is(err, ErrForged):
		return RejectForged
	}
	return RejectMalformed
}

func opName(op jetstream.KeyValueOp) string {
	if op == jetstream.KeyValuePurge {
		return "purge"
	}
	return "delete"
}

// change is the outcome of applying a verified command.
type change struct {
	reject string // RejectExpired or RejectReplayed, "" when applied or known
	known  bool   // applied before with the same signature
	ack    bool   // first application of this command id: acknowledge it
	tenant string // for a lift, the tenant of the command it ended (if known)
}

// apply applies a verified command at now. It must run under the write
// lock (or on a state nobody else sees yet).
func (s *state) apply(c *Command, now time.Time) change {
	if c.Kind != KindLift {
		if _, ok := s.lifted[c.ID]; ok {
			return change{reject: RejectReplayed} // lifted for good
		}
	}
	if r, ok := s.applied[c.ID]; ok && r.sig == c.Sig {
		return change{known: true, reject: RejectReplayed}
	}
	if c.Expired(now) {
		return change{reject: RejectExpired}
	}
	_, seen := s.applied[c.ID]
	exp := c.ExpiresAt.UnixNano()
	tenant := c.Tenant
	switch c.Kind {
	case KindLift:
		until := exp
		if e := s.byID[c.Lifts]; e != nil {
			until = max(until, e.expires)
			if tenant == "" {
				tenant = e.tenant
			}
			s.remove(e)
		}
		s.lifted[c.Lifts] = max(s.lifted[c.Lifts], until)
	default: // revoke, hold (Verify checked the kind)
		if old := s.byID[c.ID]; old != nil {
			s.remove(old) // re-signed (e.g. extended): the newer one wins
		}
		s.insert(&entry{
			id: c.ID, sig: c.Sig, kind: c.Kind, hold: c.Kind == KindHold,
			tenant: c.Tenant, slot: scopeSlot(c.Scope), value: c.Value, tool: c.Tool,
			reason: c.Reason, expires: exp, issued: c.IssuedAt,
			holdUntil: unixNanoOrZero(c.HoldUntil),
		})
	}
	s.applied[c.ID] = record{sig: c.Sig, until: exp}
	return change{ack: !seen, tenant: tenant}
}

// expired lists the active commands that expired at now (unix ns), and the
// record keys that can be forgotten. It only reads s.
func (s *state) expired(now int64) (entries []*entry, records, lifted []string) {
	for _, e := range s.byID {
		if e.expires <= now {
			entries = append(entries, e)
		}
	}
	for id, r := range s.applied {
		if r.until <= now {
			records = append(records, id)
		}
	}
	for id, until := range s.lifted {
		if until <= now {
			lifted = append(lifted, id)
		}
	}
	return entries, records, lifted
}

// sweep removes what expired returned.
func (s *state) sweep(entries []*entry, records, lifted []string) {
	for _, e := range entries {
		if s.byID[e.id] == e {
			s.remove(e)
		}
	}
	for _, id := range records {
		delete(s.applied, id)
	}
	for _, id := range lifted {
		delete(s.lifted, id)
	}
}

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
