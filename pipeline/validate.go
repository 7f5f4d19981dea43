package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Validate checks e against the event contract and lim (nil means
// DefaultLimits) and returns nil or a *ValidationError listing every problem,
// each with its field path.
//
// Rules, beyond types and limits:
//   - id, time, tenant, agent, tool and action are required;
//   - identity fields (id, tenant, agent, instance, parent_agent, principal,
//     session, task, task_scope entries, tool, credential, trace) hold no
//     control characters and no leading or trailing whitespace;
//   - tenant holds only ASCII letters, digits, '-' and '_': it becomes a token
//     of NATS subjects and part of KV keys, where '.', '*', '>' and whitespace
//     would split the token or act as wildcards, letting one tenant's events
//     match another tenant's subscriptions;
//   - agent and parent_agent are SPIFFE IDs (spiffe://trust-domain/path) or
//     OIDC-subject-like strings;
//   - action is one of the Action constants (Decode normalises it);
//     sensitivity, outcome and approval are empty or one of their constants;
//   - counts (delegation_depth, bytes_in, bytes_out, records) are not negative;
//   - credential does not look like a raw token or key (best effort);
//   - Unknown, when set, is a JSON object without known fields.
//
// Validate does not check the encoded size; Decode does (MaxEventBytes).
func (e *Event) Validate(lim *Limits) error {
	return e.validate(resolveLimits(lim), false, false)
}

// The range of times RFC 3339 can express: 0000-01-01T00:00:00Z to
// 9999-12-31T23:59:59Z, in unix seconds.
const (
	minRFC3339Unix = -62167219200
	maxRFC3339Unix = 253402300799
)

// validator collects problems. Its slice stays nil for a valid event, so
// validation allocates nothing on the happy path.
type validator struct {
	lim      Limits
	problems []FieldError
	// decoded is set when the event comes from Decode, which has already
	// guaranteed valid UTF-8 and a well-formed Unknown.
	decoded bool
}

func (v *validator) add(path, reason string) {
	v.problems = append(v.problems, FieldError{Path: path, Reason: reason})
}

// validate is Validate; decoded says e comes straight from Decode (valid
// UTF-8, well-formed Unknown) and attrsOK that Decode already found every
// attrs key and value within limits.
func (e *Event) validate(lim Limits, decoded, attrsOK bool) error {
	v := validator{lim: lim, decoded: decoded}
	maxLen := lim.MaxStringLen

	v.identity("id", e.ID, true)
	switch sec := e.Time.Unix(); {
	case e.Time.IsZero():
		v.add("time", "missing")
	case sec < minRFC3339Unix || sec > maxRFC3339Unix:
		v.add("time", "outside the years 0000–9999")
	case e.Time.Before(MinEventTime):
		v.add("time", "before 2000-01-01: is the producer's clock set?")
	}
	v.tenant(e.Tenant)
	v.agent("agent", e.Agent, true)
	v.identity("instance", e.Instance, false)
	v.agent("parent_agent", e.ParentAgent, false)
	if e.DelegationDepth < 0 {
		v.add("delegation_depth", "negative")
	}
	v.identity("principal", e.Principal, false)
	v.identity("session", e.Session, false)
	v.identity("task", e.Task, false)
	if len(e.TaskScope) > lim.MaxScope {
		v.add("task_scope", fmt.Sprintf("more than %d entries", lim.MaxScope))
	} else {
		for i, tool := range e.TaskScope {
			why := "empty"
			if tool != "" {
				why = v.identityProblem(tool)
			}
			if why != "" {
				v.add(fmt.Sprintf("task_scope[%d]", i), why)
			}
		}
	}
	v.identity("tool", e.Tool, true)
	switch {
	case e.Action == "":
		v.add("action", "missing")
	case !validAction(e.Action):
		v.add("action", fmt.Sprintf("%q is not one of read, write, delete, send, execute, auth, other (use NormalizeAction)", truncate(string(e.Action))))
	}
	v.text("action_raw", e.ActionRaw, maxLen)
	v.text("resource", e.Resource, lim.MaxResourceLen)
	v.text("destination", e.Destination, lim.MaxResourceLen)
	for _, c := range [...]struct {
		name string
		n    int64
	}{{"bytes_in", e.BytesIn}, {"bytes_out", e.BytesOut}, {"records", e.Records}} {
		if c.n < 0 {
			v.add(c.name, "negative")
		}
	}
	v.enum("sensitivity", e.Sensitivity, SensitivityPublic, SensitivityInternal, SensitivityConfidential, SensitivityRestricted)
	v.enum("outcome", e.Outcome, OutcomeOK, OutcomeError, OutcomeDenied)
	v.enum("approval", e.Approval, ApprovalNone, ApprovalPending, ApprovalApproved, ApprovalRejected)
	v.text("environment", e.Environment, maxLen)
	if v.identity("credential", e.Credential, false) {
		if why := rawTokenReason(e.Credential); why != "" {
			v.add("credential", why+"; send the credential's id or a hash of it, never the token")
		}
	}
	v.identity("trace", e.Trace, false)
	if !attrsOK {
		v.attrs(e.Attrs)
	}
	if e.Unknown != nil && !decoded {
		v.unknown(e.Unknown)
	}

	if v.problems == nil {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

// truncate shortens s for quoting in an error message.
func truncate(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// length checks s against max and, for events not from Decode, its UTF-8.
func (v *validator) length(path, s string, maxLen int) bool {
	if len(s) > maxLen {
		v.add(path, fmt.Sprintf("longer than %d bytes", maxLen))
		return false
	}
	if !v.decoded && !utf8.ValidString(s) {
		v.add(path, "not valid UTF-8")
		return false
	}
	return true
}

// text checks a free-text field.
func (v *validator) text(path, s string, maxLen int) {
	v.length(path, s, maxLen)
}

// identity checks an identity-like field and reports whether it passed.
func (v *validator) identity(path, s string, required bool) bool {
	if s == "" {
		if required {
			v.add(path, "missing")
			return false
		}
		return true
	}
	if why := v.identityProblem(s); why != "" {
		v.add(path, why)
		return false
	}
	return true
}

// identityProblem says what is wrong with a non-empty identity value, or "".
func (v *validator) identityProblem(s string) string {
	if len(s) > v.lim.MaxStringLen {
		return fmt.Sprintf("longer than %d bytes", v.lim.MaxStringLen)
	}
	if !v.decoded && !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	if r, ok := controlChar(s); ok {
		return fmt.Sprintf("contains control character %U", r)
	}
	if isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return "has leading or trailing whitespace"
	}
	return ""
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// controlChar returns the first C0, DEL or C1 control character in s.
func controlChar(s string) (rune, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			return rune(c), true
		}
		// C1 controls U+0080–U+009F are encoded as 0xC2 0x80–0x9F.
		if c == 0xC2 && i+1 < len(s) && s[i+1] >= 0x80 && s[i+1] <= 0x9F {
			return rune(s[i+1]), true
		}
	}
	return 0, false
}

// tenant checks the tenant: required, and a safe NATS subject token.
func (v *validator) tenant(s string) {
	if s == "" {
		v.add("tenant", "missing")
		return
	}
	if len(s) > v.lim.MaxStringLen {
		v.add("tenant", fmt.Sprintf("longer than %d bytes", v.lim.MaxStringLen))
		return
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			continue
		}
		what := fmt.Sprintf("%q", c)
		if c < 0x20 || c >= 0x7f {
			what = fmt.Sprintf("byte 0x%02x", c)
		}
		v.add("tenant", "contains "+what+"; a tenant may hold only ASCII letters, digits, '-' and '_' (it is a NATS subject token)")
		return
	}
}

// agent checks an agent identity: a SPIFFE ID or an OIDC-subject-like string.
func (v *validator) agent(path, s string, required bool) {
	if !v.identity(path, s, required) || s == "" {
		return
	}
	if hasPrefixFold(s, "spiffe:") {
		if why := spiffeProblem(s); why != "" {
			v.add(path, why)
		}
	}
}

// spiffeProblem checks s against the SPIFFE ID format (SPIFFE-ID spec §2):
// scheme "spiffe", a trust domain of lower-case letters, digits, '.', '-' and
// '_' (so no port, user info or upper case), and a non-empty workload path of
// segments of letters, digits, '.', '-' and '_', none empty, "." or "..";
// no query, fragment or percent-encoding.
func spiffeProblem(s string) string {
	const scheme = "spiffe://"
	if !strings.HasPrefix(s, scheme) {
		return `SPIFFE ID must start with "spiffe://" (lower case)`
	}
	rest := s[len(scheme):]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		slash = len(rest)
	}
	td, path := rest[:slash], rest[slash:]
	if td == "" {
		return "SPIFFE ID has an empty trust domain"
	}
	if len(td) > 255 {
		return "SPIFFE trust domain longer than 255 bytes"
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Sprintf("SPIFFE trust domain contains %q; only lower-case letters, digits, '.', '-' and '_' are allowed", c)
		}
	}
	if path == "" || path == "/" {
		return "SPIFFE ID has no workload path (spiffe://trust-domain/path)"
	}
	// path is "/seg/seg/…": check each segment as the '/' before it is met.
	segStart := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			c := path[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				return fmt.Sprintf("SPIFFE ID path contains %q; only letters, digits, '.', '-' and '_' are allowed", c)
			}
			continue
		}
		switch path[segStart:i] {
		case "":
			return "SPIFFE ID path has an empty segment"
		case ".", "..":
			return "SPIFFE ID path has a relative segment"
		}
		segStart = i + 1
	}
	return ""
}

