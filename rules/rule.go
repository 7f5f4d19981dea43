// Package rules owns Tripline's rule files: their format, strict decoding with
// positions, validation and compilation of expr conditions into programs plus
// the windowed aggregates those programs read. It does not evaluate anything
// over time: package detectors does, with the Set this package builds.
package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Modes, actions and severities.
const (
	ModeShadow  = "shadow"
	ModeEnforce = "enforce"

	ActionAlert  = "alert"
	ActionRevoke = "revoke"
	ActionHold   = "hold"
)

// What a hold does when nobody approves or denies it within hold_timeout.
const (
	TimeoutRelease = "release" // the hold ends: calls go through again
	TimeoutDeny    = "deny"    // the scope is refused for revoke_for more
)

// Severities, lowest first.
var Severities = []string{"info", "low", "medium", "high", "critical"}

// DefaultCooldown applies when a rule does not set cooldown (write
// "cooldown: 0s" to emit a decision on every firing).
const DefaultCooldown = 5 * time.Minute

// DefaultRevokeFor is how long a revocation lasts when a rule does not say.
const DefaultRevokeFor = time.Hour

// File is one rule file: rules, and optionally tests for them (a file that
// holds only tests is a sidecar test file).
type File struct {
	Rules []*Rule `yaml:"rules"`
	Tests []*Test `yaml:"tests"`
	Pos   Pos
}

// Rule is a rule as written.
type Rule struct {
	ID          string         `yaml:"id"`
	Description string         `yaml:"description"`
	Rationale   string         `yaml:"rationale"`
	Severity    string         `yaml:"severity"`
	Tags        []string       `yaml:"tags"`
	Match       string         `yaml:"match"`
	Group       []string       `yaml:"group"`
	Condition   string         `yaml:"condition"`
	Params      map[string]any `yaml:"params"`
	Overrides   []*Override    `yaml:"overrides"`
	Action      string         `yaml:"action"`
	Scope       string         `yaml:"scope"`
	RevokeFor   Duration       `yaml:"revoke_for"`
	HoldTimeout Duration       `yaml:"hold_timeout"`
	OnTimeout   string         `yaml:"on_timeout"`
	Mode        string         `yaml:"mode"`
	Cooldown    Duration       `yaml:"cooldown"`
	Exceptions  []*Exception   `yaml:"exceptions"`
	Tests       []*Test        `yaml:"tests"`

	Pos   Pos
	Nodes map[string]*yaml.Node
}

// Override changes a rule's params for one tenant and/or agent identity
// without copying the rule.
type Override struct {
	Tenant  string         `yaml:"tenant"`
	Agent   string         `yaml:"agent"`
	Params  map[string]any `yaml:"params"`
	Comment string         `yaml:"comment"`
	Pos     Pos
	Nodes   map[string]*yaml.Node
}

// Exception stops a rule from firing on events it matches, until it expires.
type Exception struct {
	Match   string `yaml:"match"`
	Expires Date   `yaml:"expires"`
	Comment string `yaml:"comment"`
	Pos     Pos
	Nodes   map[string]*yaml.Node
}

// Test is a rule test: timed input events and the decisions expected.
type Test struct {
	Name     string         `yaml:"name"`
	Rules    []string       `yaml:"rules"`
	Start    Date           `yaml:"start"`
	Defaults map[string]any `yaml:"defaults"`
	Events   []*TestEvent   `yaml:"events"`
	Expect   []*Expect      `yaml:"expect"`
	Pos      Pos
	Nodes    map[string]*yaml.Node
	File     string `yaml:"-"`
}

// TestEvent is one input event of a test, or Repeat events Every apart.
type TestEvent struct {
	At     Duration       `yaml:"at"`
	Repeat int            `yaml:"repeat"`
	Every  Duration       `yaml:"every"`
	Fields map[string]any `yaml:"event"`
	Pos    Pos
	Nodes  map[string]*yaml.Node
}

