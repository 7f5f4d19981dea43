package detectors

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Decision is what a rule firing produces. Its ID is deterministic: the same
// rule version, group and window anchor give the same ID, so a replay or a
// new partition owner never issues a second decision for the same firing
// (the ID is also the JetStream Nats-Msg-Id of the decision).
type Decision struct {
	ID          string    `json:"id"`
	Time        time.Time `json:"time"` // event time of the event that fired the rule
	Rule        string    `json:"rule"`
	RuleVersion string    `json:"rule_version"`
	Severity    string    `json:"severity"`
	Tags        []string  `json:"tags,omitempty"`
	Mode        string    `json:"mode"`   // shadow | enforce
	Action      string    `json:"action"` // alert | revoke | hold
	Scope       string    `json:"scope,omitempty"`
	// RevokeFor is how long a revocation issued from this decision lasts.
	RevokeFor time.Duration `json:"revoke_for,omitempty"`
	// HoldTimeout and OnTimeout, on a hold: how long it waits for an
	// approval and what happens then (release or deny).
	HoldTimeout time.Duration `json:"hold_timeout,omitempty"`
	OnTimeout   string        `json:"on_timeout,omitempty"`

	Tenant string `json:"tenant"`
	// Group is the rule's group key, e.g. "tenant=acme,session=s-1".
	Group string `json:"group"`
	// Subject identifies who the action applies to, copied from the event
	// that fired the rule.
	Subject Subject `json:"subject"`

	EventID  string   `json:"event_id"`
	Evidence []string `json:"evidence,omitempty"` // sample event ids, newest first
	Values   []Value  `json:"values,omitempty"`   // why it fired
	// Suppressed counts firings of this rule for this group that the
	// cooldown held back since the previous decision.
	Suppressed int64  `json:"suppressed,omitempty"`
	Anchor     int64  `json:"anchor"` // window anchor (unix ms) in the id
	Reason     string `json:"reason"` // the rule's description
	// GuardRail is set when the worker's guard rail demoted this rule to
	// shadow because it revoked too many subjects too fast.
	GuardRail string `json:"guard_rail,omitempty"`
}

// Subject is the identity a decision is about.
type Subject struct {
	Agent       string `json:"agent"`
	Instance    string `json:"instance,omitempty"`
	Session     string `json:"session,omitempty"`
	Task        string `json:"task,omitempty"`
	Principal   string `json:"principal,omitempty"`
	Credential  string `json:"credential,omitempty"`
	Tool        string `json:"tool,omitempty"`
	ParentAgent string `json:"parent_agent,omitempty"`
}

// Value is one aggregate's value when the rule fired, with the threshold it
// was compared against where the condition compares it with a constant.
type Value struct {
	Name      string   `json:"name"`
	Value     float64  `json:"value"`
	Op        string   `json:"op,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
}

// decisionID is sha256(rule, version, group, anchor) in hex, 32 chars.
func decisionID(rule, version, group string, anchor int64) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(version))
	h.Write([]byte{0})
	h.Write([]byte(group))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(anchor))
	h.Write(b[:])
	return "d-" + hex.EncodeToString(h.Sum(nil))[:30]
}
