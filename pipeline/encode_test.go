package pipeline

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite golden files")

// fullEvent sets every field, with values that need escaping.
func fullEvent() Event {
	return Event{
		ID:              "01HZX3J8K2Q9V7M4N6P5R8T2WC",
		Time:            time.Date(2024, 5, 1, 14, 34, 56, 789_654_321, time.FixedZone("CEST", 2*3600)),
		Tenant:          "acme",
		Agent:           "spiffe://acme.example/agents/support",
		Instance:        "pod-7f9c",
		ParentAgent:     "spiffe://acme.example/agents/planner",
		DelegationDepth: 1,
		Principal:       "alice@acme.example",
		Session:         "s-4c1f",
		Task:            "t-881",
		TaskScope:       []string{"crm.search", "mail.send"},
		Tool:            "mail.send",
		Action:          ActionSend,
		ActionRaw:       "POST",
		Resource:        "mailbox://alice/outbox?q=\"a\\b\"\n\t<tag>&é€😀\u2028",
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
		Attrs:           map[string]string{"zeta": "last", "alpha": "first", "ctl": "\x00\x1f\x7f"},
		Unknown:         []byte(`{"x":{"nested":[1,2]},"a":"\u00e9"}`),
	}
}

func TestAppendJSONGolden(t *testing.T) {
	ev := fullEvent()
	got := ev.AppendJSON(nil)
	require.True(t, json.Valid(got), "%s", got)

	golden := filepath.Join("testdata", "canonical_event.golden.json")
	if *update {
		require.NoError(t, os.WriteFile(golden, append(bytes.Clone(got), '\n'), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	require.Equal(t, string(bytes.TrimSuffix(want, []byte("\n"))), string(got))

	// The canonical form is decoded back to the same event, normalised
	// (UTC, milliseconds), and re-encodes to the same bytes.
	var back Event
	require.NoError(t, Decode(got, &back, nil))
	norm := ev
	norm.Time = ev.Time.UTC().Truncate(time.Millisecond)
	require.Equal(t, norm, back)
	require.Equal(t, string(got), string(back.AppendJSON(nil)))
}

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"minimal", baseEvent(),
			`{"id":"e1","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read"}`},
		{"zero event keeps required keys", Event{},
			`{"id":"","time":"0001-01-01T00:00:00.000Z","tenant":"","agent":"","tool":"","action":""}`},
		{"time after 9999 as unix milliseconds", with(func(e *Event) { e.Time = time.UnixMilli(253402300800001) }),
			`{"id":"e1","time":253402300800001,"tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read"}`},
		{"time before 1970", with(func(e *Event) { e.Time = time.UnixMilli(-1) }),
			`{"id":"e1","time":"1969-12-31T23:59:59.999Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read"}`},
		{"invalid UTF-8 becomes U+FFFD", with(func(e *Event) { e.Resource = "a\xffb\xc3" }),
			`{"id":"e1","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read","resource":"a\ufffdb\ufffd"}`},
		{"Unknown with whitespace", with(func(e *Event) { e.Unknown = []byte(" {\n\"x\": 1 }\n") }),
			`{"id":"e1","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read","x": 1}`},
		{"empty Unknown", with(func(e *Event) { e.Unknown = []byte(`{ }`) }),
			`{"id":"e1","time":"2024-05-01T12:34:56.789Z","tenant":"acme","agent":"spiffe://acme.example/agents/bot","tool":"crm.search","action":"read"}`},
		{"many attrs sorted", with(func(e *Event) { e.Attrs = nAttrs(20) }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.ev.AppendJSON([]byte("prefix:"))
			require.True(t, bytes.HasPrefix(got, []byte("prefix:")))
			got = got[len("prefix:"):]
			require.True(t, json.Valid(got), "%s", got)
			if tt.want != "" {
				require.Equal(t, tt.want, string(got))
			}
			// encoding/json reads the same values back.
			var std map[string]any
			require.NoError(t, json.Unmarshal(got, &std))
			require.Equal(t, tt.ev.ID, std["id"])
		})
	}
}

func TestRoundTrip(t *testing.T) {
	inputs := []string{
		minimal,
		benchEventJSON,
		withFields(`"action_raw":"x","z":[{"a":"\ud83d\ude00 \"q\""}],"attrs":{"b":"2","a":"1"},"time2":1`),
		strings.Replace(minimal, `"2024-05-01T12:34:56.789Z"`, `253402300800000`, 1), // beyond RFC 3339
		strings.Replace(minimal, `"2024-05-01T12:34:56.789Z"`, `"0000-01-01T00:00:00Z"`, 1),
		withFields(`"resource":"\u0000\u001f\u007f\u2028\u2029</script>"`),
	}
	for _, in := range inputs {
		var ev Event
		require.NoError(t, NewDecoder(nil).decode([]byte(in), &ev), in)
		out := ev.AppendJSON(nil)
		var back Event
		require.NoError(t, NewDecoder(nil).decode(out, &back), "%s", out)
		require.Equal(t, ev, back)
		require.Equal(t, string(out), string(back.AppendJSON(nil)))
	}
}

func TestMarshalJSON(t *testing.T) {
	ev := fullEvent()
	want := ev.AppendJSON(nil)

	got, err := ev.MarshalJSON()
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))

	// Value and pointer both marshal canonically, also nested. (json.Marshal
	// HTML-escapes <, > and & in whatever MarshalJSON returns; an Encoder
	// with SetEscapeHTML(false) keeps the canonical bytes.)
	marshal := func(v any) string {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(v))
		return strings.TrimSuffix(buf.String(), "\n")
	}
	require.Equal(t, string(want), marshal(ev))
	require.Equal(t, string(want), marshal(&ev))
	type envelope struct {
		Evidence []Event `json:"evidence"`
	}
	require.Equal(t, `{"evidence":[`+string(want)+`]}`, marshal(envelope{Evidence: []Event{ev}}))
	std, err := json.Marshal(ev)
	require.NoError(t, err)
	require.Contains(t, string(std), `\u003ctag\u003e\u0026`)

	// UnmarshalJSON uses the same decoder (normalising, not validating).
	var env envelope
	err = json.Unmarshal([]byte(`{"evidence":[{"action":"POST","bytes_in":"x"}]}`), &env)
	require.ErrorContains(t, err, "bytes_in: expected an integer, got a string")
	require.NoError(t, json.Unmarshal([]byte(`{"evidence":[{"action":"POST"}]}`), &env))
	require.Equal(t, []Event{{Action: ActionSend, ActionRaw: "POST"}}, env.Evidence)

	// An Unknown that is not an object of unknown fields is refused.
	for _, bad := range []string{`[1]`, `{"x":}`, `{"id":"dup"}`} {
		e := baseEvent()
		e.Unknown = []byte(bad)
		_, err := json.Marshal(e)
		require.ErrorContains(t, err, "Event.Unknown is not a JSON object of unknown fields", bad)
	}
}
