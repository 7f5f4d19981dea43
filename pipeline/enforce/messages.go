package enforce

import (
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tripline/tripline/pipeline"
)

// Ack is an enforcer's acknowledgement that it applied a command. It is
// published with JetStream to pipeline.AcksSubjectPrefix + tenant with
// Nats-Msg-Id = command id + "/" + enforcer id, once per command and
// enforcer. AppliedAt − IssuedAt is the command's time to enforce there.
type Ack struct {
	CommandID string    `json:"command_id"`
	Kind      string    `json:"kind"`
	Tenant    string    `json:"tenant"`
	Enforcer  string    `json:"enforcer"`
	AppliedAt time.Time `json:"applied_at"`
	IssuedAt  time.Time `json:"issued_at"`
}

// AckMsgID is the Nats-Msg-Id of an enforcer's ack of a command.
func AckMsgID(commandID, enforcerID string) string { return commandID + "/" + enforcerID }

// Heartbeat is published by every enforcer on core NATS to
// pipeline.HeartbeatSubjectPrefix + enforcer id every HeartbeatEvery.
type Heartbeat struct {
	Enforcer string    `json:"enforcer"`
	At       time.Time `json:"at"`
	// Active is the number of revocations and holds in force.
	Active int `json:"active"`
	// State is "ok", or "stale" when the enforcer has been cut off from the
	// revocation state for longer than its StaleAfter.
	State string `json:"state"`
	// LastUpdate is when the enforcer last took in a change of the
	// revocation state (a KV update or a reload); zero before the first.
	LastUpdate time.Time `json:"last_update"`
}

// Heartbeat states.
const (
	StateOK    = "ok"
	StateStale = "stale"
)

// ackSubject is where acks of tenant go. Lifts need not carry a tenant;
// their acks, and those of a tenant that is not a subject token, go to "_".
func ackSubject(tenant string) string {
	if !validToken(tenant) {
		tenant = "_"
	}
	return pipeline.AcksSubjectPrefix + tenant
}

func ackMsg(subject string, data []byte, id string) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
}

// validToken reports whether s can be one token of a NATS subject.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.' || c == '*' || c == '>' || c <= ' ' || c == 0x7f:
			return false
		}
	}
	return true
}
