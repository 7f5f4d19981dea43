package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidateValid(t *testing.T) {
	full := baseEvent()
	full.Instance = "pod-1"
	full.ParentAgent = "planner@acme.example"
	full.DelegationDepth = 2
	full.Principal = "alice@acme.example"
	full.Session = "s1"
	full.Task = "t1"
	full.TaskScope = []string{"crm.search", "mail send"}
	full.ActionRaw = "GET"
	full.Resource = strings.Repeat("r", DefaultMaxResourceLen)
	full.Destination = "partner.example"
	full.BytesIn, full.BytesOut, full.Records = 1, 2, 3
	full.Sensitivity = SensitivityInternal
	full.Outcome = OutcomeError
	full.Approval = ApprovalNone
	full.Environment = "prod"
	full.Credential = "sha256:9f2a0c"
	full.Trace = "abc"
	full.Attrs = map[string]string{"k": strings.Repeat("v", DefaultMaxStringLen)}
	full.Unknown = []byte(` { "x" : [1] } `)

	for name, ev := range map[string]Event{
		"minimal":              baseEvent(),
		"every field":          full,
		"OIDC subject agent":   with(func(e *Event) { e.Agent = "248289761001" }),
		"OIDC URL-ish agent":   with(func(e *Event) { e.Agent = "https://issuer.example|agent:support bot" }),
		"SPIFFE deep path":     with(func(e *Event) { e.Agent = "spiffe://prod.acme-1.example/ns/a_b/sa/x.y-z" }),
		"unicode identity":     with(func(e *Event) { e.Principal = "jürgen@acme.example" }),
		"earliest time":        with(func(e *Event) { e.Time = MinEventTime }),
		"every action":         with(func(e *Event) { e.Action = ActionOther }),
		"max attrs":            with(func(e *Event) { e.Attrs = nAttrs(DefaultMaxAttrs) }),
		"max scope":            with(func(e *Event) { e.TaskScope = make([]string, DefaultMaxScope); fillScope(e.TaskScope) }),
		"empty Unknown":        with(func(e *Event) { e.Unknown = []byte(`{}`) }),
		"non-UTC time is fine": with(func(e *Event) { e.Time = e.Time.In(time.FixedZone("x", 3600)) }),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, ev.Validate(nil))
		})
	}
}

func with(f func(*Event)) Event {
	e := baseEvent()
	f(&e)
	return e
}

func nAttrs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%03d", i)] = "v"
	}
	return m
}

func fillScope(s []string) {
	for i := range s {
		s[i] = fmt.Sprintf("tool%d", i)
	}
}

