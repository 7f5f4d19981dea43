package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"github.com/tripline/tripline/pipeline"
)

// Env is what a condition sees: the current event's fields (by their JSON
// names) plus the values of the rule's aggregates, which the compiler wires
// in place of the aggregate calls. Rules never read the wall clock.
type Env struct {
	*pipeline.Event
	// Action shadows Event.Action as a plain string so that rules compare it
	// with string literals; Reset sets it.
	Action string    `expr:"action"`
	Aggs   []float64 `expr:"__aggs"`
	Flags  []bool    `expr:"__flags"`
}

// Reset points the env at an event.
func (e *Env) Reset(ev *pipeline.Event) {
	e.Event = ev
	e.Action = string(ev.Action)
}

// AggKind is the kind of a windowed aggregate.
type AggKind uint8

// Aggregate kinds.
const (
	AggCount     AggKind = iota // events in a sliding window
	AggSum                      // sum of a numeric field in a sliding window
	AggDistinct                 // distinct values of a field in a sliding window (fan-out)
	AggFirstSeen                // current value of a field never seen for the group within a horizon
	AggSeq                      // current event completes steps A → B [→ C…] within a span
	AggBaseline                 // moving mean and spread of another aggregate, per window
)

var aggKindNames = [...]string{"count", "sum", "distinct", "first_seen", "seq", "baseline"}

func (k AggKind) String() string { return aggKindNames[k] }

// GroupKey is the set of fields a rule groups by. The tenant is always first.
type GroupKey struct {
	Index  int
	Fields []string
	Get    []func(*pipeline.Event) string
}

// Name is the canonical name of the key, e.g. "tenant,session".
func (g *GroupKey) Name() string { return strings.Join(g.Fields, ",") }

// AggSpec is one aggregate the engine maintains for one group key. Identical
// aggregates used by several rules are one AggSpec.
type AggSpec struct {
	Index  int
	Kind   AggKind
	Group  int           // index into Set.Groups
	Window time.Duration // sliding window; horizon for first_seen; span for seq; tumbling window for baseline
	Field  Field         // sum, distinct, first_seen
	Filter *Predicate    // count, sum, distinct: only events matching it (nil: all)
	Steps  []*Predicate  // seq
	Inner  int           // baseline: the aggregate whose baseline this is
	Key    string        // canonical text, the deduplication key
}

// Output selects what a slot reads from an aggregate.
type Output uint8

// Outputs of a slot.
const (
	OutValue  Output = iota // count, sum or distinct value
	OutRate                 // count per second over the window
	OutFlag                 // first_seen, seq (Flags)
	OutMean                 // baseline mean
	OutStddev               // baseline standard deviation
	OutZ                    // (current - mean) / max(stddev, 1)
	OutN                    // windows in the baseline
)

// Slot is one value a condition reads: Env.Aggs[i] (or Env.Flags[i]) is
// output Out of aggregate Agg.
type Slot struct {
	Agg int
	Out Output
}

// Explain says which aggregate a slot holds and the threshold it is compared
// with, so that a decision can say why it fired.
type Explain struct {
	Slot      int
	Text      string // the aggregate as written, e.g. count(5m, action == "send")
	Op        string // comparison operator, if compared with a constant
	Threshold float64
	HasThresh bool
}

// Condition is a compiled condition.
type Condition struct {
	Program *vm.Program
	Native  func(*Env) bool // nil when the expression needs the VM
	Slots   []Slot
	Explain []Explain
}

// Variant is a rule's condition compiled with one set of params: overrides
// for a tenant and/or agent first, the default last.
type Variant struct {
	Tenant, Agent string
	Params        map[string]any
	Cond          *Condition
}

// CompiledException is an exception ready to evaluate.
type CompiledException struct {
	Match   *Predicate
	Expires time.Time
	Comment string
}

// CompiledRule is a rule ready for the engine.
type CompiledRule struct {
	*Rule
	Index   int
	Version string
	Group   int
	// Groups are the group keys the rule reads: its own (Group) first, then
	// those of its by() aggregates, each once.
	Groups     []int
	MatchPred  *Predicate          // nil: every event
	Actions    []pipeline.Action   // the actions match can accept; nil: any
	Variants   []Variant           // overrides first, default last
	Exceptions []CompiledException //
	Window     time.Duration       // the longest window the rule reads; anchors decision ids
}

// Set is a compiled, validated rule set. It is immutable and safe to share
// between workers.
type Set struct {
	Rules  []*CompiledRule
	Aggs   []*AggSpec
	Groups []*GroupKey
	Tests  []*Test
	// Hash identifies the whole set (every rule's id and version).
	Hash string
}