// rawTokenReason says why s looks like a secret rather than its id, or "".
// It is a best-effort guard against the most common mistakes, not a scanner.
func rawTokenReason(s string) string {
	for _, p := range [...]string{"bearer ", "basic ", "token "} {
		if hasPrefixFold(s, p) {
			return "looks like an Authorization header value"
		}
	}
	// A JWT: three base64url segments, the first a JSON header ("eyJ").
	if strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2 && len(s) > 40 {
		return "looks like a raw JWT"
	}
	for _, p := range [...]string{"sk-", "sk_live_", "ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "xoxb-", "xoxp-", "glpat-", "-----begin"} {
		if hasPrefixFold(s, p) {
			return "looks like a raw API key or secret"
		}
	}
	return ""
}

// hasPrefixFold reports whether s starts with the lower-case ASCII prefix,
// ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// enum checks an optional enumerated value.
func (v *validator) enum(path, s string, allowed ...string) {
	if s == "" || slices.Contains(allowed, s) {
		return
	}
	v.add(path, fmt.Sprintf("%q is not one of %s", truncate(s), strings.Join(allowed, ", ")))
}

// attrs checks the free-form attributes; problems come in key order so the
// error text is stable.
func (v *validator) attrs(m map[string]string) {
	if len(m) == 0 {
		return
	}
	if len(m) > v.lim.MaxAttrs {
		v.add("attrs", fmt.Sprintf("more than %d entries", v.lim.MaxAttrs))
		return
	}
	maxLen := v.lim.MaxStringLen
	bad := false
	for k, val := range m {
		if k == "" || len(k) > maxLen || len(val) > maxLen || !v.decoded && (!utf8.ValidString(k) || !utf8.ValidString(val)) {
			bad = true
			break
		}
	}
	if !bad {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path := fmt.Sprintf("attrs[%q]", truncate(k))
		switch {
		case k == "":
			v.add("attrs", "empty key")
		case len(k) > maxLen:
			v.add(path, fmt.Sprintf("key longer than %d bytes", maxLen))
		case !v.decoded && !utf8.ValidString(k):
			v.add(path, "key not valid UTF-8")
		default:
			v.length(path, m[k], maxLen)
		}
	}
}

// unknown checks Event.Unknown of an event built in Go.
func (v *validator) unknown(raw []byte) {
	var d Decoder
	d.lim = v.lim
	d.lim.MaxEventBytes = len(raw) + 1 // Decode checks the size of the whole event
	if err := d.parse(raw); err != nil {
		reason := err.Error()
		if de, ok := err.(*DecodeError); ok {
			reason = de.Reason
		}
		v.add("unknown", "not a valid JSON object: "+reason)
		return
	}
	for f := range numFields {
		if d.seen&(1<<f) != 0 {
			v.add("unknown", fmt.Sprintf("holds the known field %q; set the Event field instead", fieldNames[f]))
		}
	}
}