func TestValidateProblems(t *testing.T) {
	long := strings.Repeat("a", DefaultMaxStringLen+1)
	tests := []struct {
		name string
		mod  func(*Event)
		want []string // "path: reason"
	}{
		{"missing id", func(e *Event) { e.ID = "" }, []string{"id: missing"}},
		{"missing time", func(e *Event) { e.Time = time.Time{} }, []string{"time: missing"}},
		{"time after 9999", func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"time: outside the years 0000–9999"}},
		{"time before year 0", func(e *Event) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, []string{"time: outside the years 0000–9999"}},
		{"time before 2000", func(e *Event) { e.Time = time.Unix(15, 0) }, []string{"time: before 2000-01-01: is the producer's clock set?"}},
		{"missing tenant", func(e *Event) { e.Tenant = "" }, []string{"tenant: missing"}},
		{"missing agent", func(e *Event) { e.Agent = "" }, []string{"agent: missing"}},
		{"missing tool", func(e *Event) { e.Tool = "" }, []string{"tool: missing"}},
		{"missing action", func(e *Event) { e.Action = "" }, []string{"action: missing"}},
		{"unnormalised action", func(e *Event) { e.Action = "GET" }, []string{`action: "GET" is not one of read, write, delete, send, execute, auth, other (use NormalizeAction)`}},
		{"everything missing", func(e *Event) { *e = Event{} }, []string{"id: missing", "time: missing", "tenant: missing", "agent: missing", "tool: missing", "action: missing"}},

		// Tenant is a NATS subject token.
		{"tenant with wildcard", func(e *Event) { e.Tenant = "acme*" }, []string{`tenant: contains '*'; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`}},
		{"tenant with full wildcard", func(e *Event) { e.Tenant = "acme.>" }, []string{`tenant: contains '.'; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`}},
		{"tenant with tail wildcard", func(e *Event) { e.Tenant = ">" }, []string{`tenant: contains '>'; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`}},
		{"tenant with space", func(e *Event) { e.Tenant = "ac me" }, []string{`tenant: contains ' '; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`}},
		{"tenant with newline", func(e *Event) { e.Tenant = "acme\r\nPUB x" }, []string{`tenant: contains byte 0x0d; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`}},
		{"tenant with non-ASCII", func(e *Event) { e.Tenant = "acmé" }, []string{`tenant: contains byte 0xc3; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`}},
		{"tenant too long", func(e *Event) { e.Tenant = long }, []string{"tenant: longer than 1024 bytes"}},

		// Agent identity.
		{"SPIFFE upper-case scheme", func(e *Event) { e.Agent = "SPIFFE://acme.example/bot" }, []string{`agent: SPIFFE ID must start with "spiffe://" (lower case)`}},
		{"SPIFFE one slash", func(e *Event) { e.Agent = "spiffe:/acme.example/bot" }, []string{`agent: SPIFFE ID must start with "spiffe://" (lower case)`}},
		{"SPIFFE empty trust domain", func(e *Event) { e.Agent = "spiffe:///bot" }, []string{"agent: SPIFFE ID has an empty trust domain"}},
		{"SPIFFE upper-case trust domain", func(e *Event) { e.Agent = "spiffe://Acme.example/bot" }, []string{`agent: SPIFFE trust domain contains 'A'; only lower-case letters, digits, '.', '-' and '_' are allowed`}},
		{"SPIFFE port", func(e *Event) { e.Agent = "spiffe://acme.example:443/bot" }, []string{`agent: SPIFFE trust domain contains ':'; only lower-case letters, digits, '.', '-' and '_' are allowed`}},
		{"SPIFFE user info", func(e *Event) { e.Agent = "spiffe://u@acme.example/bot" }, []string{`agent: SPIFFE trust domain contains '@'; only lower-case letters, digits, '.', '-' and '_' are allowed`}},
		{"SPIFFE no path", func(e *Event) { e.Agent = "spiffe://acme.example" }, []string{"agent: SPIFFE ID has no workload path (spiffe://trust-domain/path)"}},
		{"SPIFFE root path", func(e *Event) { e.Agent = "spiffe://acme.example/" }, []string{"agent: SPIFFE ID has no workload path (spiffe://trust-domain/path)"}},
		{"SPIFFE trailing slash", func(e *Event) { e.Agent = "spiffe://acme.example/bot/" }, []string{"agent: SPIFFE ID path has an empty segment"}},
		{"SPIFFE double slash", func(e *Event) { e.Agent = "spiffe://acme.example/a//b" }, []string{"agent: SPIFFE ID path has an empty segment"}},
		{"SPIFFE dot segment", func(e *Event) { e.Agent = "spiffe://acme.example/a/./b" }, []string{"agent: SPIFFE ID path has a relative segment"}},
		{"SPIFFE dot-dot segment", func(e *Event) { e.Agent = "spiffe://acme.example/a/.." }, []string{"agent: SPIFFE ID path has a relative segment"}},
		{"SPIFFE query", func(e *Event) { e.Agent = "spiffe://acme.example/bot?x=1" }, []string{`agent: SPIFFE ID path contains '?'; only letters, digits, '.', '-' and '_' are allowed`}},
		{"SPIFFE percent-encoding", func(e *Event) { e.Agent = "spiffe://acme.example/b%20t" }, []string{`agent: SPIFFE ID path contains '%'; only letters, digits, '.', '-' and '_' are allowed`}},
		{"parent_agent checked like agent", func(e *Event) { e.ParentAgent = "spiffe://acme.example" }, []string{"parent_agent: SPIFFE ID has no workload path (spiffe://trust-domain/path)"}},
		{"agent with control character", func(e *Event) { e.Agent = "bot\x00" }, []string{"agent: contains control character U+0000"}},
		{"agent with DEL", func(e *Event) { e.Agent = "bot\x7f" }, []string{"agent: contains control character U+007F"}},
		{"agent with C1 control", func(e *Event) { e.Agent = "bot\u0085x" }, []string{"agent: contains control character U+0085"}},
		{"agent with padding", func(e *Event) { e.Agent = " bot" }, []string{"agent: has leading or trailing whitespace"}},

		// Other identity fields.
		{"id with newline", func(e *Event) { e.ID = "e1\n" }, []string{"id: contains control character U+000A"}},
		{"instance with tab", func(e *Event) { e.Instance = "a\tb" }, []string{"instance: contains control character U+0009"}},
		{"principal too long", func(e *Event) { e.Principal = long }, []string{"principal: longer than 1024 bytes"}},
		{"session with escape", func(e *Event) { e.Session = "s\x1b[31m" }, []string{"session: contains control character U+001B"}},
		{"task trailing space", func(e *Event) { e.Task = "t1 " }, []string{"task: has leading or trailing whitespace"}},
		{"tool with control", func(e *Event) { e.Tool = "crm\x01" }, []string{"tool: contains control character U+0001"}},
		{"trace invalid UTF-8", func(e *Event) { e.Trace = "\xff" }, []string{"trace: not valid UTF-8"}},

		// task_scope.
		{"empty scope entry", func(e *Event) { e.TaskScope = []string{"a", "b", "c", ""} }, []string{"task_scope[3]: empty"}},
		{"bad scope entries", func(e *Event) { e.TaskScope = []string{"", "a\n", long} }, []string{"task_scope[0]: empty", "task_scope[1]: contains control character U+000A", "task_scope[2]: longer than 1024 bytes"}},
		{"scope too large", func(e *Event) { e.TaskScope = make([]string, DefaultMaxScope+1); fillScope(e.TaskScope) }, []string{"task_scope: more than 256 entries"}},

		// Counts.
		{"negative counts", func(e *Event) { e.DelegationDepth, e.BytesIn, e.BytesOut, e.Records = -1, -2, -3, -4 }, []string{"delegation_depth: negative", "bytes_in: negative", "bytes_out: negative", "records: negative"}},

		// Free text.
		{"resource too long", func(e *Event) { e.Resource = strings.Repeat("r", DefaultMaxResourceLen+1) }, []string{"resource: longer than 4096 bytes"}},
		{"destination too long", func(e *Event) { e.Destination = strings.Repeat("d", DefaultMaxResourceLen+1) }, []string{"destination: longer than 4096 bytes"}},
		{"action_raw too long", func(e *Event) { e.ActionRaw = long }, []string{"action_raw: longer than 1024 bytes"}},
		{"environment invalid UTF-8", func(e *Event) { e.Environment = "pr\xc0d" }, []string{"environment: not valid UTF-8"}},

		// Enums.
		{"bad enums", func(e *Event) { e.Sensitivity, e.Outcome, e.Approval = "Public", "fail", "yes" }, []string{
			`sensitivity: "Public" is not one of public, internal, confidential, restricted`,
			`outcome: "fail" is not one of ok, error, denied`,
			`approval: "yes" is not one of none, pending, approved, rejected`}},

		// Credentials are ids, never tokens.
		{"bearer token", func(e *Event) { e.Credential = "Bearer abc" }, []string{"credential: looks like an Authorization header value; send the credential's id or a hash of it, never the token"}},
		{"JWT", func(e *Event) {
			e.Credential = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
		}, []string{"credential: looks like a raw JWT; send the credential's id or a hash of it, never the token"}},
		{"API key", func(e *Event) { e.Credential = "sk-proj-abcdef" }, []string{"credential: looks like a raw API key or secret; send the credential's id or a hash of it, never the token"}},
		{"GitHub token", func(e *Event) { e.Credential = "ghp_16C7e42F292c6912E7710c838347Ae178B4a" }, []string{"credential: looks like a raw API key or secret; send the credential's id or a hash of it, never the token"}},

		// attrs.
		{"attr value too long", func(e *Event) { e.Attrs = map[string]string{"k": long, "ok": "v"} }, []string{`attrs["k"]: longer than 1024 bytes`}},
		{"attr key too long", func(e *Event) { e.Attrs = map[string]string{long: "v"} }, []string{`attrs["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…"]: key longer than 1024 bytes`}},
		{"empty attr key", func(e *Event) { e.Attrs = map[string]string{"": "v"} }, []string{"attrs: empty key"}},
		{"attr invalid UTF-8", func(e *Event) { e.Attrs = map[string]string{"b": "\xff", "a\xff": "v"} }, []string{`attrs["a\xff"]: key not valid UTF-8`, `attrs["b"]: not valid UTF-8`}},
		{"too many attrs", func(e *Event) { e.Attrs = nAttrs(DefaultMaxAttrs + 1) }, []string{"attrs: more than 64 entries"}},

		// Unknown of an event built in Go.
		{"Unknown not JSON", func(e *Event) { e.Unknown = []byte(`{"x":}`) }, []string{"unknown: not a valid JSON object: invalid character '}', expected a digit"}},
		{"Unknown not an object", func(e *Event) { e.Unknown = []byte(`[1]`) }, []string{"unknown: not a valid JSON object: invalid character '[', expected a JSON object"}},
		{"Unknown holds a known field", func(e *Event) { e.Unknown = []byte(`{"tenant":"other"}`) }, []string{`unknown: holds the known field "tenant"; set the Event field instead`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := baseEvent()
			tt.mod(&e)
			err := e.Validate(nil)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.String())
			}
			require.Equal(t, tt.want, got)
			require.Equal(t, "invalid event: "+strings.Join(tt.want, "; "), err.Error())
		})
	}
}