// Rule returns the rule with the id, or nil.
func (s *Set) Rule(id string) *CompiledRule {
	for _, r := range s.Rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// MaxWindow is the longest sliding window of any aggregate: how much history a
// new owner of a partition must replay to rebuild its state.
func (s *Set) MaxWindow() time.Duration {
	var m time.Duration
	for _, a := range s.Aggs {
		if a.Kind != AggFirstSeen && a.Window > m {
			m = a.Window
		}
	}
	return m
}

type compiler struct {
	errs   ErrorList
	srcs   map[string][]string // file → lines, for positions in block scalars
	set    *Set
	aggIdx map[string]int
	grpIdx map[string]int
}

// Compile parses, validates and compiles rule files into a Set. Any error
// rejects the whole set; the returned ErrorList holds every error found.
func Compile(srcs ...Source) (*Set, error) {
	c := &compiler{srcs: map[string][]string{}, set: &Set{}, aggIdx: map[string]int{}, grpIdx: map[string]int{}}
	ids := map[string]Pos{}
	for _, s := range srcs {
		c.srcs[s.Name] = strings.Split(string(s.Data), "\n")
		f, errs := ParseFile(s.Name, s.Data)
		c.errs = append(c.errs, errs...)
		if f == nil {
			continue
		}
		f.Tests = slices.DeleteFunc(f.Tests, func(t *Test) bool { return t == nil })
		for _, t := range f.Tests {
			t.File = s.Name
			c.set.Tests = append(c.set.Tests, t)
		}
		for _, r := range f.Rules {
			if r == nil {
				continue
			}
			if p, dup := ids[r.ID]; dup && r.ID != "" {
				c.errs = append(c.errs, &Error{Pos: r.Pos, Msg: fmt.Sprintf("rule id %q is already defined at %s", r.ID, p)})
				continue
			}
			ids[r.ID] = r.Pos
			r.Tests = slices.DeleteFunc(r.Tests, func(t *Test) bool { return t == nil })
			for _, t := range r.Tests {
				t.File = s.Name
				if len(t.Rules) == 0 {
					t.Rules = []string{r.ID}
				}
				c.set.Tests = append(c.set.Tests, t)
			}
			c.compileRule(r)
		}
	}
	for _, t := range c.set.Tests {
		for _, id := range t.Rules {
			if _, ok := ids[id]; !ok {
				c.errs = append(c.errs, &Error{Pos: t.Pos, Msg: fmt.Sprintf("test %q names rule %q, which no file defines", t.Name, id)})
			}
		}
	}
	if len(c.errs) > 0 {
		sort.SliceStable(c.errs, func(i, j int) bool {
			a, b := c.errs[i].Pos, c.errs[j].Pos
			if a.File != b.File {
				return a.File < b.File
			}
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, c.errs
	}
	h := sha256.New()
	for _, r := range c.set.Rules {
		fmt.Fprintf(h, "%s@%s\n", r.ID, r.Version)
	}
	c.set.Hash = hex.EncodeToString(h.Sum(nil))[:16]
	return c.set, nil
}

func (c *compiler) compileRule(r *Rule) {
	before := len(c.errs)
	c.validateRule(r)
	cr := &CompiledRule{Rule: r, Index: len(c.set.Rules), Version: version(r)}
	cr.Group = c.groupKey(r)
	cr.Groups = []int{cr.Group}
	if r.Match != "" {
		cr.MatchPred = c.predicate(r.Match, c.loc(r, r.Nodes["match"]))
		if cr.MatchPred != nil {
			cr.Actions = actionsOf(cr.MatchPred.node)
		}
	}
	for _, o := range r.Overrides {
		params := maps.Clone(r.Params)
		if params == nil {
			params = map[string]any{}
		}
		maps.Copy(params, o.Params)
		if cond := c.condition(r, cr, params); cond != nil {
			cr.Variants = append(cr.Variants, Variant{Tenant: o.Tenant, Agent: o.Agent, Params: params, Cond: cond})
		}
	}
	if cond := c.condition(r, cr, r.Params); cond != nil {
		cr.Variants = append(cr.Variants, Variant{Params: r.Params, Cond: cond})
	}
	for _, e := range r.Exceptions {
		if e.Match == "" {
			continue
		}
		p := c.predicate(e.Match, c.loc2(e.Pos.File, e.Nodes["match"]))
		cr.Exceptions = append(cr.Exceptions, CompiledException{Match: p, Expires: e.Expires.Time, Comment: e.Comment})
	}
	if len(c.errs) > before {
		return
	}
	c.set.Rules = append(c.set.Rules, cr)
}

func (c *compiler) groupKey(r *Rule) int {
	fields := []string{"tenant"}
	for i, g := range r.Group {
		if !slices.Contains(GroupFields, g) {
			p := r.Pos
			if n := r.Nodes["group"]; n != nil && i < len(n.Content) {
				p = Pos{File: r.Pos.File, Line: n.Content[i].Line, Col: n.Content[i].Column}
			}
			c.errs = append(c.errs, &Error{Pos: p, Msg: fmt.Sprintf("cannot group by %q; group by %s", g, strings.Join(GroupFields, ", "))})
			continue
		}
		if !slices.Contains(fields, g) {
			fields = append(fields, g)
		}
	}
	if len(r.Group) == 0 {
		fields = append(fields, "session")
	}
	return c.groupIndex(fields)
}

// groupIndex returns the index of the group key made of fields (valid group
// fields), registering it if new. The tenant is added; order and duplicates
// do not matter.
func (c *compiler) groupIndex(in []string) int {
	fields := []string{"tenant"}
	for _, f := range in {
		if !slices.Contains(fields, f) {
			fields = append(fields, f)
		}
	}
	// canonical order
	sort.SliceStable(fields, func(i, j int) bool {
		return slices.Index(GroupFields, fields[i]) < slices.Index(GroupFields, fields[j])
	})
	name := strings.Join(fields, ",")
	if i, ok := c.grpIdx[name]; ok {
		return i
	}
	g := &GroupKey{Index: len(c.set.Groups), Fields: fields}
	for _, f := range fields {
		g.Get = append(g.Get, stringFields[f])
	}
	c.set.Groups = append(c.set.Groups, g)
	c.grpIdx[name] = g.Index
	return g.Index
}

// exprLoc maps positions in an expression to positions in its file.
type exprLoc struct {
	file  string
	line  int // line of the scalar node
	col   int // column of the scalar node
	block bool
	quote int
	lines []string
}

func (c *compiler) loc(r *Rule, n *yaml.Node) exprLoc { return c.loc2(r.Pos.File, n) }

func (c *compiler) loc2(fileName string, n *yaml.Node) exprLoc {
	l := exprLoc{file: fileName, line: 1, col: 1, lines: c.srcs[fileName]}
	if n == nil {
		return l
	}
	l.line, l.col = n.Line, n.Column
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		l.block = true
	case n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0:
		l.quote = 1
	}
	return l
}

// at converts a 0-based rune offset in the expression text src into a file position.
func (l exprLoc) at(src string, off int) Pos {
	line, col := 0, 0
	i := 0
	for _, r := range src {
		if i == off {
			break
		}
		if r == '\n' {
			line++
			col = 0
		} else {
			col++
		}
		i++
	}
	if l.block {
		fl := l.line + 1 + line
		// YAML strips the block's indentation, which is that of its first line.
		indent := 0
		if l.line < len(l.lines) {
			s := l.lines[l.line]
			indent = len(s) - len(strings.TrimLeft(s, " "))
		}
		return Pos{File: l.file, Line: fl, Col: indent + col + 1}
	}
	if line == 0 {
		return Pos{File: l.file, Line: l.line, Col: l.col + l.quote + col}
	}
	return Pos{File: l.file, Line: l.line + line, Col: col + 1}
}

func (c *compiler) exprError(l exprLoc, orig string, rw *rewrite, err error) {
	var fe *file.Error
	if errors.As(err, &fe) {
		off := rw.orig(fe.From)
		c.errs = append(c.errs, &Error{Pos: l.at(orig, off), Msg: fe.Message})
		return
	}
	c.errs = append(c.errs, &Error{Pos: l.at(orig, 0), Msg: err.Error()})
}

// baseOptions are the expr options every rule expression compiles with.
func baseOptions() []expr.Option {
	return append([]expr.Option{
		expr.Env(Env{}),
		expr.AsBool(),
		expr.DisableBuiltin("now"),
		expr.MaxNodes(2000),
		expr.Optimize(false),
		expr.Function("domain", fnDomain, new(func(string) string)),
		expr.Function("trust_domain", fnTrustDomain, new(func(string) string)),
	}, aggFuncOptions()...)
}

// Predicate is a compiled per-event filter (a rule's match, an aggregate's
// filter, an exception).
type Predicate struct {
	Src    string
	prog   *vm.Program
	native func(*Env) bool
	node   ast.Node
}

// Eval reports whether the event in env matches. v is the caller's VM (one
// per worker); it is used only for expressions with no native form.
func (p *Predicate) Eval(env *Env, v *vm.VM) (bool, error) {
	if p.native != nil {
		return p.native(env), nil
	}
	out, err := v.Run(p.prog, env)
	if err != nil {
		return false, err
	}
	b, _ := out.(bool)
	return b, nil
}

// Native reports whether the predicate runs without the VM.
func (p *Predicate) Native() bool { return p.native != nil }

// predicate compiles a per-event filter. Aggregates are not allowed in it.
func (c *compiler) predicate(src string, l exprLoc) *Predicate {
	rw := rewriteDurations(src)
	pt := &patcher{c: c, noAggs: true, src: src, rw: rw, loc: l}
	prog, err := expr.Compile(rw.out, append(baseOptions(), expr.Patch(pt))...)
	if pt.failed {
		return nil
	}
	if err != nil {
		c.exprError(l, src, rw, err)
		return nil
	}
	p := &Predicate{Src: src, prog: prog, node: prog.Node()}
	p.native = nativeBool(prog.Node())
	return p
}

func (c *compiler) condition(r *Rule, cr *CompiledRule, params map[string]any) *Condition {
	if r.Condition == "" {
		return nil
	}
	l := c.loc(r, r.Nodes["condition"])
	rw := rewriteDurations(r.Condition)
	pt := &patcher{c: c, src: r.Condition, rw: rw, loc: l, params: params, group: cr.Group, replaced: map[ast.Node]int{},
		bys: map[*ast.CallNode]*byCall{}, byAgg: map[*ast.CallNode]*byCall{}}
	// byScan runs first, over the whole tree, so that the patcher knows the
	// group of an aggregate when it meets it (the patcher walks children
	// before their parents: it sees count() before the by() around it).
	prog, err := expr.Compile(rw.out, append(baseOptions(), expr.Patch(byScan{pt}), expr.Patch(pt))...)
	if pt.failed {
		return nil
	}
	if err != nil {
		c.exprError(l, r.Condition, rw, err)
		return nil
	}
	if len(pt.slots) == 0 {
		// A condition on the event alone is allowed (e.g. a tool outside the
		// task's scope), but say so if it could never change.
		if _, ok := prog.Node().(*ast.BoolNode); ok {
			c.errs = append(c.errs, &Error{Pos: l.at(r.Condition, 0), Msg: "condition is a constant"})
			return nil
		}
	}
	for _, s := range pt.slots {
		if w := c.set.Aggs[s.Agg].Window; w > cr.Window && c.set.Aggs[s.Agg].Kind != AggFirstSeen {
			cr.Window = w
		}
		if g := c.set.Aggs[s.Agg].Group; !slices.Contains(cr.Groups, g) {
			cr.Groups = append(cr.Groups, g)
		}
	}
	return &Condition{Program: prog, Native: nativeBool(prog.Node()), Slots: pt.slots, Explain: pt.explain}
}

// addAgg registers an aggregate, deduplicating identical ones across rules.
func (c *compiler) addAgg(a *AggSpec) int {
	if i, ok := c.aggIdx[a.Key]; ok {
		return i
	}
	a.Index = len(c.set.Aggs)
	c.set.Aggs = append(c.set.Aggs, a)
	c.aggIdx[a.Key] = a.Index
	return a.Index
}

// patcher replaces aggregate calls by reads of Env.Aggs / Env.Flags and
// params.NAME by constants, collecting the aggregates a condition needs.
type patcher struct {
	c        *compiler
	src      string
	rw       *rewrite
	loc      exprLoc
	params   map[string]any
	group    int
	noAggs   bool
	failed   bool
	slots    []Slot
	explain  []Explain
	replaced map[ast.Node]int          // patched node → slot
	bys      map[*ast.CallNode]*byCall // by() calls found by byScan
	byAgg    map[*ast.CallNode]*byCall // aggregate calls inside a by() → that by()
}

// byCall is one by(FIELD..., AGG) of a condition.
type byCall struct {
	group  int           // index into Set.Groups
	fields string        // the fields in the order written, e.g. "session" or "task, agent"
	agg    *ast.CallNode // the aggregate it wraps
}

// byScan is the pass before the patcher: it validates every by() call and
// records the group of the aggregates inside it.
type byScan struct{ p *patcher }

func (s byScan) Visit(node *ast.Node) {
	n, ok := (*node).(*ast.CallNode)
	if !ok || !isCall(n, "by") {
		return
	}
	p := s.p
	args := n.Arguments
	if len(args) < 2 {
		p.errorf(n, "by() takes group fields and an aggregate, e.g. by(session, count(5m))")
		return
	}
	var fields []string
	for _, a := range args[:len(args)-1] {
		id, ok := a.(*ast.IdentifierNode)
		if !ok || !slices.Contains(GroupFields, id.Value) {
			p.errorf(a, "by() groups by %s, not %s", strings.Join(GroupFields, ", "), a.String())
			return
		}
		fields = append(fields, id.Value)
	}
	last := args[len(args)-1]
	agg, ok := last.(*ast.CallNode)
	if !ok || !isAggCall(agg) {
		if ok && isCall(agg, "by") {
			p.errorf(agg, "by() cannot be nested; name all the fields in one by()")
			return
		}
		msg := "by() takes an aggregate as its last argument: count, rate, sum, distinct, seq, first_seen, baseline, stddev, zscore or history"
		if b, ok := last.(*ast.BinaryNode); ok && strings.ContainsAny(b.Operator, "<>=") {
			msg += "; compare outside: by(session, count(5m)) > 3"
		}
		p.errorf(last, "%s", msg)
		return
	}
	if inner := ast.Find(agg, func(x ast.Node) bool {
		c, ok := x.(*ast.CallNode)
		return ok && isCall(c, "by")
	}); inner != nil {
		p.errorf(inner, "by() cannot be nested; name all the fields in one by()")
		return
	}
	bc := &byCall{group: p.c.groupIndex(fields), fields: strings.Join(fields, ", "), agg: agg}
	p.bys[n] = bc
	ast.Find(agg, func(x ast.Node) bool {
		if c, ok := x.(*ast.CallNode); ok && isAggCall(c) {
			p.byAgg[c] = bc
		}
		return false
	})
}

func isCall(n *ast.CallNode, name string) bool {
	id, ok := n.Callee.(*ast.IdentifierNode)
	return ok && id.Value == name
}

func isAggCall(n *ast.CallNode) bool {
	id, ok := n.Callee.(*ast.IdentifierNode)
	return ok && aggFuncs[id.Value] && id.Value != "by"
}

func (p *patcher) errorf(n ast.Node, format string, args ...any) {
	p.failed = true
	// point at the leftmost character of the node, not at its operator
	from := n.Location().From
	ast.Find(n, func(x ast.Node) bool {
		if l := x.Location(); l.From < from && (l.From > 0 || l.To > 0) {
			from = l.From
		}
		return false
	})
	off := p.rw.orig(from)
	p.c.errs = append(p.c.errs, &Error{Pos: p.loc.at(p.src, off), Msg: fmt.Sprintf(format, args...)})
}

var aggFuncs = map[string]bool{"by": true, "count": true, "rate": true, "sum": true, "distinct": true, "seq": true, "first_seen": true, "baseline": true, "stddev": true, "zscore": true, "history": true}

// aggFuncOptions declares the aggregates so that they parse as calls (count
// and sum are also expr builtins, which these override).
func aggFuncOptions() []expr.Option {
	var out []expr.Option
	for name := range aggFuncs {
		n := name
		out = append(out, expr.Function(n, func(...any) (any, error) {
			return nil, fmt.Errorf("%s() is an aggregate and must be compiled by Tripline", n)
		}))
	}
	return out
}

func (p *patcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		id, ok := n.Node.(*ast.IdentifierNode)
		if !ok || id.Value != "params" {
			return
		}
		name, ok := n.Property.(*ast.StringNode)
		if !ok {
			p.errorf(n, "params must be read as params.NAME")
			return
		}
		v, ok := p.params[name.Value]
		if !ok {
			p.errorf(n, "unknown param %q (declare it under params:)", name.Value)
			return
		}
		lit := literal(v)
		if lit == nil {
			p.errorf(n, "param %q must be a number, string or boolean", name.Value)
			return
		}
		ast.Patch(node, lit)
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || !aggFuncs[id.Value] {
			return
		}
		if p.noAggs {
			p.errorf(n, "%s() is an aggregate; aggregates are allowed only in a rule's condition", id.Value)
			return
		}
		if id.Value == "by" {
			p.byCall(node, n)
			return
		}
		p.aggCall(node, id.Value, n)
	case *ast.BinaryNode:
		switch n.Operator {
		case ">", ">=", "<", "<=", "==", "!=":
		default:
			return
		}
		if s, ok := p.replaced[n.Left]; ok {
			if v, ok := number(n.Right); ok {
				p.setThreshold(s, n.Operator, v)
			}
		} else if s, ok := p.replaced[n.Right]; ok {
			if v, ok := number(n.Left); ok {
				p.setThreshold(s, flip(n.Operator), v)
			}
		}
	}
}

func (p *patcher) setThreshold(slot int, op string, v float64) {
	for i := range p.explain {
		if p.explain[i].Slot == slot && !p.explain[i].HasThresh {
			p.explain[i].Op, p.explain[i].Threshold, p.explain[i].HasThresh = op, v, true
			return
		}
	}
}

func flip(op string) string {
	switch op {
	case ">":
		return "<"
	case ">=":
		return "<="
	case "<":
		return ">"
	case "<=":
		return ">="
	}
	return op
}

func number(n ast.Node) (float64, bool) {
	switch v := n.(type) {
	case *ast.IntegerNode:
		return float64(v.Value), true
	case *ast.FloatNode:
		return v.Value, true
	case *ast.UnaryNode:
		if v.Operator == "-" {
			f, ok := number(v.Node)
			return -f, ok
		}
	}
	return 0, false
}

func literal(v any) ast.Node {
	switch x := v.(type) {
	case int:
		return &ast.IntegerNode{Value: x}
	case int64:
		return &ast.IntegerNode{Value: int(x)}
	case uint64:
		return &ast.IntegerNode{Value: int(x)}
	case float64:
		return &ast.FloatNode{Value: x}
	case string:
		return &ast.StringNode{Value: x}
	case bool:
		return &ast.BoolNode{Value: x}
	}
	return nil
}

// duration reads a window argument: a literal like 5m (rewritten to
// duration("5m") before parsing) or a string such as a param.
func (p *patcher) duration(n ast.Node) (time.Duration, bool) {
	var s string
	switch v := n.(type) {
	case *ast.BuiltinNode:
		if v.Name == "duration" && len(v.Arguments) == 1 {
			if str, ok := v.Arguments[0].(*ast.StringNode); ok {
				s = str.Value
			}
		}
	case *ast.StringNode:
		s = v.Value
	}
	if s == "" {
		p.errorf(n, "want a constant duration such as 5m")
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.errorf(n, "%v", err)
		return 0, false
	}
	if d < time.Second {
		p.errorf(n, "window %s is shorter than 1s", d)
		return 0, false
	}
	if d > 400*24*time.Hour {
		p.errorf(n, "window %s is longer than 400d", d)
		return 0, false
	}
	return d, true
}

func (p *patcher) field(n ast.Node, numeric bool) (Field, bool) {
	name := ""
	switch v := n.(type) {
	case *ast.CallNode:
		// domain(FIELD): the host of a destination-like field, so that
		// first_seen and distinct count hosts, not addresses or URLs.
		if id, ok := v.Callee.(*ast.IdentifierNode); ok && id.Value == "domain" && len(v.Arguments) == 1 && !numeric {
			inner, ok := p.field(v.Arguments[0], false)
			if !ok {
				return inner, false
			}
			get := inner.Str
			return Field{Name: "domain(" + inner.Name + ")", Str: func(e *pipeline.Event) string { return Domain(get(e)) }}, true
		}
	case *ast.IdentifierNode:
		name = v.Value
	case *ast.MemberNode:
		if id, ok := v.Node.(*ast.IdentifierNode); ok && id.Value == "attrs" {
			if s, ok := v.Property.(*ast.StringNode); ok {
				name = "attrs." + s.Value
			}
		}
	}
	f, ok := lookupField(name)
	if !ok {
		p.errorf(n, "want an event field name (tool, resource, destination, attrs.NAME, domain(destination), …)")
		return f, false
	}
	if numeric && f.Num == nil {
		p.errorf(n, "%s is not numeric; sum() takes bytes_in, bytes_out, records or delegation_depth", name)
		return f, false
	}
	if !numeric && f.Str == nil {
		p.errorf(n, "%s is numeric; use a string field", name)
		return f, false
	}
	return f, true
}

func (p *patcher) filter(n ast.Node) (*Predicate, bool) {
	bad := false
	ast.Find(n, func(x ast.Node) bool {
		if _, ok := p.replaced[x]; ok {
			bad = true
		}
		return bad
	})
	if bad {
		p.errorf(n, "a filter cannot contain an aggregate")
		return nil, false
	}
	src := n.String()
	before := len(p.c.errs)
	pred := p.c.predicate(src, exprLoc{file: p.loc.file})
	if pred == nil {
		// report at the filter's position in the condition
		msgs := []string{}
		for _, e := range p.c.errs[before:] {
			msgs = append(msgs, e.Msg)
		}
		p.c.errs = p.c.errs[:before]
		p.errorf(n, "invalid filter %s: %s", src, strings.Join(msgs, "; "))
		return nil, false
	}
	return pred, true
}

// byCall replaces by(FIELD..., AGG) by AGG's slot, which the patcher has
// already compiled for by()'s group, and makes the slot explain itself as
// the by() call written.
func (p *patcher) byCall(node *ast.Node, n *ast.CallNode) {
	if p.bys[n] == nil || len(n.Arguments) == 0 {
		p.failed = true // byScan reported why
		return
	}
	slot, ok := p.replaced[n.Arguments[len(n.Arguments)-1]]
	if !ok {
		p.failed = true // the aggregate reported why
		return
	}
	text := p.text(n)
	for i := range p.explain {
		if p.explain[i].Slot == slot {
			p.explain[i].Text = text
		}
	}
	repl := n.Arguments[len(n.Arguments)-1]
	ast.Patch(node, repl)
	p.replaced[*node] = slot
}

func (p *patcher) aggCall(node *ast.Node, name string, n *ast.CallNode) {
	args := n.Arguments
	text := p.text(n)
	group := p.group
	bc := p.byAgg[n]
	if bc != nil {
		group = bc.group
		if bc.agg != n {
			// an aggregate inside the wrapped one (baseline's argument)
			text = "by(" + bc.fields + ", " + text + ")"
		}
	}
	argc := func(min, max int) bool {
		if len(args) < min || len(args) > max {
			if min == max {
				p.errorf(n, "%s() takes %d arguments", name, min)
			} else {
				p.errorf(n, "%s() takes %d to %d arguments", name, min, max)
			}
			return false
		}
		return true
	}
	var spec *AggSpec
	out := OutValue
	switch name {
	case "count", "rate":
		if !argc(1, 2) {
			return
		}
		w, ok := p.duration(args[0])
		if !ok {
			return
		}
		spec = &AggSpec{Kind: AggCount, Window: w}
		if len(args) == 2 {
			if spec.Filter, ok = p.filter(args[1]); !ok {
				return
			}
		}
		if name == "rate" {
			out = OutRate
		}
	case "sum", "distinct":
		if !argc(2, 3) {
			return
		}
		f, ok := p.field(args[0], name == "sum")
		if !ok {
			return
		}
		w, ok := p.duration(args[1])
		if !ok {
			return
		}
		kind := AggSum
		if name == "distinct" {
			kind = AggDistinct
		}
		spec = &AggSpec{Kind: kind, Window: w, Field: f}
		if len(args) == 3 {
			if spec.Filter, ok = p.filter(args[2]); !ok {
				return
			}
		}
	case "first_seen":
		if !argc(1, 2) {
			return
		}
		f, ok := p.field(args[0], false)
		if !ok {
			return
		}
		h := 30 * 24 * time.Hour
		if len(args) == 2 {
			if h, ok = p.duration(args[1]); !ok {
				return
			}
		}
		spec = &AggSpec{Kind: AggFirstSeen, Window: h, Field: f}
		out = OutFlag
	case "seq":
		if len(args) < 3 || len(args) > 6 {
			p.errorf(n, "seq() takes 2 to 5 steps and a span: seq(step1, step2, 10m)")
			return
		}
		w, ok := p.duration(args[len(args)-1])
		if !ok {
			return
		}
		spec = &AggSpec{Kind: AggSeq, Window: w}
		for _, a := range args[:len(args)-1] {
			pr, ok := p.filter(a)
			if !ok {
				return
			}
			spec.Steps = append(spec.Steps, pr)
		}
		out = OutFlag
	case "baseline", "stddev", "zscore", "history":
		if !argc(1, 1) {
			return
		}
		slot, ok := p.replaced[args[0]]
		inner := -1
		if ok {
			inner = p.slots[slot].Agg
		}
		if inner < 0 || p.slots[slot].Out != OutValue && p.slots[slot].Out != OutRate {
			p.errorf(n, "%s() takes count(), rate(), sum() or distinct(), e.g. %s(count(5m))", name, name)
			return
		}
		in := p.c.set.Aggs[inner]
		if in.Kind == AggFirstSeen || in.Kind == AggSeq || in.Kind == AggBaseline {
			p.errorf(n, "%s() takes count(), rate(), sum() or distinct()", name)
			return
		}
		if in.Group != group {
			p.errorf(n, "%s() of a by() aggregate: put by() outside, e.g. by(session, %s(count(5m)))", name, name)
			return
		}
		spec = &AggSpec{Kind: AggBaseline, Window: in.Window, Inner: inner}
		out = map[string]Output{"baseline": OutMean, "stddev": OutStddev, "zscore": OutZ, "history": OutN}[name]
	}
	spec.Group = group
	spec.Key = aggKey(spec, p.c.set.Groups[group])
	idx := p.c.addAgg(spec)
	slot := len(p.slots)
	p.slots = append(p.slots, Slot{Agg: idx, Out: out})
	p.explain = append(p.explain, Explain{Slot: slot, Text: text})
	arr := "__aggs"
	if out == OutFlag {
		arr = "__flags"
	}
	repl := &ast.MemberNode{Node: &ast.IdentifierNode{Value: arr}, Property: &ast.IntegerNode{Value: slot}}
	ast.Patch(node, repl)
	p.replaced[*node] = slot
}

// text returns the call as the analyst wrote it.
func (p *patcher) text(n ast.Node) string {
	loc := n.Location()
	from := p.rw.orig(loc.From)
	r := []rune(p.src)
	if from >= 0 && from < len(r) {
		// find the matching closing paren from the call's start
		depth := 0
		inStr := rune(0)
		for i := from; i < len(r); i++ {
			ch := r[i]
			switch {
			case inStr != 0:
				if ch == '\\' {
					i++
				} else if ch == inStr {
					inStr = 0
				}
			case ch == '"' || ch == '\'' || ch == '`':
				inStr = ch
			case ch == '(':
				depth++
			case ch == ')':
				depth--
				if depth == 0 {
					return string(r[from : i+1])
				}
			}
		}
	}
	return n.String()
}

func aggKey(a *AggSpec, g *GroupKey) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s[%s](", a.Kind, g.Name())
	switch a.Kind {
	case AggBaseline:
		fmt.Fprintf(&b, "#%d", a.Inner)
	case AggSeq:
		for _, s := range a.Steps {
			b.WriteString(s.Src)
			b.WriteString(" -> ")
		}
		b.WriteString(a.Window.String())
	default:
		if a.Field.Name != "" {
			b.WriteString(a.Field.Name)
			b.WriteString(", ")
		}
		b.WriteString(a.Window.String())
		if a.Filter != nil {
			b.WriteString(", ")
			b.WriteString(a.Filter.Src)
		}
	}
	b.WriteByte(')')
	return b.String()
}

func fnDomain(args ...any) (any, error) {
	s, _ := args[0].(string)
	return Domain(s), nil
}

func fnTrustDomain(args ...any) (any, error) {
	s, _ := args[0].(string)
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return "", nil
	}
	td, _, _ := strings.Cut(rest, "/")
	return td, nil
}

