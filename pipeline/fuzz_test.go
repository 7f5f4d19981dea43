package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// FuzzDecode checks the hand-written decoder against encoding/json:
//   - no input panics, in Decode, Validate or AppendJSON;
//   - whatever the decoder accepts is valid JSON that encoding/json also
//     decodes into the event's types, with the same values (after the
//     documented normalisation);
//   - whatever encoding/json accepts with the right types, the decoder
//     accepts too, except for the documented stricter rules (invalid UTF-8,
//     unpaired surrogates, duplicate keys, null inside task_scope or attrs,
//     non-strict RFC 3339, structural limits);
//   - an accepted event survives AppendJSON and a second decode unchanged.
//
// Seeds are below and in testdata/fuzz/FuzzDecode. Run it with
// go test ./pipeline -run '^$' -fuzz FuzzDecode -fuzztime 60s.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		minimal,
		benchEventJSON,
		withFields(`"x":{"y":[1,-2.5e-3,true,false,null,"s"]},"attrs":{"k":"v"},"task_scope":["a"]`),
		withFields(`"resource":"\u00e9\ud83d\ude00\n\"","action":"POST","sensitivity":"RESTRICTED"`),
		`{"time":1714566896789,"bytes_in":-0,"records":9223372036854775807}`,
		`{"time":"2024-05-01T14:34:56.789123+02:00"}`,
		`{"id":null,"attrs":null,"task_scope":[]}`,
		`{"id":"a","id":"b"}`,
		"{\"id\":\"\xff\"}",
		`{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		`{"bytes_in":"12"}`,
		`{"\u0069d":"x","ID":"y"}`,
		` { } `,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		err := NewDecoder(nil).decode(data, &ev)

		// Decode (which validates) agrees with the raw decode and never
		// panics; Validate never panics.
		var full Event
		fullErr := Decode(data, &full, nil)
		var de *DecodeError
		if err != nil {
			require.Equal(t, err, fullErr)
		} else {
			require.False(t, errors.As(fullErr, &de), "%v", fullErr)
			require.Equal(t, ev, full)
			require.Equal(t, fullErr, ev.Validate(nil))
		}

		ref, refUnknown, refErr := stdlibDecode(data)
		if err == nil {
			require.True(t, json.Valid(data), "accepted invalid JSON")
			require.NoError(t, refErr, "accepted what encoding/json rejects")
			requireSameEvent(t, ref, refUnknown, ev)

			out := ev.AppendJSON(nil)
			require.True(t, json.Valid(out), "%s", out)
			var back Event
			// Canonical output may be longer than the input (action_raw,
			// times written out), so lift the size limit.
			require.NoError(t, NewDecoder(&Limits{MaxEventBytes: 1 << 30}).decode(out, &back), "%s", out)
			require.Equal(t, ev, back)
			return
		}
		require.True(t, errors.As(err, &de), "%T", err)
		if refErr == nil {
			require.True(t, allowedRejection(de, data), "rejected what encoding/json accepts: %v", err)
		}
	})
}

// stdlibDecode decodes data with encoding/json into the event's types,
// matching keys exactly (a map, not a struct, whose matching ignores case),
// and applies the documented normalisation. It returns the unknown fields
// separately.
func stdlibDecode(data []byte) (Event, map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Event{}, nil, err
	}
	if raw == nil {
		return Event{}, nil, errors.New("not an object")
	}
	var ev Event
	unknown := map[string]json.RawMessage{}
	strs := map[string]*string{
		"id": &ev.ID, "tenant": &ev.Tenant, "agent": &ev.Agent, "instance": &ev.Instance,
		"parent_agent": &ev.ParentAgent, "principal": &ev.Principal, "session": &ev.Session,
		"task": &ev.Task, "tool": &ev.Tool, "action_raw": &ev.ActionRaw, "resource": &ev.Resource,
		"destination": &ev.Destination, "sensitivity": &ev.Sensitivity, "outcome": &ev.Outcome,
		"approval": &ev.Approval, "environment": &ev.Environment, "credential": &ev.Credential,
		"trace": &ev.Trace,
	}
	ints := map[string]*int64{"bytes_in": &ev.BytesIn, "bytes_out": &ev.BytesOut, "records": &ev.Records}
	var action string
	for k, v := range raw {
		var err error
		switch {
		case strs[k] != nil:
			err = json.Unmarshal(v, strs[k])
		case ints[k] != nil:
			err = json.Unmarshal(v, ints[k])
		case k == "delegation_depth":
			err = json.Unmarshal(v, &ev.DelegationDepth)
		case k == "action":
			err = json.Unmarshal(v, &action)
		case k == "task_scope":
			err = json.Unmarshal(v, &ev.TaskScope)
		case k == "attrs":
			err = json.Unmarshal(v, &ev.Attrs)
		case k == "time":
			ev.Time, err = stdlibTime(v)
		default:
			unknown[k] = v
		}
		if err != nil {
			return Event{}, nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	ev.Action = NormalizeAction(action)
	if ev.ActionRaw == "" && action != string(ev.Action) {
		ev.ActionRaw = action
	}
	ev.Sensitivity = strings.ToLower(ev.Sensitivity)
	ev.Outcome = strings.ToLower(ev.Outcome)
	ev.Approval = strings.ToLower(ev.Approval)
	if len(ev.TaskScope) == 0 {
		ev.TaskScope = nil
	}
	if len(ev.Attrs) == 0 {
		ev.Attrs = nil
	}
	return ev, unknown, nil
}

// stdlibTime decodes a time as the contract defines it, with the standard
// library: an RFC 3339 string (unescaped first: time.Time.UnmarshalJSON does
// not unescape, go.dev/issue/47353) or integer unix milliseconds.
func stdlibTime(v json.RawMessage) (time.Time, error) {
	switch {
	case string(v) == "null":
		return time.Time{}, nil
	case v[0] == '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse(time.RFC3339, s)
		return t.UTC().Truncate(time.Millisecond), err
	default:
		var n int64
		if err := json.Unmarshal(v, &n); err != nil {
			return time.Time{}, err
		}
		return time.UnixMilli(n).UTC(), nil
	}
}

func requireSameEvent(t *testing.T, want Event, wantUnknown map[string]json.RawMessage, got Event) {
	t.Helper()
	require.Equal(t, want.Time.UnixMilli(), got.Time.UnixMilli())
	require.Equal(t, want.Time.IsZero(), got.Time.IsZero())
	if !got.Time.IsZero() {
		require.Equal(t, time.UTC, got.Time.Location())
	}
	want.Time, got.Time = time.Time{}, time.Time{}

	var gotUnknown map[string]json.RawMessage
	if got.Unknown != nil {
		require.NoError(t, json.Unmarshal(got.Unknown, &gotUnknown))
		require.NotEmpty(t, gotUnknown)
	}
	require.Equal(t, len(wantUnknown), len(gotUnknown))
	for k, w := range wantUnknown {
		require.Equal(t, anyValue(t, w), anyValue(t, gotUnknown[k]), "unknown field %q", k)
	}
	got.Unknown = nil
	require.Equal(t, want, got)
}

func anyValue(t *testing.T, raw json.RawMessage) any {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

var strictRFC3339 = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-]([0-9]{2}):([0-9]{2}))$`)