// Expect is a partially specified decision: only the fields given are compared.
type Expect struct {
	At         *Duration `yaml:"at"`
	Rule       string    `yaml:"rule"`
	Group      string    `yaml:"group"`
	Action     string    `yaml:"action"`
	Mode       string    `yaml:"mode"`
	Scope      string    `yaml:"scope"`
	EventID    string    `yaml:"event"`
	Suppressed *int64    `yaml:"suppressed"`
	Pos        Pos
	Nodes      map[string]*yaml.Node
}

// Positive reports whether a test expects at least one decision.
func (t *Test) Positive() bool { return len(t.Expect) > 0 }

// ParseFile decodes one rule file strictly. It returns every error found.
func ParseFile(name string, data []byte) (*File, ErrorList) {
	d := &nodeDecoder{file: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, ErrorList{yamlError(name, err)}
	}
	f := &File{}
	if len(root.Content) == 0 {
		return f, nil
	}
	d.decode(&root, reflectValue(f))
	return f, d.errs
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlError(name string, err error) *Error {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &line)
		msg = m[2]
	}
	return &Error{Pos: Pos{File: name, Line: line, Col: 1}, Msg: "invalid YAML: " + msg}
}

// Source is one rule file to load.
type Source struct {
	Name string
	Data []byte
}

// ReadSources reads rule files: each path is a file or a directory walked for
// *.yaml and *.yml files (sorted, so loading is deterministic).
func ReadSources(paths ...string) ([]Source, error) {
	var out []Source
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		if !st.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("rules: %w", err)
			}
			out = append(out, Source{Name: p, Data: b})
			continue
		}
		var names []string
		err = filepath.WalkDir(p, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !de.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				names = append(names, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		sort.Strings(names)
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				return nil, fmt.Errorf("rules: %w", err)
			}
			out = append(out, Source{Name: n, Data: b})
		}
	}
	return out, nil
}

// LoadPaths reads and compiles rule files from paths (files or directories).
func LoadPaths(paths ...string) (*Set, error) {
	srcs, err := ReadSources(paths...)
	if err != nil {
		return nil, err
	}
	return Compile(srcs...)
}

// version is the rule's content hash: the canonical YAML of the rule without
// its tests, so that editing a test does not change what the rule is.
func version(r *Rule) string {
	h := sha256.New()
	var b strings.Builder
	b.WriteString(r.ID)
	for _, k := range []string{"description", "severity", "tags", "match", "group", "condition", "params", "overrides", "action", "scope", "revoke_for", "hold_timeout", "on_timeout", "mode", "cooldown", "exceptions"} {
		n := r.Nodes[k]
		if n == nil {
			continue
		}
		out, _ := yaml.Marshal(stripPos(n))
		fmt.Fprintf(&b, "\x00%s=%s", k, out)
	}
	h.Write([]byte(b.String()))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// stripPos copies a node tree without positions or comments so that moving
// a rule within a file or reformatting comments keeps its version.
func stripPos(n *yaml.Node) *yaml.Node {
	c := &yaml.Node{Kind: n.Kind, Tag: n.Tag, Value: n.Value}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		c.Style = yaml.DoubleQuotedStyle
	}
	for _, ch := range n.Content {
		c.Content = append(c.Content, stripPos(ch))
	}
	return c
}

var (
	idRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)
	tagRE = regexp.MustCompile(`^(ASI(0[1-9]|10)|T([1-9]|1[0-5])|NHI([1-9]|10)|MAESTRO-L[1-7]|NIST-(GOVERN|MAP|MEASURE|MANAGE)|[a-z][a-z0-9-]*:[A-Za-z0-9._-]+)$`)
)