// Domain returns the host of a destination written as a URL, an e-mail
// address or a bare host, lower-cased and without port.
func Domain(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.Contains(s[i:], "]") {
		s = s[:i]
	}
	return strings.ToLower(s)
}

// rewrite records how duration literals were rewritten so that error
// positions can be mapped back to what the analyst wrote.
type rewrite struct {
	out    string
	shifts []shift // sorted by position in out
}

type shift struct {
	at    int // rune offset in out where the inserted text ends
	delta int // runes added before this point (cumulative)
}

func (rw *rewrite) orig(off int) int {
	d := 0
	for _, s := range rw.shifts {
		if off >= s.at {
			d = s.delta
		}
	}
	if off-d < 0 {
		return 0
	}
	return off - d
}

// rewriteDurations turns duration literals (5m, 1h30m, 7d) outside strings
// into duration("…") calls, which expr understands.
func rewriteDurations(src string) *rewrite {
	r := []rune(src)
	var out []rune
	rw := &rewrite{}
	delta := 0
	isIdent := func(ch rune) bool {
		return ch == '_' || ch == '.' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9'
	}
	for i := 0; i < len(r); i++ {
		ch := r[i]
		if ch == '"' || ch == '\'' || ch == '`' {
			j := i + 1
			for j < len(r) && r[j] != ch {
				if r[j] == '\\' && ch != '`' {
					j++
				}
				j++
			}
			if j >= len(r) {
				j = len(r) - 1
			}
			out = append(out, r[i:j+1]...)
			i = j
			continue
		}
		if ch >= '0' && ch <= '9' && (i == 0 || !isIdent(r[i-1])) {
			j := i
			for j < len(r) && (r[j] >= '0' && r[j] <= '9' || r[j] == '.' || r[j] >= 'a' && r[j] <= 'z' || r[j] == 'µ') {
				j++
			}
			tok := string(r[i:j])
			if hasUnit(tok) && (j == len(r) || !isIdent(r[j])) {
				if d, err := ParseDuration(tok); err == nil {
					lit := []rune(fmt.Sprintf("duration(%q)", goDuration(d)))
					out = append(out, lit...)
					delta += len(lit) - (j - i)
					rw.shifts = append(rw.shifts, shift{at: len(out), delta: delta})
					i = j - 1
					continue
				}
			}
		}
		out = append(out, ch)
	}
	rw.out = string(out)
	return rw
}