// TestValidateThroughDecode checks that Decode reports validation problems
// with the same paths, and fills the event so the caller can log its id.
func TestValidateThroughDecode(t *testing.T) {
	attrs := make([]string, 0, 70)
	for i := range 70 {
		attrs = append(attrs, fmt.Sprintf(`"k%d":"v"`, i))
	}
	tests := []struct {
		name, in, want string
	}{
		{"negative bytes", withFields(`"bytes_in":-1`), "invalid event: bytes_in: negative"},
		{"escaped control character in tenant", strings.Replace(minimal, `"acme"`, `"ac\nme"`, 1),
			`invalid event: tenant: contains byte 0x0a; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`},
		{"subject injection in tenant", strings.Replace(minimal, `"acme"`, `"acme.*.>"`, 1),
			`invalid event: tenant: contains '.'; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)`},
		{"escaped NUL in agent", strings.Replace(minimal, `"spiffe://acme.example/agents/bot"`, `"bot\u0000"`, 1), "invalid event: agent: contains control character U+0000"},
		{"raw DEL in id", strings.Replace(minimal, `"e1"`, "\"e1\x7f\"", 1), "invalid event: id: contains control character U+007F"},
		{"C1 control in tool", strings.Replace(minimal, `"crm.search"`, `"crm\u0085search"`, 1), "invalid event: tool: contains control character U+0085"},
		{"huge attrs", withFields(`"attrs":{` + strings.Join(attrs, ",") + `}`), "invalid event: attrs: more than 64 entries"},
		{"long attr value", withFields(`"attrs":{"k":"` + strings.Repeat("x", 1025) + `"}`), `invalid event: attrs["k"]: longer than 1024 bytes`},
		{"empty attr key", withFields(`"attrs":{"":"v"}`), `invalid event: attrs: empty key`},
		{"empty scope entry", withFields(`"task_scope":["a","b","c",""]`), "invalid event: task_scope[3]: empty"},
		{"missing fields", `{"id":"e9","time":null}`, "invalid event: time: missing; tenant: missing; agent: missing; tool: missing; action: missing"},
		{"empty action", strings.Replace(minimal, `"read"`, `""`, 1), "invalid event: action: missing"},
		{"time beyond 9999", strings.Replace(minimal, `"2024-05-01T12:34:56.789Z"`, `253402300800000`, 1), "invalid event: time: outside the years 0000–9999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev Event
			err := Decode([]byte(tt.in), &ev, nil)
			var ve *ValidationError
			require.True(t, errors.As(err, &ve), "got %v", err)
			require.EqualError(t, err, tt.want)
			require.NotEmpty(t, ev.ID, "the decoded event is available for logging")
			// Validate on the decoded event agrees with Decode.
			require.EqualError(t, ev.Validate(nil), tt.want)
		})
	}
}

func TestValidateCustomLimits(t *testing.T) {
	lim := Limits{MaxStringLen: 8, MaxResourceLen: 10, MaxAttrs: 1, MaxScope: 1}
	e := baseEvent()
	e.ID = "123456789"
	e.Resource = "12345678901"
	e.Attrs = map[string]string{"a": "1", "b": "2"}
	e.TaskScope = []string{"a", "b"}
	err := e.Validate(&lim)
	require.EqualError(t, err, "invalid event: id: longer than 8 bytes; agent: longer than 8 bytes; "+
		"task_scope: more than 1 entries; tool: longer than 8 bytes; resource: longer than 10 bytes; attrs: more than 1 entries")
}
