package rules

import (
	"strings"

	"github.com/tripline/tripline/pipeline"
)

// Field reads one event field for aggregates (distinct, sum, first_seen)
// and group keys. Exactly one of Str and Num is set.
type Field struct {
	Name string
	Str  func(*pipeline.Event) string
	Num  func(*pipeline.Event) int64
}

var stringFields = map[string]func(*pipeline.Event) string{
	"id":           func(e *pipeline.Event) string { return e.ID },
	"tenant":       func(e *pipeline.Event) string { return e.Tenant },
	"agent":        func(e *pipeline.Event) string { return e.Agent },
	"instance":     func(e *pipeline.Event) string { return e.Instance },
	"parent_agent": func(e *pipeline.Event) string { return e.ParentAgent },
	"principal":    func(e *pipeline.Event) string { return e.Principal },
	"session":      func(e *pipeline.Event) string { return e.Session },
	"task":         func(e *pipeline.Event) string { return e.Task },
	"tool":         func(e *pipeline.Event) string { return e.Tool },
	"action":       func(e *pipeline.Event) string { return string(e.Action) },
	"action_raw":   func(e *pipeline.Event) string { return e.ActionRaw },
	"resource":     func(e *pipeline.Event) string { return e.Resource },
	"destination":  func(e *pipeline.Event) string { return e.Destination },
	"sensitivity":  func(e *pipeline.Event) string { return e.Sensitivity },
	"outcome":      func(e *pipeline.Event) string { return e.Outcome },
	"approval":     func(e *pipeline.Event) string { return e.Approval },
	"environment":  func(e *pipeline.Event) string { return e.Environment },
	"credential":   func(e *pipeline.Event) string { return e.Credential },
	"trace":        func(e *pipeline.Event) string { return e.Trace },
}

var numFields = map[string]func(*pipeline.Event) int64{
	"bytes_in":         func(e *pipeline.Event) int64 { return e.BytesIn },
	"bytes_out":        func(e *pipeline.Event) int64 { return e.BytesOut },
	"records":          func(e *pipeline.Event) int64 { return e.Records },
	"delegation_depth": func(e *pipeline.Event) int64 { return int64(e.DelegationDepth) },
}

// lookupField resolves a field name: an event field or attrs.NAME.
func lookupField(name string) (Field, bool) {
	if f, ok := stringFields[name]; ok {
		return Field{Name: name, Str: f}, true
	}
	if f, ok := numFields[name]; ok {
		return Field{Name: name, Num: f}, true
	}
	if k, ok := strings.CutPrefix(name, "attrs."); ok && k != "" {
		return Field{Name: name, Str: func(e *pipeline.Event) string { return e.Attrs[k] }}, true
	}
	return Field{}, false
}

// GroupFields are the fields a rule may group by, in canonical order. The
// tenant is always part of a group key.
var GroupFields = []string{"tenant", "agent", "instance", "parent_agent", "principal", "session", "task", "credential", "tool", "destination"}

// Scopes a revocation or hold may target.
var Scopes = []string{"session", "instance", "agent", "task", "principal", "credential", "tool"}
