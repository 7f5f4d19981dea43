package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// minimal is the smallest valid event.
const minimal = `{"id":"e1","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read"}`

// withFields returns minimal with extra members appended.
func withFields(members string) string {
	return strings.TrimSuffix(minimal, "}") + "," + members + "}"
}

func ms(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC().Truncate(time.Millisecond)
}

func baseEvent() Event {
	return Event{
		ID:     "e1",
		Time:   ms("2024-05-01T12:34:56.789Z"),
		Tenant: "acme",
		Agent:  "spiffe://acme.example/agents/bot",
		Tool:   "crm.search",
		Action: ActionRead,
	}
}

func TestDecodeValid(t *testing.T) {
	full := `{
		"id": "01HZX3J8K2Q9V7M4N6P5R8T2WC",
		"time": "2024-05-01T14:34:56.789123+02:00",
		"tenant": "acme-prod_1",
		"agent": "spiffe://acme.example/ns/agents/sa/support-bot",
		"instance": "pod-7f9c",
		"parent_agent": "spiffe://acme.example/agents/planner",
		"delegation_depth": 1,
		"principal": "alice@acme.example",
		"session": "s-4c1f",
		"task": "t-881",
		"task_scope": ["crm.search", "mail.send"],
		"tool": "mail.send",
		"action": "Publish",
		"resource": "mailbox://alice/outbox",
		"destination": "partner.example",
		"bytes_in": 12,
		"bytes_out": 18234,
		"records": 42,
		"sensitivity": "Confidential",
		"outcome": "OK",
		"approval": "Approved",
		"environment": "prod",
		"credential": "cred-9f2a",
		"trace": "4bf92f3577b34da6a3ce929d0e0e4736",
		"attrs": {"model": "gpt-x", "mcp.server": "mail"}
	}`
	want := Event{
		ID:              "01HZX3J8K2Q9V7M4N6P5R8T2WC",
		Time:            ms("2024-05-01T12:34:56.789Z"),
		Tenant:          "acme-prod_1",
		Agent:           "spiffe://acme.example/ns/agents/sa/support-bot",
		Instance:        "pod-7f9c",
		ParentAgent:     "spiffe://acme.example/agents/planner",
		DelegationDepth: 1,
		Principal:       "alice@acme.example",
		Session:         "s-4c1f",
		Task:            "t-881",
		TaskScope:       []string{"crm.search", "mail.send"},
		Tool:            "mail.send",
		Action:          ActionSend,
		ActionRaw:       "Publish",
		Resource:        "mailbox://alice/outbox",
		Destination:     "partner.example",
		BytesIn:         12,
		BytesOut:        18234,
		Records:         42,
		Sensitivity:     SensitivityConfidential,
		Outcome:         OutcomeOK,
		Approval:        ApprovalApproved,
		Environment:     "prod",
		Credential:      "cred-9f2a",
		Trace:           "4bf92f3577b34da6a3ce929d0e0e4736",
		Attrs:           map[string]string{"model": "gpt-x", "mcp.server": "mail"},
	}
	withEv := func(f func(*Event)) Event {
		e := baseEvent()
		f(&e)
		return e
	}

	tests := []struct {
		name string
		in   string
		want Event
	}{
		{"minimal", minimal, baseEvent()},
		{"every field", full, want},
		{"leading and trailing whitespace", " \t\r\n" + minimal + "\n ", baseEvent()},
		{"escapes in strings", withFields(`"resource":"q\"\\\/\b\f\n\r\t\u00e9\u20ac\ud83d\ude00 é"`),
			withEv(func(e *Event) { e.Resource = "q\"\\/\b\f\n\r\té€😀 é" })},
		{"escaped key names a known field", `{"\u0069d":"e1","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read"}`, baseEvent()},
		{"null optional fields are absent", withFields(`"instance":null,"bytes_in":null,"task_scope":null,"attrs":null`), baseEvent()},
		{"empty task_scope and attrs are absent", withFields(`"task_scope":[],"attrs":{}`), baseEvent()},
		{"negative zero", withFields(`"bytes_in":-0`), baseEvent()},
		{"max int64", withFields(`"bytes_out":9223372036854775807`),
			withEv(func(e *Event) { e.BytesOut = 1<<63 - 1 })},
		{"unknown fields are kept compact, in order", withFields(`"zeta" : { "a" : [1, 2.5e3, "x y", true, false, null] } , "alpha":"\u00e9"`),
			withEv(func(e *Event) { e.Unknown = []byte(`{"zeta":{"a":[1,2.5e3,"x y",true,false,null]},"alpha":"\u00e9"}`) })},
		{"keys are case-sensitive", withFields(`"ID":"other"`),
			withEv(func(e *Event) { e.Unknown = []byte(`{"ID":"other"}`) })},
		{"explicit action_raw is kept", withFields(`"action_raw":"HTTP GET"`),
			withEv(func(e *Event) { e.ActionRaw = "HTTP GET" })},
		{"unix milliseconds", strings.Replace(minimal, `"2024-05-01T12:34:56.789Z"`, `1714566896789`, 1), baseEvent()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev Event
			require.NoError(t, Decode([]byte(tt.in), &ev, nil))
			require.Equal(t, tt.want, ev)
			require.Equal(t, time.UTC, ev.Time.Location())

			// The reusable Decoder and UnmarshalJSON agree with Decode.
			var ev2, ev3 Event
			require.NoError(t, NewDecoder(nil).Decode([]byte(tt.in), &ev2))
			require.Equal(t, tt.want, ev2)
			require.NoError(t, json.Unmarshal([]byte(tt.in), &ev3))
			require.Equal(t, tt.want, ev3)
		})
	}
}