// allowedRejection reports whether the decoder may reject data that
// encoding/json accepts, because of one of the documented stricter rules.
func allowedRejection(de *DecodeError, data []byte) bool {
	r := de.Reason
	if hasDuplicateKeys(data) {
		// encoding/json keeps the last of duplicate keys; the decoder
		// rejects duplicates, and may meet an earlier one's bad value first.
		return true
	}
	switch {
	case strings.Contains(r, "invalid UTF-8"):
		return !utf8.Valid(data)
	case strings.Contains(r, "surrogate"):
		return bytes.Contains(bytes.ToLower(data), []byte(`\ud`))
	case strings.Contains(r, "duplicate"),
		strings.Contains(r, "nested deeper"),
		strings.Contains(r, "unknown fields"),
		strings.Contains(r, "larger than"):
		return true
	case strings.HasSuffix(r, "got null"):
		return strings.HasPrefix(de.Path, "task_scope[") || strings.HasPrefix(de.Path, "attrs[")
	case de.Path == "time":
		// encoding/json falls back to the lenient time.Parse; the
		// decoder takes only strict RFC 3339 (what Go's fast path takes).
		return !strictTime(data)
	}
	return false
}

// strictTime reports whether the "time" member of data is a strict RFC 3339
// string, which the decoder must accept whenever the time package does.
func strictTime(data []byte) bool {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return false
	}
	var s string
	if json.Unmarshal(raw["time"], &s) != nil {
		return false
	}
	m := strictRFC3339.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	if m[3] != "" {
		h, _ := strconv.Atoi(m[3])
		mm, _ := strconv.Atoi(m[4])
		return h < 24 && mm < 60
	}
	return true
}

// hasDuplicateKeys reports whether the top-level object of data repeats a key.
func hasDuplicateKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return false
		}
		k, _ := t.(string)
		if seen[k] {
			return true
		}
		seen[k] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return false
}
