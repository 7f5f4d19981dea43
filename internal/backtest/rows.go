package backtest

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tripline/tripline/pipeline"
)

// The columns of history.EventSelect, in the order of the packed row.
var (
	packedStrings = []string{"id", "tenant", "agent", "instance", "parent_agent", "principal", "session", "task",
		"tool", "action", "action_raw", "resource", "destination", "sensitivity", "outcome", "approval",
		"environment", "credential", "trace", "extra"}
	packedNumbers = []string{"delegation_depth", "bytes_in", "bytes_out", "records"}
	packedArrays  = []string{"task_scope", "attrs.key", "attrs.value"}
)

// eventSelect selects the columns of history.EventSelect as two: ts_ms and
// the rest packed by the server into one string. The driver scans a row
// column by column, with two allocations per string and reflection for
// arrays, which made up most of a backtest's time; a packed row is one
// string, cut in place. In the packed string a string is its length in
// bytes, ':' and its bytes (so any content survives), a number is its
// decimal digits and ':', an array its length, ':' and its elements as
// strings. decodeRow reads a row into an event exactly as
// history.ScanEvent reads a row of history.EventSelect.
func eventSelect() string {
	var parts []string
	for _, c := range packedStrings {
		parts = append(parts, "toString(length("+c+")), ':', "+c)
	}
	for _, c := range packedNumbers {
		parts = append(parts, "toString("+c+"), ':'")
	}
	for _, c := range packedArrays {
		parts = append(parts, "toString(length("+c+")), ':', arrayStringConcat(arrayMap(x -> concat(toString(length(x)), ':', x), "+c+"))")
	}
	return "ts_ms, concat(" + strings.Join(parts, ",\n") + ")"
}

var errPacked = errors.New("backtest: malformed packed row from the history")

// decodeRow reads a row selected with eventSelect (its ts_ms and packed
// string) into e. The strings of e share row.
func decodeRow(ms int64, row string, e *pipeline.Event) error {
	*e = pipeline.Event{Time: time.UnixMilli(ms).UTC()}
	p := packed{s: row}
	e.ID, e.Tenant, e.Agent, e.Instance = p.str(), p.str(), p.str(), p.str()
	e.ParentAgent, e.Principal, e.Session, e.Task = p.str(), p.str(), p.str(), p.str()
	e.Tool, e.Action, e.ActionRaw = p.str(), pipeline.Action(p.str()), p.str()
	e.Resource, e.Destination, e.Sensitivity, e.Outcome = p.str(), p.str(), p.str(), p.str()
	e.Approval, e.Environment, e.Credential, e.Trace = p.str(), p.str(), p.str(), p.str()
	if extra := p.str(); extra != "" {
		e.Unknown = []byte(extra)
	}
	e.DelegationDepth = int(p.num())
	e.BytesIn, e.BytesOut, e.Records = p.num(), p.num(), p.num()
	if n := p.len(); n > 0 {
		e.TaskScope = make([]string, n)
		for i := range e.TaskScope {
			e.TaskScope[i] = p.str()
		}
	}
	// attrs.key then attrs.value: two passes over the keys, to build the
	// map without a slice of them.
	nk := p.len()
	keys := p
	for range nk {
		p.str()
	}
	if nv := p.len(); nv != nk {
		for range nv {
			p.str()
		}
	} else if nk > 0 {
		e.Attrs = make(map[string]string, nk)
		for range nk {
			e.Attrs[keys.str()] = p.str()
		}
	}
	if p.bad || p.s != "" {
		return errPacked
	}
	return nil
}

// rowKey reads the fields of a packed row that, with the time, make up
// the events table's sort key.
func rowKey(row string) (id, tenant, agent, session string) {
	p := packed{s: row}
	id, tenant, agent = p.str(), p.str(), p.str()
	p.str() // instance
	p.str() // parent_agent
	p.str() // principal
	return id, tenant, agent, p.str()
}

// packed reads a packed row. Once malformed, it yields zeros and empty
// strings, and bad is set.
type packed struct {
	s   string
	bad bool
}

func (p *packed) fail() {
	p.bad, p.s = true, ""
}

// num reads a decimal number and its ':'.
func (p *packed) num() int64 {
	i := strings.IndexByte(p.s, ':')
	if i < 0 {
		p.fail()
		return 0
	}
	n, err := strconv.ParseInt(p.s[:i], 10, 64)
	if err != nil {
		p.fail()
		return 0
	}
	p.s = p.s[i+1:]
	return n
}

// len reads an array's length.
func (p *packed) len() int {
	n := p.num()
	// Every element takes at least two bytes ("0:").
	if n < 0 || n > int64(len(p.s)/2) {
		p.fail()
		return 0
	}
	return int(n)
}

// str reads a string.
func (p *packed) str() string {
	n := p.num()
	if n < 0 || n > int64(len(p.s)) {
		p.fail()
		return ""
	}
	v := p.s[:n]
	p.s = p.s[n:]
	return v
}