func TestDecodeTime(t *testing.T) {
	tests := []struct {
		in   string
		want string // RFC 3339 in UTC; "" means rejected
	}{
		{`"2024-05-01T12:34:56Z"`, "2024-05-01T12:34:56Z"},
		{`"2024-05-01T12:34:56.7Z"`, "2024-05-01T12:34:56.7Z"},
		{`"2024-05-01T12:34:56.78Z"`, "2024-05-01T12:34:56.78Z"},
		{`"2024-05-01T12:34:56.789999999999Z"`, "2024-05-01T12:34:56.789Z"}, // truncated, not rounded
		{`"2024-05-01T14:34:56.789+02:00"`, "2024-05-01T12:34:56.789Z"},
		{`"2024-05-01T07:04:56.789-05:30"`, "2024-05-01T12:34:56.789Z"},
		{`"2024-01-01T00:30:00+01:00"`, "2023-12-31T23:30:00Z"},
		{`"2024-02-29T00:00:00Z"`, "2024-02-29T00:00:00Z"},
		{`"2000-02-29T00:00:00Z"`, "2000-02-29T00:00:00Z"},
		{`"0000-01-01T00:00:00Z"`, "0000-01-01T00:00:00Z"},
		{`"9999-12-31T23:59:59.999-23:59"`, ""}, // valid RFC 3339 but after 9999: parsed, then Validate rejects
		{`"1969-12-31T23:59:59.999Z"`, "1969-12-31T23:59:59.999Z"},
		{`"2024-05-01T12:34:56\u002e789Z"`, "2024-05-01T12:34:56.789Z"}, // escapes are decoded first
		{`1714566896789`, "2024-05-01T12:34:56.789Z"},
		{`0`, "1970-01-01T00:00:00Z"},
		{`-1`, "1969-12-31T23:59:59.999Z"},
		{`"2023-02-29T00:00:00Z"`, ""},
		{`"2024-04-31T00:00:00Z"`, ""},
		{`"2024-05-01T24:00:00Z"`, ""},
		{`"2024-05-01T12:60:00Z"`, ""},
		{`"2024-05-01T12:00:60Z"`, ""}, // leap seconds are not representable
		{`"2024-05-01T12:00:00"`, ""},  // no zone
		{`"2024-05-01t12:00:00z"`, ""}, // lower-case T and Z, as Go's parser
		{`"2024-05-01 12:00:00Z"`, ""},
		{`"2024-05-01T12:00:00.Z"`, ""},
		{`"2024-05-01T12:00:00,5Z"`, ""},
		{`"2024-05-01T12:00:00+24:00"`, ""},
		{`"2024-05-01T12:00:00+02:60"`, ""},
		{`"2024-05-01T12:00:00+0200"`, ""},
		{`"2024-5-01T12:00:00Z"`, ""},
		{`"+2024-05-01T12:00:00Z"`, ""},
		{`"2024-05-01T1:00:00Z"`, ""},
		{`""`, ""},
		{`1.5e12`, ""},
		{`1714566896789.0`, ""},
		{`true`, ""},
		{`99999999999999999999`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d := NewDecoder(nil)
			var ev Event
			err := d.decode([]byte(`{"time":`+tt.in+`}`), &ev)
			if tt.want == "" && !strings.HasPrefix(tt.in, `"9999`) {
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				require.Equal(t, "time", de.Path)
				return
			}
			require.NoError(t, err)
			if tt.want == "" {
				require.ErrorContains(t, ev.Validate(nil), "time: outside the years 0000–9999")
				return
			}
			want, err := time.Parse(time.RFC3339Nano, tt.want)
			require.NoError(t, err)
			require.True(t, want.Equal(ev.Time), "got %s", ev.Time)
			require.Equal(t, time.UTC, ev.Time.Location())
			// Wherever Go's own parser accepts the string, it agrees.
			if strings.HasPrefix(tt.in, `"`) && !strings.Contains(tt.in, `\`) {
				std, err := time.Parse(time.RFC3339, strings.Trim(tt.in, `"`))
				require.NoError(t, err)
				require.Equal(t, std.UnixMilli(), ev.Time.UnixMilli())
			}
		})
	}
}