func hasUnit(tok string) bool {
	last := tok[len(tok)-1]
	return last >= 'a' && last <= 'z' || strings.HasSuffix(tok, "µs")
}

func goDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

var _ = math.Inf

// Subset returns a set holding the rules keep accepts, renumbered, sharing
// this set's aggregates and groups (an engine maintains only the aggregates
// its rules read).
func (s *Set) Subset(keep func(*CompiledRule) bool) *Set {
	sub := &Set{Aggs: s.Aggs, Groups: s.Groups, Tests: s.Tests, Hash: s.Hash}
	for _, r := range s.Rules {
		if keep(r) {
			c := *r
			c.Index = len(sub.Rules)
			sub.Rules = append(sub.Rules, &c)
		}
	}
	return sub
}

// RuleIsLocal reports whether a rule of the set can be evaluated per event
// partition: its own group and the group of every by() aggregate it reads
// must each be partition-local.
func (s *Set) RuleIsLocal(r *CompiledRule) bool {
	if !s.Groups[r.Group].PartitionLocal() {
		return false
	}
	for _, g := range r.Groups {
		if !s.Groups[g].PartitionLocal() {
			return false
		}
	}
	return true
}

// PartitionLocal reports whether every group of this key falls within one
// agent identity, and so within one event partition (events are partitioned
// by agent). Keys with agent, instance or session are local — instances and
// sessions belong to one agent identity; keys made only of task, principal,
// credential, parent_agent, tool or tenant span agents and need a detector
// that sees every partition.
func (g *GroupKey) PartitionLocal() bool {
	for _, f := range g.Fields {
		if f == "agent" || f == "instance" || f == "session" {
			return true
		}
	}
	return false
}
