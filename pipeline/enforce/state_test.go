package enforce

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// keysFor returns a signer and a keyring trusting it.
func keysFor(t testing.TB) (*Signer, Keyring) {
	_, priv, err := GenerateKey()
	require.NoError(t, err)
	s := NewSigner(priv)
	kr := Keyring{}
	kr.Add(s.Public())
	return s, kr
}

func signed(s *Signer, c Command) *Command {
	s.Sign(&c)
	return &c
}

func key(c *Command) string {
	if c.Kind == KindLift {
		return c.Lifts
	}
	return c.ID
}

// step applies one KV put of c to st the way the enforcer does.
func step(t *testing.T, st *state, kr Keyring, c *Command, now time.Time) (parsed, change) {
	t.Helper()
	b, err := json.Marshal(c)
	require.NoError(t, err)
	p := st.parse(key(c), jetstream.KeyValuePut, b, kr, now, time.Minute)
	if p.reject == RejectReplayed {
		return p, change{reject: p.reject, known: p.known}
	}
	if p.cmd == nil {
		return p, change{}
	}
	return p, st.apply(p.cmd, now)
}

func TestStateSemantics(t *testing.T) {
	s, kr := keysFor(t)
	now := epoch
	rv := signed(s, Command{ID: "rv-1", Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s1",
		Reason: "runaway loop", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	hold := signed(s, Command{ID: "hd-1", Kind: KindHold, Tenant: "acme", Scope: ScopeAgent, Value: "a1",
		Reason: "bulk read", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	lift := signed(s, Command{ID: "lf-1", Kind: KindLift, Tenant: "acme", Lifts: "rv-1",
		Reason: "false positive", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "analyst/bob"})

	st := newState()
	_, ch := step(t, st, kr, rv, now)
	require.Equal(t, change{ack: true, tenant: "acme"}, ch)
	_, ch = step(t, st, kr, hold, now)
	require.True(t, ch.ack)

	at := now.UnixNano()
	require.Equal(t, Verdict{Decision: Deny, CommandID: "rv-1", Reason: "runaway loop"},
		st.check(&Call{Tenant: "acme", Agent: "a1", Session: "s1", Action: "read"}, at), "revoke wins over hold")
	require.Equal(t, Hold, st.check(&Call{Tenant: "acme", Agent: "a1", Action: "write"}, at).Decision)
	require.Equal(t, Allow, st.check(&Call{Tenant: "acme", Agent: "a1", Action: "read"}, at).Decision)
	require.Equal(t, Allow, st.check(&Call{Tenant: "other", Session: "s1"}, at).Decision)

	// The same command again is a replay; a re-signed one replaces it.
	_, ch = step(t, st, kr, rv, now)
	require.Equal(t, RejectReplayed, ch.reject)
	require.True(t, ch.known)
	longer := *rv
	longer.ExpiresAt = now.Add(2 * time.Hour)
	s.Sign(&longer)
	_, ch = step(t, st, kr, &longer, now)
	require.Equal(t, change{tenant: "acme"}, ch, "applied, but the id was acked already")
	require.Len(t, st.byID, 2)
	require.Equal(t, Deny, st.check(&Call{Tenant: "acme", Session: "s1"}, now.Add(90*time.Minute).UnixNano()).Decision)

	// Lift, then the revoke again: a replay, the session stays allowed.
	_, ch = step(t, st, kr, lift, now)
	require.Equal(t, change{ack: true, tenant: "acme"}, ch)
	require.Equal(t, Allow, st.check(&Call{Tenant: "acme", Session: "s1"}, at).Decision)
	_, ch = step(t, st, kr, rv, now)
	require.Equal(t, RejectReplayed, ch.reject)
	require.False(t, ch.known)
	require.Equal(t, Allow, st.check(&Call{Tenant: "acme", Session: "s1"}, at).Decision)

	// Expired at apply time.
	old := signed(s, Command{ID: "rv-2", Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s2",
		IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now, Issuer: "engine/w1"})
	_, ch = step(t, st, kr, old, now)
	require.Equal(t, RejectExpired, ch.reject)

	// Issued too far ahead of our clock.
	future := signed(s, Command{ID: "rv-3", Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s3",
		IssuedAt: now.Add(2 * time.Minute), ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	p, _ := step(t, st, kr, future, now)
	require.Equal(t, RejectFuture, p.reject)
}

func TestLiftBeforeRevoke(t *testing.T) {
	// A reload can see the lift before (or instead of) the revoke.
	s, kr := keysFor(t)
	now := epoch
	rv := signed(s, Command{ID: "rv-1", Kind: KindRevoke, Tenant: "acme", Scope: ScopeTask, Value: "t1",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	lift := signed(s, Command{ID: "lf-1", Kind: KindLift, Lifts: "rv-1",
		IssuedAt: now, ExpiresAt: now.Add(time.Minute), Issuer: "analyst/bob"})
	st := newState()
	_, ch := step(t, st, kr, lift, now)
	require.True(t, ch.ack)
	require.Equal(t, "", ch.tenant)
	_, ch = step(t, st, kr, rv, now)
	require.Equal(t, RejectReplayed, ch.reject)
	require.Equal(t, Allow, st.check(&Call{Tenant: "acme", Task: "t1"}, now.UnixNano()).Decision)
}

func TestParseRejections(t *testing.T) {
	s, kr := keysFor(t)
	other, _ := keysFor(t)
	now := epoch
	base := Command{ID: "rv-1", Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s1",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"}
	good := signed(s, base)

	forged := *good
	forged.Value = "s2" // changed after signing
	unsigned := base
	badShape := signed(s, Command{ID: "rv-1", Kind: KindRevoke, Tenant: "acme", Scope: "galaxy", Value: "x",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)})
	badSig := *good
	badSig.Sig = "not base64!"

	for _, tc := range []struct {
		name   string
		key    string
		data   []byte
		reason string
	}{
		{"forged", "rv-1", mustJSON(t, &forged), RejectForged},
		{"bad signature encoding", "rv-1", mustJSON(t, &badSig), RejectForged},
		{"unknown key", "rv-1", mustJSON(t, signed(other, base)), RejectUnknownKey},
		{"unsigned", "rv-1", mustJSON(t, &unsigned), RejectUnsigned},
		{"not JSON", "rv-1", []byte("revoke everything"), RejectMalformed},
		{"JSON of the wrong type", "rv-1", []byte(`{"id":7}`), RejectMalformed},
		{"too large", "rv-1", make([]byte, maxCommandBytes+1), RejectMalformed},
		{"unknown scope", "rv-1", mustJSON(t, badShape), RejectMalformed},
		{"stored under another key", "rv-2", mustJSON(t, good), RejectMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newState().parse(tc.key, jetstream.KeyValuePut, tc.data, kr, now, time.Minute)
			require.Nil(t, p.cmd)
			require.Equal(t, tc.reason, p.reject)
			require.Error(t, p.err)
		})
	}
}

func TestDeleteNeverLifts(t *testing.T) {
	s, kr := keysFor(t)
	now := epoch
	st := newState()
	rv := signed(s, Command{ID: "rv-1", Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s1",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	step(t, st, kr, rv, now)
	for _, op := range []jetstream.KeyValueOp{jetstream.KeyValueDelete, jetstream.KeyValuePurge} {
		p := st.parse("rv-1", op, nil, kr, now, time.Minute)
		require.Equal(t, RejectUnsigned, p.reject)
		require.Len(t, st.byID, 1)
	}
	// The bucket's TTL marker of an expiring (or unknown) command is housekeeping.
	require.True(t, st.parse("rv-1", jetstream.KeyValuePurge, nil, kr, now.Add(time.Hour-time.Second), time.Minute).noop)
	require.True(t, st.parse("rv-9", jetstream.KeyValueDelete, nil, kr, now, time.Minute).noop)
}

func TestCloneIsIndependent(t *testing.T) {
	s, kr := keysFor(t)
	now := epoch
	st := newState()
	a := signed(s, Command{ID: "rv-a", Kind: KindRevoke, Tenant: "acme", Scope: ScopeAgent, Value: "bot",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	b := signed(s, Command{ID: "rv-b", Kind: KindRevoke, Tenant: "acme", Scope: ScopeAgent, Value: "bot",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	step(t, st, kr, a, now)
	step(t, st, kr, b, now)
	require.Len(t, st.tenants["acme"].byValue[slotAgent]["bot"], 2)

	c := st.clone()
	_, ch := step(t, c, kr, signed(s, Command{ID: "lf-a", Kind: KindLift, Lifts: "rv-a",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "analyst/x"}), now)
	require.True(t, ch.ack)
	require.Len(t, c.tenants["acme"].byValue[slotAgent]["bot"], 1)
	require.Len(t, st.tenants["acme"].byValue[slotAgent]["bot"], 2, "the original is untouched")
	require.Len(t, st.byID, 2)
	require.Empty(t, st.lifted)
}

func TestSweep(t *testing.T) {
	s, kr := keysFor(t)
	now := epoch
	st := newState()
	short := signed(s, Command{ID: "rv-s", Kind: KindRevoke, Tenant: "acme", Scope: ScopeTool, Value: "bot", Tool: "mail.send",
		IssuedAt: now, ExpiresAt: now.Add(time.Minute), Issuer: "engine/w1"})
	long := signed(s, Command{ID: "rv-l", Kind: KindHold, Tenant: "globex", Scope: ScopePrincipal, Value: "alice",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	step(t, st, kr, short, now)
	step(t, st, kr, long, now)

	later := now.Add(2 * time.Minute).UnixNano()
	require.Equal(t, Allow, st.check(&Call{Tenant: "acme", Agent: "bot", Tool: "mail.send"}, later).Decision, "expired entries are ignored before the sweep")
	ents, recs, lifted := st.expired(later)
	require.Len(t, ents, 1)
	require.Equal(t, []string{"rv-s"}, recs)
	require.Empty(t, lifted)
	st.sweep(ents, recs, lifted)
	require.Len(t, st.byID, 1)
	require.NotContains(t, st.tenants, "acme", "an empty tenant is dropped")
	require.Equal(t, Hold, st.check(&Call{Tenant: "globex", Principal: "alice"}, later).Decision)
}

// TestIndexMatchesModel drives the index (maps, counts, Bloom filters,
// rebuilds) with random inserts and removals and compares every verdict
// with a linear scan of the active commands.
func TestIndexMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	st := newState()
	var live []*entry
	now := epoch.UnixNano()
	pick := func(n int) string { return fmt.Sprintf("v%d", rng.IntN(n)) }
	tenants := []string{"acme", "globex", "initech"}
	model := func(c *Call) Decision {
		d := Allow
		for _, e := range live {
			if e.tenant != c.Tenant || e.expires <= now {
				continue
			}
			var hit bool
			switch e.slot {
			case slotSession:
				hit = c.Session == e.value
			case slotInstance:
				hit = c.Instance == e.value
			case slotAgent:
				hit = c.Agent == e.value
			case slotTask:
				hit = c.Task == e.value
			case slotPrincipal:
				hit = c.Principal == e.value
			case slotCredential:
				hit = c.Credential == e.value
			case slotTool:
				hit = c.Agent == e.value && c.Tool == e.tool
			}
			if !hit {
				continue
			}
			if !e.hold {
				return Deny
			}
			if c.Action != "read" {
				d = Hold
			}
		}
		return d
	}
	for i := range 20000 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			j := rng.IntN(len(live))
			st.remove(live[j])
			live = append(live[:j], live[j+1:]...)
		} else {
			e := &entry{
				id: fmt.Sprintf("rv-%d", i), tenant: tenants[rng.IntN(len(tenants))], slot: rng.IntN(numSlots + 1),
				value: pick(40), hold: rng.IntN(4) == 0, expires: now + int64(rng.IntN(3)-1)*int64(time.Hour),
			}
			if e.slot == slotTool {
				e.tool = pick(3)
			}
			st.insert(e)
			live = append(live, e)
		}
		c := &Call{
			Tenant: tenants[rng.IntN(len(tenants))], Agent: pick(40), Instance: pick(40), Session: pick(40),
			Task: pick(40), Principal: pick(40), Credential: pick(40), Tool: pick(3), Action: []string{"read", "write"}[rng.IntN(2)],
		}
		require.Equal(t, model(c), st.check(c, now).Decision, "step %d", i)
	}
	require.Len(t, st.byID, len(live))
}

// A hold whose rule says on_timeout: deny holds writes until HoldUntil,
// then refuses every call of the scope until it expires.
func TestHoldTimesOutIntoDeny(t *testing.T) {
	s, kr := keysFor(t)
	now := epoch
	hold := signed(s, Command{ID: "hd-2", Kind: KindHold, Tenant: "acme", Scope: ScopeSession, Value: "s9",
		Reason: "privileged action", IssuedAt: now, HoldUntil: now.Add(15 * time.Minute), ExpiresAt: now.Add(75 * time.Minute), Issuer: "engine/w1"})
	st := newState()
	_, ch := step(t, st, kr, hold, now)
	require.True(t, ch.ack)
	write := &Call{Tenant: "acme", Session: "s9", Action: "write"}
	read := &Call{Tenant: "acme", Session: "s9", Action: "read"}
	at := now.Add(14 * time.Minute).UnixNano()
	require.Equal(t, Hold, st.check(write, at).Decision)
	require.Equal(t, Allow, st.check(read, at).Decision)
	at = now.Add(16 * time.Minute).UnixNano()
	require.Equal(t, Verdict{Decision: Deny, CommandID: "hd-2", Reason: ReasonHoldTimedOut}, st.check(write, at))
	require.Equal(t, Deny, st.check(read, at).Decision)
	require.Equal(t, Allow, st.check(write, now.Add(76*time.Minute).UnixNano()).Decision)

	// hold_until only on holds, and before the expiry
	bad := signed(s, Command{ID: "rv-9", Kind: KindRevoke, Tenant: "acme", Scope: ScopeSession, Value: "s9",
		Reason: "x", IssuedAt: now, HoldUntil: now.Add(time.Minute), ExpiresAt: now.Add(time.Hour), Issuer: "engine/w1"})
	require.ErrorIs(t, kr.Verify(bad), ErrMalformed)
}