// TestParseRFC3339Exhaustive compares the hand-written parser with the time
// package over every day of several centuries and many offsets.
func TestParseRFC3339Exhaustive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)
	for day := 0; day < 365*600; day += 1 + rng.IntN(3) {
		tm := start.AddDate(0, 0, day).Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		zone := time.FixedZone("", (rng.IntN(47)-23)*3600+rng.IntN(4)*15*60)
		s := tm.In(zone).Format(time.RFC3339Nano)
		got, ok := parseRFC3339([]byte(s))
		require.True(t, ok, s)
		require.Equal(t, tm.UnixMilli(), got.UnixMilli(), s)

		// And the encoder writes back what time.Format would.
		w := tm.Truncate(time.Millisecond)
		require.Equal(t, `"`+w.UTC().Format("2006-01-02T15:04:05.000Z")+`"`, string(appendTime(nil, w)))
	}
}

func TestNormalizeAction(t *testing.T) {
	tests := map[Action][]string{
		ActionRead:    {"read", "READ", "Get", "list", "fetch", "query", "search", "view", "select", "describe", "download"},
		ActionWrite:   {"write", "create", "update", "PUT", "patch", "modify", "insert", "edit", "upsert"},
		ActionDelete:  {"delete", "remove", "drop", "purge", "destroy", "rm", "truncate"},
		ActionSend:    {"send", "POST", "share", "transfer", "email", "upload", "publish", "forward", "export"},
		ActionExecute: {"execute", "exec", "run", "invoke", "invoke_shell", "Invoke-Shell", "invoke shell", "shell"},
		ActionAuth:    {"auth", "login", "token", "authenticate", "authorize", "sign-in", "assume_role"},
		ActionOther:   {"other", "frobnicate", "réad", "read ", strings.Repeat("read", 10)},
		"":            {""},
	}
	for want, verbs := range tests {
		for _, verb := range verbs {
			require.Equal(t, want, NormalizeAction(verb), "verb %q", verb)
			if want == "" {
				continue
			}
			// Through the decoder: the original verb is kept when it differs.
			var ev Event
			in := strings.Replace(minimal, `"action":"read"`, `"action":`+quote(verb), 1)
			require.NoError(t, Decode([]byte(in), &ev, nil), in)
			require.Equal(t, want, ev.Action)
			if verb == string(want) {
				require.Empty(t, ev.ActionRaw)
			} else {
				require.Equal(t, verb, ev.ActionRaw)
			}
		}
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestDecodeLowercasesEnums(t *testing.T) {
	var ev Event
	require.NoError(t, Decode([]byte(withFields(`"sensitivity":"RESTRICTED","outcome":"Denied","approval":"PeNdInG"`)), &ev, nil))
	require.Equal(t, SensitivityRestricted, ev.Sensitivity)
	require.Equal(t, OutcomeDenied, ev.Outcome)
	require.Equal(t, ApprovalPending, ev.Approval)

	err := Decode([]byte(withFields(`"sensitivity":"secret","outcome":"OKAY","approval":"maybe"`)), &ev, nil)
	require.EqualError(t, err, `invalid event: sensitivity: "secret" is not one of public, internal, confidential, restricted; `+
		`outcome: "okay" is not one of ok, error, denied; approval: "maybe" is not one of none, pending, approved, rejected`)
}

func TestDecodeErrors(t *testing.T) {
	deep := func(n int) string { return withFields(`"x":` + strings.Repeat("[", n) + strings.Repeat("]", n)) }
	manyUnknown := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"u%d":%d,`, i, i)
		}
		return withFields(strings.TrimSuffix(b.String(), ","))
	}
	tests := []struct {
		name, in, path, reason string
	}{
		{"empty input", ``, "", "unexpected end of input, expected a JSON object"},
		{"not an object", `[]`, "", "invalid character '[', expected a JSON object"},
		{"top-level null", `null`, "", "invalid character 'n', expected a JSON object"},
		{"byte order mark", "\ufeff" + minimal, "", "invalid character 0xef, expected a JSON object"},
		{"trailing garbage", minimal + ` x`, "", "unexpected data after the event object"},
		{"two objects", minimal + minimal, "", "unexpected data after the event object"},
		{"trailing comma", withFields(`"x":1,`), "", "invalid character '}', expected a field name"},
		{"missing colon", `{"id" "x"}`, "", `invalid character '"', expected ':' after a field name`},
		{"missing comma", `{"id":"x" "tool":"y"}`, "", `invalid character '"', expected ',' or '}' after a field value`},
		{"unterminated object", `{"id":"x"`, "", "unexpected end of input, expected ',' or '}' after a field value"},
		{"unterminated string", `{"id":"x`, "id", "unterminated string"},
		{"unquoted key", `{id:"x"}`, "", "invalid character 'i', expected a field name"},
		{"single quotes", `{'id':'x'}`, "", `invalid character '\'', expected a field name`},
		{"raw control character", "{\"id\":\"a\tb\"}", "id", "control character 0x09 in string (escape it)"},
		{"invalid escape", `{"id":"a\x41"}`, "id", `invalid escape 'x' in string`},
		{"short \\u escape", `{"id":"\u12"}`, "id", `invalid \u escape (want four hex digits)`},
		{"unpaired high surrogate", `{"id":"\ud83d"}`, "id", `invalid \u escape: high surrogate not followed by a low surrogate`},
		{"high surrogate then non-surrogate", `{"id":"\ud83d\u0041"}`, "id", `invalid \u escape: high surrogate not followed by a low surrogate`},
		{"unpaired low surrogate", `{"id":"\ude00"}`, "id", `invalid \u escape: unpaired low surrogate`},
		{"invalid UTF-8", "{\"id\":\"a\xffb\"}", "id", "invalid UTF-8 in string"},
		{"overlong UTF-8", "{\"id\":\"\xc0\xaf\"}", "id", "invalid UTF-8 in string"},
		{"UTF-8 surrogate", "{\"id\":\"\xed\xa0\x80\"}", "id", "invalid UTF-8 in string"},
		{"truncated UTF-8", "{\"id\":\"\xe2\x82\"}", "id", "invalid UTF-8 in string"},
		{"invalid UTF-8 in unknown key", "{\"\xff\":1}", "", "invalid UTF-8 in string"},
		{"invalid UTF-8 in unknown value", "{\"x\":[\"\xff\"]}", `"x"`, "invalid UTF-8 in string"},
		{"duplicate known field", withFields(`"id":"again"`), "id", "duplicate field"},
		{"duplicate known field, null first", `{"instance":null,"instance":"i"}`, "instance", "duplicate field"},
		{"duplicate known field by escape", withFields(`"t\u006fol":"again"`), "tool", "duplicate field"},
		{"duplicate unknown field", withFields(`"x":1,"x":2`), `"x"`, "duplicate field"},
		{"duplicate unknown field by escape", withFields(`"x":1,"\u0078":2`), `"x"`, "duplicate field"},
		{"duplicate attrs key", withFields(`"attrs":{"k":"a","k":"b"}`), `attrs["k"]`, "duplicate key"},
		{"string for integer", withFields(`"bytes_in":"12"`), "bytes_in", "expected an integer, got a string"},
		{"float for integer", withFields(`"records":1.5`), "records", "expected an integer, got 1.5"},
		{"exponent for integer", withFields(`"records":1e3`), "records", "expected an integer, got 1e3"},
		{"integer overflow", withFields(`"bytes_out":9223372036854775808`), "bytes_out", "integer 9223372036854775808 out of range"},
		{"bool for integer", withFields(`"delegation_depth":true`), "delegation_depth", "expected an integer, got a boolean"},
		{"number for string", `{"id":12}`, "id", "expected a string, got a number"},
		{"object for string", `{"tenant":{}}`, "tenant", "expected a string, got an object"},
		{"array for string", `{"agent":["a"]}`, "agent", "expected a string, got an array"},
		{"bool for string", `{"action":false}`, "action", "expected a string, got a boolean"},
		{"string for task_scope", `{"task_scope":"a,b"}`, "task_scope", "expected an array of strings, got a string"},
		{"number in task_scope", `{"task_scope":["a",1]}`, "task_scope[1]", "expected a string, got a number"},
		{"null in task_scope", `{"task_scope":[null]}`, "task_scope[0]", "expected a string, got null"},
		{"array for attrs", `{"attrs":["a"]}`, "attrs", "expected an object of strings, got an array"},
		{"number in attrs", `{"attrs":{"k":1}}`, `attrs["k"]`, "expected a string, got a number"},
		{"object in attrs", `{"attrs":{"k":{"a":"b"}}}`, `attrs["k"]`, "expected a string, got an object"},
		{"object for time", `{"time":{}}`, "time", "expected an RFC 3339 string or integer unix milliseconds, got an object"},
		{"bad time", `{"time":"yesterday"}`, "time", `"yesterday" is not an RFC 3339 time like 2024-05-01T12:34:56.789Z`},
		{"bad literal", `{"x":tru}`, `"x"`, "invalid character 't', expected a JSON value"},
		{"NaN", `{"x":NaN}`, `"x"`, "invalid character 'N', expected a digit"},
		{"leading zero", `{"bytes_in":012}`, "", "invalid character '1', expected ',' or '}' after a field value"},
		{"plus sign", `{"bytes_in":+1}`, "bytes_in", "invalid character '+', expected an integer"},
		{"bare minus", `{"x":-}`, `"x"`, "invalid character '}', expected a digit"},
		{"missing fraction digits", `{"x":1.}`, `"x"`, "invalid character '}', expected a digit after the decimal point"},
		{"missing exponent digits", `{"x":1e+}`, `"x"`, "invalid character '}', expected a digit in the exponent"},
		{"unclosed nested array", `{"x":[1,2}`, `"x"`, "invalid character '}', expected ',' or ']'"},
		{"nesting beyond the limit", deep(DefaultMaxDepth), `"x"`, "nested deeper than 32 levels"},
		{"hostile nesting", deep(30000), `"x"`, "nested deeper than 32 levels"},
		{"too many unknown fields", manyUnknown(DefaultMaxUnknownFields + 1), `"u64"`, "more than 64 unknown fields"},
		{"too large", withFields(`"resource":"` + strings.Repeat("a", DefaultMaxEventBytes) + `"`), "", "bytes, larger than the 65536-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := Event{ID: "untouched"}
			err := Decode([]byte(tt.in), &ev, nil)
			var de *DecodeError
			require.ErrorAs(t, err, &de, "got %v", err)
			require.Equal(t, tt.path, de.Path)
			require.Contains(t, de.Reason, tt.reason)
			require.Contains(t, err.Error(), "invalid event JSON: ")
			require.Equal(t, Event{ID: "untouched"}, ev, "a decode error leaves the event unchanged")
			require.True(t, de.Offset >= 0 && de.Offset <= len(tt.in))
		})
	}
}

func TestDecodeNestingAtTheLimit(t *testing.T) {
	n := DefaultMaxDepth - 1 // the event object is depth 1
	in := withFields(`"x":` + strings.Repeat(`{"a":`, n-1) + `[]` + strings.Repeat(`}`, n-1))
	var ev Event
	require.NoError(t, Decode([]byte(in), &ev, nil))
	require.Equal(t, `{"x":`+strings.Repeat(`{"a":`, n-1)+`[]`+strings.Repeat(`}`, n-1)+`}`, string(ev.Unknown))

	lim := Limits{MaxDepth: 3}
	require.NoError(t, Decode([]byte(withFields(`"x":[[1]]`)), &ev, &lim))
	require.ErrorContains(t, Decode([]byte(withFields(`"x":[[[1]]]`)), &ev, &lim), "nested deeper than 3 levels")
}

func TestDecodeLimits(t *testing.T) {
	lim := Limits{MaxEventBytes: len(minimal)}
	var ev Event
	require.NoError(t, Decode([]byte(minimal), &ev, &lim))
	require.ErrorContains(t, Decode([]byte(minimal+" "), &ev, &lim), fmt.Sprintf("larger than the %d-byte limit", len(minimal)))

	lim = Limits{MaxUnknownFields: 2}
	require.NoError(t, Decode([]byte(withFields(`"a":1,"b":2`)), &ev, &lim))
	require.ErrorContains(t, Decode([]byte(withFields(`"a":1,"b":2,"c":3`)), &ev, &lim), "more than 2 unknown fields")

	require.Equal(t, DefaultLimits(), resolveLimits(&Limits{}), "zero fields take their defaults")
	require.Equal(t, DefaultLimits(), resolveLimits(nil))
}

// TestDecodeDoesNotAlias checks that no string of a decoded event shares
// memory with the input or with the Decoder's scratch space.
func TestDecodeDoesNotAlias(t *testing.T) {
	in := withFields(`"task_scope":["crm.search"],"attrs":{"k":"v"},"z":{"q":1},"resource":"r\u00e9s"`)
	want := baseEvent()
	want.TaskScope = []string{"crm.search"}
	want.Attrs = map[string]string{"k": "v"}
	want.Unknown = []byte(`{"z":{"q":1}}`)
	want.Resource = "rés"

	for name, decode := range map[string]func([]byte, *Event) error{
		"Decode":         func(b []byte, ev *Event) error { return Decode(b, ev, nil) },
		"Decoder.Decode": NewDecoder(nil).Decode,
		"UnmarshalJSON":  func(b []byte, ev *Event) error { return ev.UnmarshalJSON(b) },
	} {
		t.Run(name, func(t *testing.T) {
			buf := []byte(in)
			var first Event
			require.NoError(t, decode(buf, &first))
			require.Equal(t, want, first)

			// The caller reuses its buffer, and the decoder its scratch
			// space, for a different event.
			other := strings.NewReplacer("e1", "e2", "acme", "zeta", "crm.search", "xyz.delete", `"k"`, `"K"`, `"v"`, `"V"`, `"q"`, `"Q"`, "r\\u00e9s", "abcdefg").Replace(in)
			copy(buf, other)
			var second Event
			require.NoError(t, decode(buf[:len(other)], &second))
			require.Equal(t, "zeta", second.Tenant)
			for i := range buf {
				buf[i] = 'X'
			}
			require.Equal(t, want, first)
		})
	}
}

// TestDecoderReuse decodes a stream of different events with one Decoder
// and checks each against a fresh decode.
func TestDecoderReuse(t *testing.T) {
	inputs := []string{
		benchEventJSON,
		minimal,
		withFields(`"attrs":{"a":"1","b":"2"},"task_scope":["x","y","z"],"u":[1,{"v":null}]`),
		`{"id":1}`,
		withFields(`"resource":"` + strings.Repeat("é", 600) + `"`),
		minimal,
	}
	d := NewDecoder(nil)
	var got []Event
	for _, in := range inputs {
		var ev Event
		err := d.Decode([]byte(in), &ev)
		var fresh Event
		freshErr := Decode([]byte(in), &fresh, nil)
		require.Equal(t, freshErr, err)
		require.Equal(t, fresh, ev)
		got = append(got, ev)
	}
	// Earlier events are intact after later decodes.
	var ev Event
	require.NoError(t, Decode([]byte(inputs[0]), &ev, nil))
	require.Equal(t, ev, got[0])
}

func TestPlainRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	scalar := func(b []byte, i int) int {
		for i < len(b) && !strStop[b[i]] {
			i++
		}
		return i
	}
	alphabet := []byte{'a', 'Z', ' ', '~', 0x7f, 0x1f, 0x00, '"', '\\', 0x80, 0xff, 0xc3, '!', '#', '[', ']'}
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			if rng.IntN(6) == 0 {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = byte(0x20 + rng.IntN(0x5f))
			}
		}
		start := 0
		if len(b) > 0 {
			start = rng.IntN(len(b) + 1)
		}
		require.Equal(t, scalar(b, start), plainRun(b, start), "%q from %d", b, start)
	}
	for c := range 256 {
		b := bytes.Repeat([]byte{'a'}, 16)
		for pos := range 16 {
			b[pos] = byte(c)
			require.Equal(t, scalar(b, 0), plainRun(b, 0), "byte %#x at %d", c, pos)
			b[pos] = 'a'
		}
	}
}

