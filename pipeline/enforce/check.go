package enforce

import "math/rand/v2"

// Call identifies a tool call about to be forwarded: the fields revocations
// are scoped by. Empty fields match nothing. Action is the normalised verb
// (see pipeline.NormalizeAction): "read" passes a hold, anything else,
// including "", is state-changing and is held.
type Call struct {
	Tenant     string
	Agent      string // workload identity (SPIFFE ID or OIDC subject)
	Instance   string
	Session    string
	Task       string
	Principal  string
	Credential string // the credential id or hash, never the token
	Tool       string
	Action     string
}

// Decision is what to do with a call.
type Decision uint8

// Decisions. The zero Verdict allows.
const (
	Allow Decision = iota // forward the call
	Deny                  // refuse it (HTTP 403)
	Hold                  // park it for human approval (HTTP 423)
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Hold:
		return "hold"
	}
	return "unknown"
}

// Verdict is the answer of Check: the decision, the command that caused a
// Deny or Hold (empty for Allow and for a stale fail-closed Deny) and its
// reason.
type Verdict struct {
	Decision  Decision
	CommandID string
	Reason    string
}

// Reasons of verdicts that no command caused.
const (
	ReasonStale      = "enforcer stale"
	ReasonNotStarted = "enforcer not started"
	// ReasonHoldTimedOut: a hold nobody approved in time, whose rule says
	// on_timeout: deny.
	ReasonHoldTimedOut = "hold timed out without approval"
)

// Check decides a call against the revocations and holds in force. It is
// safe for concurrent use, allocates nothing, and does not block on NATS:
// it reads the enforcer's in-memory state.
//
// Deny if an active revoke matches the call in its tenant by any scope
// (session, instance, agent, task, principal, credential, or the
// (agent, tool) pair); otherwise Hold if an active hold matches and the
// call is not a read; otherwise Allow. A command is active from when it is
// applied until it is lifted or its ExpiresAt passes (measured on a clock
// cached every 100ms, so a command may outlive its expiry by that much).
//
// When the enforcer has not loaded the state yet, or has been cut off from
// it for longer than StaleAfter, FailClosed denies every call (reason
// ReasonNotStarted or ReasonStale) and FailOpen keeps deciding on the
// state it knows.
func (e *Enforcer) Check(c *Call) Verdict {
	// One random number spreads both the read lock and the verdict
	// counters over shards (see shardedRWMutex).
	r := rand.Uint32()
	if h := e.health.Load(); h != healthOK && e.cfg.FailPolicy == FailClosed {
		e.m.deny.inc(r >> 8)
		if h == healthNotReady {
			return Verdict{Decision: Deny, Reason: ReasonNotStarted}
		}
		return Verdict{Decision: Deny, Reason: ReasonStale}
	}
	now := e.now.Load()
	l := e.mu.rlock(r)
	v := e.st.check(c, now)
	e.mu.runlock(l)
	switch v.Decision {
	case Allow:
		e.m.allow.inc(r >> 8)
	case Deny:
		e.m.deny.inc(r >> 8)
	default:
		e.m.hold.inc(r >> 8)
	}
	return v
}
