// Package pipeline holds Tripline's event contract: the tool-call event a gateway,
// proxy or broker publishes for every call an agent makes, its JSON form, its
// validation and the limits that keep one event from hurting a worker.
//
// Producers in Go import this package; producers in other languages follow
// pipeline/event.schema.json, which describes the same contract.
package pipeline

import "time"

// MinEventTime is the earliest event time accepted: earlier times come from
// producers whose clock is not set, and the engine's windows are indexed
// from the unix epoch.
var MinEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Action is the normalised verb of a tool call.
type Action string

// The normalised action verbs. Producers may send common synonyms (get, post,
// exec, …); the decoder maps them onto these and keeps the original verb in
// Event.ActionRaw.
const (
	ActionRead    Action = "read"
	ActionWrite   Action = "write"
	ActionDelete  Action = "delete"
	ActionSend    Action = "send"
	ActionExecute Action = "execute"
	ActionAuth    Action = "auth"
	ActionOther   Action = "other"
)

// Outcome of a tool call.
const (
	OutcomeOK     = "ok"
	OutcomeError  = "error"
	OutcomeDenied = "denied"
)

// Sensitivity of the data a call touched, lowest first.
const (
	SensitivityPublic       = "public"
	SensitivityInternal     = "internal"
	SensitivityConfidential = "confidential"
	SensitivityRestricted   = "restricted"
)

// Approval state of a call that needed (or could have needed) a human.
const (
	ApprovalNone     = "none"
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
)

// Event is one tool call made by an agent. Its JSON form is described by
// event.schema.json; field names below are the JSON names and also the names
// rule expressions use.
type Event struct {
	// ID is unique per event; it is the JetStream Nats-Msg-Id, so a producer
	// that retries with the same id is deduplicated.
	ID string `json:"id" expr:"id"`
	// Time is when the call happened (event time, millisecond precision).
	Time time.Time `json:"time" expr:"time"`
	// Tenant isolates customers; every rule group is scoped by tenant.
	Tenant string `json:"tenant" expr:"tenant"`

	// Agent is the agent's workload identity: a SPIFFE ID
	// (spiffe://trust-domain/path) or an OIDC subject.
	Agent string `json:"agent" expr:"agent"`
	// Instance identifies one running copy of the agent (pod, process).
	Instance string `json:"instance,omitempty" expr:"instance"`
	// ParentAgent is the agent that delegated to this one in a multi-agent chain.
	ParentAgent string `json:"parent_agent,omitempty" expr:"parent_agent"`
	// DelegationDepth is 0 for an agent acting for a human directly, 1 for its
	// sub-agent, and so on.
	DelegationDepth int `json:"delegation_depth,omitempty" expr:"delegation_depth"`
	// Principal is the human on whose behalf the agent acts.
	Principal string `json:"principal,omitempty" expr:"principal"`

	// Session is carried by the gateway (MCP has no protocol session).
	Session string `json:"session,omitempty" expr:"session"`
	// Task is the unit of work the agent was given.
	Task string `json:"task,omitempty" expr:"task"`
	// TaskScope lists the tools the task declared it may use, where known.
	TaskScope []string `json:"task_scope,omitempty" expr:"task_scope"`

	// Tool is the tool (or MCP server/tool pair) that was called.
	Tool string `json:"tool" expr:"tool"`
	// Action is the normalised verb; ActionRaw the verb as sent, when it differed.
	Action    Action `json:"action" expr:"action"`
	ActionRaw string `json:"action_raw,omitempty" expr:"action_raw"`
	// Resource is what the call read or changed (path, table, URL, record id).
	Resource string `json:"resource,omitempty" expr:"resource"`
	// Destination is where an outbound action sent data (domain, address, channel).
	Destination string `json:"destination,omitempty" expr:"destination"`

	BytesIn  int64 `json:"bytes_in,omitempty" expr:"bytes_in"`
	BytesOut int64 `json:"bytes_out,omitempty" expr:"bytes_out"`
	Records  int64 `json:"records,omitempty" expr:"records"`

	// Sensitivity: public, internal, confidential or restricted ("" if unknown).
	Sensitivity string `json:"sensitivity,omitempty" expr:"sensitivity"`
	// Outcome: ok, error or denied.
	Outcome string `json:"outcome,omitempty" expr:"outcome"`
	// Approval: none, pending, approved or rejected ("" if not applicable).
	Approval string `json:"approval,omitempty" expr:"approval"`
	// Environment the call ran against (prod, staging, dev, …).
	Environment string `json:"environment,omitempty" expr:"environment"`
	// Credential is the id or hash of the credential/token used, never the token.
	Credential string `json:"credential,omitempty" expr:"credential"`
	// Trace is the trace/correlation id.
	Trace string `json:"trace,omitempty" expr:"trace"`

	// Attrs holds free-form string attributes.
	Attrs map[string]string `json:"attrs,omitempty" expr:"attrs"`

	// Unknown keeps top-level fields this version does not know, as a JSON
	// object (nil when there were none), so they survive a round trip.
	Unknown []byte `json:"-" expr:"-"`
}