func TestDecodeErrorText(t *testing.T) {
	err := &DecodeError{Offset: 12, Path: "bytes_in", Reason: "expected an integer, got a string"}
	require.EqualError(t, err, "invalid event JSON: bytes_in: expected an integer, got a string (at byte 12)")
	err = &DecodeError{Offset: 0, Reason: "unexpected end of input, expected a JSON object"}
	require.EqualError(t, err, "invalid event JSON: unexpected end of input, expected a JSON object (at byte 0)")

	// Every Decode error is one of the two documented types.
	for _, in := range []string{`{`, `{}`, withFields(`"bytes_in":-1`)} {
		err := Decode([]byte(in), &Event{}, nil)
		var de *DecodeError
		var ve *ValidationError
		require.True(t, errors.As(err, &de) || errors.As(err, &ve), "%T", err)
	}
}

// TestDecodeLongLists decodes more task_scope entries and attrs than the
// decoder keeps inline, twice with one Decoder.
func TestDecodeLongLists(t *testing.T) {
	d := NewDecoder(nil)
	for _, n := range []int{20, 9, 3, 17} {
		var scope, attrs []string
		want := baseEvent()
		want.Attrs = map[string]string{}
		for i := range n {
			scope = append(scope, fmt.Sprintf(`"tool%d"`, i))
			want.TaskScope = append(want.TaskScope, fmt.Sprintf("tool%d", i))
			attrs = append(attrs, fmt.Sprintf(`"k%d":"v%d"`, i, i))
			want.Attrs[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", i)
		}
		in := []byte(withFields(`"task_scope":[` + strings.Join(scope, ",") + `],"attrs":{` + strings.Join(attrs, ",") + `}`))
		var ev, ev2 Event
		require.NoError(t, d.Decode(in, &ev))
		require.Equal(t, want, ev)
		require.NoError(t, Decode(in, &ev2, nil))
		require.Equal(t, want, ev2)
	}
}
