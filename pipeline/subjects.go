package pipeline

import "strconv"

// NATS subjects, streams and buckets. Every name Tripline uses on NATS is
// here so that producers, enforcers and the engine agree; docs/nats.md
// describes each one. Tenants appear as a subject token, which is why
// Validate restricts the characters a tenant may use.
const (
	// EventsSubjectPrefix + "<tenant>.<partition>": tool-call events.
	EventsSubjectPrefix = "tl.events."
	// DeadLetterSubjectPrefix + "<tenant>": events that failed decoding or
	// validation, with the reason in the Tripline-Error header.
	DeadLetterSubjectPrefix = "tl.dlq."
	// DecisionsSubjectPrefix + "<tenant>": every decision (alert, shadow, enforce).
	DecisionsSubjectPrefix = "tl.decisions."
	// RevocationsSubjectPrefix + "<tenant>": signed revocation, hold and lift
	// commands (the audit log; current state is in the RevocationsBucket).
	RevocationsSubjectPrefix = "tl.revocations."
	// AcksSubjectPrefix + "<tenant>": enforcer acknowledgements.
	AcksSubjectPrefix = "tl.acks."
	// HeartbeatSubjectPrefix + "<enforcer id>": enforcer heartbeats (core NATS).
	HeartbeatSubjectPrefix = "tl.heartbeat."
	// DecideSubjectPrefix + "<partition>": fresh-decision requests
	// (request/reply, answered by the partition's owner).
	DecideSubjectPrefix = "tl.decide."

	EventsStream      = "TL_EVENTS"
	DeadLetterStream  = "TL_DLQ"
	DecisionsStream   = "TL_DECISIONS"
	RevocationsStream = "TL_REVOCATIONS"
	AcksStream        = "TL_ACKS"
	// RevocationsBucket is the KV bucket holding the current revocation
	// state: key = revocation id, value = signed command.
	RevocationsBucket = "tl_revocations"
	// OwnersBucket holds partition leases and worker membership.
	OwnersBucket = "tl_owners"
	// RulesBucket distributes rule sets to the detector workers: the
	// active set (each revision one change), proposals under validation
	// and each worker's status. See internal/detect.
	RulesBucket = "tl_rules"

	// HeaderError carries the reason an event was dead-lettered.
	HeaderError = "Tripline-Error"
	// HeaderDecided marks an event that a fresh-decision request already
	// evaluated; the detector counts it in history but does not evaluate it again.
	HeaderDecided = "Tripline-Decided"

	// DefaultPartitions is the number of event partitions when not configured.
	DefaultPartitions = 16
)

// Partition returns the partition of an agent identity: FNV-1a (32-bit) of
// the identity's bytes, modulo the number of partitions. Producers in any
// language compute the same thing; all events of one agent land in one
// partition and so reach one detector.
func Partition(agent string, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(agent); i++ {
		h ^= uint32(agent[i])
		h *= 16777619
	}
	return int(h % uint32(partitions))
}

// EventSubject is the subject an event of tenant and agent is published on.
func EventSubject(tenant, agent string, partitions int) string {
	return EventsSubjectPrefix + tenant + "." + strconv.Itoa(Partition(agent, partitions))
}
