package pipeline

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the canonical JSON form of e to dst and returns the
// extended buffer. Canonical means: fields in schema order, omitempty fields
// left out when empty, time in UTC as RFC 3339 with exactly three fractional
// digits, attrs sorted by key, unknown fields last in their original order,
// no insignificant whitespace, no HTML escaping. Invalid UTF-8 in a string
// (possible only in events built in Go; Validate rejects it) is written as
// U+FFFD so the output is always valid JSON as long as e.Unknown is a JSON
// object (as Decode produces; Validate checks it).
//
// For any event Decode returns, Decode(AppendJSON(e)) yields e again.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, e.ID)
	dst = append(dst, `,"time":`...)
	dst = appendTime(dst, e.Time)
	dst = append(dst, `,"tenant":`...)
	dst = appendString(dst, e.Tenant)
	dst = append(dst, `,"agent":`...)
	dst = appendString(dst, e.Agent)
	dst = appendOptString(dst, `,"instance":`, e.Instance)
	dst = appendOptString(dst, `,"parent_agent":`, e.ParentAgent)
	dst = appendOptInt(dst, `,"delegation_depth":`, int64(e.DelegationDepth))
	dst = appendOptString(dst, `,"principal":`, e.Principal)
	dst = appendOptString(dst, `,"session":`, e.Session)
	dst = appendOptString(dst, `,"task":`, e.Task)
	if len(e.TaskScope) > 0 {
		dst = append(dst, `,"task_scope":[`...)
		for i, t := range e.TaskScope {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, t)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"tool":`...)
	dst = appendString(dst, e.Tool)
	dst = append(dst, `,"action":`...)
	dst = appendString(dst, string(e.Action))
	dst = appendOptString(dst, `,"action_raw":`, e.ActionRaw)
	dst = appendOptString(dst, `,"resource":`, e.Resource)
	dst = appendOptString(dst, `,"destination":`, e.Destination)
	dst = appendOptInt(dst, `,"bytes_in":`, e.BytesIn)
	dst = appendOptInt(dst, `,"bytes_out":`, e.BytesOut)
	dst = appendOptInt(dst, `,"records":`, e.Records)
	dst = appendOptString(dst, `,"sensitivity":`, e.Sensitivity)
	dst = appendOptString(dst, `,"outcome":`, e.Outcome)
	dst = appendOptString(dst, `,"approval":`, e.Approval)
	dst = appendOptString(dst, `,"environment":`, e.Environment)
	dst = appendOptString(dst, `,"credential":`, e.Credential)
	dst = appendOptString(dst, `,"trace":`, e.Trace)
	if len(e.Attrs) > 0 {
		dst = append(dst, `,"attrs":{`...)
		var buf [16]string
		keys := buf[:0]
		for k := range e.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, e.Attrs[k])
		}
		dst = append(dst, '}')
	}
	if members := unknownMembers(e.Unknown); len(members) > 0 {
		dst = append(dst, ',')
		dst = append(dst, members...)
	}
	return append(dst, '}')
}

// unknownMembers returns the members of the JSON object u without its braces.
func unknownMembers(u []byte) []byte {
	u = bytes.TrimSpace(u)
	if len(u) < 2 || u[0] != '{' || u[len(u)-1] != '}' {
		return nil
	}
	return bytes.TrimSpace(u[1 : len(u)-1])
}

// MarshalJSON returns the canonical JSON form of e (see AppendJSON). It has a
// value receiver so that both Event and *Event marshal canonically.
func (e Event) MarshalJSON() ([]byte, error) {
	if e.Unknown != nil {
		var d Decoder
		d.lim = resolveLimits(nil)
		d.lim.MaxEventBytes = len(e.Unknown) + 1
		if err := d.parse(e.Unknown); err != nil || d.seen != 0 {
			return nil, errors.New("pipeline: Event.Unknown is not a JSON object of unknown fields")
		}
	}
	return e.AppendJSON(make([]byte, 0, 512)), nil
}

func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, key...)
	return appendString(dst, s)
}

func appendOptInt(dst []byte, key string, n int64) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, key...)
	return strconv.AppendInt(dst, n, 10)
}

// strSafe marks the ASCII bytes that can be written inside a JSON string as
// they are.
var strSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if strSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end lines in JavaScript;
		// escape them as encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