func (c *compiler) validateRule(r *Rule) {
	r.Overrides = slices.DeleteFunc(r.Overrides, func(o *Override) bool { return o == nil })
	r.Exceptions = slices.DeleteFunc(r.Exceptions, func(e *Exception) bool { return e == nil })
	at := func(key string) Pos {
		if n := r.Nodes[key]; n != nil {
			return Pos{File: r.Pos.File, Line: n.Line, Col: n.Column}
		}
		return r.Pos
	}
	bad := func(key, format string, args ...any) {
		c.errs = append(c.errs, &Error{Pos: at(key), Msg: fmt.Sprintf(format, args...)})
	}
	if r.ID == "" {
		bad("id", "rule has no id")
	} else if !idRE.MatchString(r.ID) {
		bad("id", "rule id %q must be lower case letters, digits, '.', '_' or '-'", r.ID)
	}
	if r.Description == "" {
		bad("description", "rule %q has no description", r.ID)
	}
	if r.Severity == "" {
		r.Severity = "medium"
	} else if !slices.Contains(Severities, r.Severity) {
		bad("severity", "severity %q is not one of %s", r.Severity, strings.Join(Severities, ", "))
	}
	for i, t := range r.Tags {
		if !tagRE.MatchString(t) {
			n := r.Nodes["tags"]
			p := at("tags")
			if n != nil && i < len(n.Content) {
				p = Pos{File: r.Pos.File, Line: n.Content[i].Line, Col: n.Content[i].Column}
			}
			c.errs = append(c.errs, &Error{Pos: p, Msg: fmt.Sprintf("tag %q is not a known threat id (ASI01..ASI10, T1..T15, NHI1..NHI10, MAESTRO-L1..L7, NIST-GOVERN|MAP|MEASURE|MANAGE) nor a namespaced tag like team:soc", t)})
		}
	}
	if r.Condition == "" {
		bad("condition", "rule %q has no condition", r.ID)
	}
	switch r.Mode {
	case "":
		r.Mode = ModeShadow
	case ModeShadow, ModeEnforce:
	default:
		bad("mode", "mode %q must be shadow or enforce", r.Mode)
	}
	switch r.Action {
	case "":
		r.Action = ActionAlert
	case ActionAlert:
		if r.Scope != "" {
			bad("scope", "an alert has no scope; use action: revoke or hold")
		}
	case ActionRevoke, ActionHold:
		if r.Scope == "" {
			r.Scope = "session"
		} else if !slices.Contains(Scopes, r.Scope) {
			bad("scope", "scope %q must be one of %s", r.Scope, strings.Join(Scopes, ", "))
		}
	default:
		bad("action", "action %q must be alert, revoke or hold", r.Action)
	}
	if r.Nodes["cooldown"] == nil {
		r.Cooldown = Duration(DefaultCooldown)
	}
	if r.RevokeFor == 0 {
		r.RevokeFor = Duration(DefaultRevokeFor)
	}
	switch {
	case r.Action != ActionHold && (r.HoldTimeout != 0 || r.OnTimeout != ""):
		k := "hold_timeout"
		if r.Nodes[k] == nil {
			k = "on_timeout"
		}
		bad(k, "hold_timeout and on_timeout belong to action: hold")
	case r.Action == ActionHold:
		switch r.OnTimeout {
		case "":
			r.OnTimeout = TimeoutRelease
		case TimeoutRelease, TimeoutDeny:
		default:
			bad("on_timeout", "on_timeout %q must be release or deny", r.OnTimeout)
		}
		if r.HoldTimeout == 0 {
			r.HoldTimeout = r.RevokeFor
		}
	}
	for _, o := range r.Overrides {
		if o.Tenant == "" && o.Agent == "" {
			c.errs = append(c.errs, &Error{Pos: o.Pos, Msg: "an override needs a tenant, an agent or both"})
		}
		for k := range o.Params {
			if _, ok := r.Params[k]; !ok {
				p := o.Pos
				if n := o.Nodes["params"]; n != nil {
					p = Pos{File: o.Pos.File, Line: n.Line, Col: n.Column}
				}
				c.errs = append(c.errs, &Error{Pos: p, Msg: fmt.Sprintf("override sets param %q that rule %q does not declare", k, r.ID)})
			}
		}
	}
	for _, e := range r.Exceptions {
		if e.Match == "" {
			c.errs = append(c.errs, &Error{Pos: e.Pos, Msg: "an exception needs a match expression"})
		}
		if e.Expires.IsZero() {
			c.errs = append(c.errs, &Error{Pos: e.Pos, Msg: "an exception needs an expiry date (expires: 2026-12-31)"})
		}
		if strings.TrimSpace(e.Comment) == "" {
			c.errs = append(c.errs, &Error{Pos: e.Pos, Msg: "an exception needs a comment saying why and who approved it"})
		}
	}
}
