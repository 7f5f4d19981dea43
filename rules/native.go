package rules

import (
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"

	"github.com/tripline/tripline/pipeline"
)

// The expr VM boxes every value it touches; on the hot path that costs more
// than the rest of the engine. Conditions and filters made of the common
// forms (field and aggregate comparisons, in-lists, string operators,
// boolean logic) are therefore also compiled into plain Go closures from the
// checked AST. Anything else runs on the VM. TestNativeMatchesVM keeps the
// two in agreement.

type (
	boolFn func(*Env) bool
	numFn  func(*Env) float64
	strFn  func(*Env) string
)

func nativeBool(n ast.Node) func(*Env) bool {
	f, ok := cBool(n)
	if !ok {
		return nil
	}
	return f
}

func cBool(n ast.Node) (boolFn, bool) {
	switch v := n.(type) {
	case *ast.BoolNode:
		b := v.Value
		return func(*Env) bool { return b }, true
	case *ast.UnaryNode:
		if v.Operator == "!" || v.Operator == "not" {
			f, ok := cBool(v.Node)
			if !ok {
				return nil, false
			}
			return func(e *Env) bool { return !f(e) }, true
		}
	case *ast.MemberNode:
		if id, ok := v.Node.(*ast.IdentifierNode); ok && id.Value == "__flags" {
			if i, ok := v.Property.(*ast.IntegerNode); ok {
				idx := i.Value
				return func(e *Env) bool { return e.Flags[idx] }, true
			}
		}
	case *ast.BinaryNode:
		return cBinary(v)
	}
	return nil, false
}

func cBinary(v *ast.BinaryNode) (boolFn, bool) {
	switch v.Operator {
	case "&&", "and", "||", "or":
		l, ok1 := cBool(v.Left)
		r, ok2 := cBool(v.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		if v.Operator == "&&" || v.Operator == "and" {
			return func(e *Env) bool { return l(e) && r(e) }, true
		}
		return func(e *Env) bool { return l(e) || r(e) }, true
	case "==", "!=":
		neg := v.Operator == "!="
		var f boolFn
		if l, ok := cStr(v.Left); ok {
			if r, ok := cStr(v.Right); ok {
				f = func(e *Env) bool { return l(e) == r(e) }
			}
		}
		if f == nil {
			if l, ok := cNum(v.Left); ok {
				if r, ok := cNum(v.Right); ok {
					f = func(e *Env) bool { return l(e) == r(e) }
				}
			}
		}
		if f == nil {
			if l, ok := cBool(v.Left); ok {
				if r, ok := cBool(v.Right); ok {
					f = func(e *Env) bool { return l(e) == r(e) }
				}
			}
		}
		if f == nil {
			return nil, false
		}
		if neg {
			return func(e *Env) bool { return !f(e) }, true
		}
		return f, true
	case "<", "<=", ">", ">=":
		l, ok1 := cNum(v.Left)
		r, ok2 := cNum(v.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		switch v.Operator {
		case "<":
			return func(e *Env) bool { return l(e) < r(e) }, true
		case "<=":
			return func(e *Env) bool { return l(e) <= r(e) }, true
		case ">":
			return func(e *Env) bool { return l(e) > r(e) }, true
		default:
			return func(e *Env) bool { return l(e) >= r(e) }, true
		}
	case "in":
		l, ok := cStr(v.Left)
		if !ok {
			return nil, false
		}
		switch r := v.Right.(type) {
		case *ast.ArrayNode:
			var set []string
			for _, x := range r.Nodes {
				s, ok := x.(*ast.StringNode)
				if !ok {
					return nil, false
				}
				set = append(set, s.Value)
			}
			if len(set) > 8 {
				m := make(map[string]struct{}, len(set))
				for _, s := range set {
					m[s] = struct{}{}
				}
				return func(e *Env) bool { _, ok := m[l(e)]; return ok }, true
			}
			return func(e *Env) bool { return slices.Contains(set, l(e)) }, true
		case *ast.IdentifierNode:
			if r.Value == "task_scope" {
				return func(e *Env) bool { return slices.Contains(e.TaskScope, l(e)) }, true
			}
		}
	case "startsWith", "endsWith", "contains":
		l, ok1 := cStr(v.Left)
		r, ok2 := cStr(v.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		switch v.Operator {
		case "startsWith":
			return func(e *Env) bool { return strings.HasPrefix(l(e), r(e)) }, true
		case "endsWith":
			return func(e *Env) bool { return strings.HasSuffix(l(e), r(e)) }, true
		default:
			return func(e *Env) bool { return strings.Contains(l(e), r(e)) }, true
		}
	case "matches":
		l, ok := cStr(v.Left)
		s, ok2 := v.Right.(*ast.StringNode)
		if !ok || !ok2 {
			return nil, false
		}
		re, err := regexp.Compile(s.Value)
		if err != nil {
			return nil, false
		}
		return func(e *Env) bool { return re.MatchString(l(e)) }, true
	}
	return nil, false
}

func cNum(n ast.Node) (numFn, bool) {
	switch v := n.(type) {
	case *ast.IntegerNode:
		f := float64(v.Value)
		return func(*Env) float64 { return f }, true
	case *ast.FloatNode:
		f := v.Value
		return func(*Env) float64 { return f }, true
	case *ast.IdentifierNode:
		if g, ok := numFields[v.Value]; ok {
			return func(e *Env) float64 { return float64(g(e.Event)) }, true
		}
	case *ast.MemberNode:
		if id, ok := v.Node.(*ast.IdentifierNode); ok && id.Value == "__aggs" {
			if i, ok := v.Property.(*ast.IntegerNode); ok {
				idx := i.Value
				return func(e *Env) float64 { return e.Aggs[idx] }, true
			}
		}
	case *ast.UnaryNode:
		if v.Operator == "-" {
			f, ok := cNum(v.Node)
			if !ok {
				return nil, false
			}
			return func(e *Env) float64 { return -f(e) }, true
		}
	case *ast.BinaryNode:
		l, ok1 := cNum(v.Left)
		r, ok2 := cNum(v.Right)
		if !ok1 || !ok2 {
			return nil, false
		}
		// Integer division and modulo differ from float arithmetic in expr;
		// only operators with the same result on both are compiled.
		switch v.Operator {
		case "+":
			return func(e *Env) float64 { return l(e) + r(e) }, true
		case "-":
			return func(e *Env) float64 { return l(e) - r(e) }, true
		case "*":
			return func(e *Env) float64 { return l(e) * r(e) }, true
		case "/":
			return func(e *Env) float64 { return l(e) / r(e) }, true
		}
	case *ast.BuiltinNode:
		if v.Name == "len" && len(v.Arguments) == 1 {
			if id, ok := v.Arguments[0].(*ast.IdentifierNode); ok {
				switch id.Value {
				case "task_scope":
					return func(e *Env) float64 { return float64(len(e.TaskScope)) }, true
				case "attrs":
					return func(e *Env) float64 { return float64(len(e.Attrs)) }, true
				}
			}
		}
	}
	return nil, false
}

func cStr(n ast.Node) (strFn, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		s := v.Value
		return func(*Env) string { return s }, true
	case *ast.IdentifierNode:
		if v.Value == "action" {
			return func(e *Env) string { return e.Action }, true
		}
		if g, ok := stringFields[v.Value]; ok {
			return func(e *Env) string { return g(e.Event) }, true
		}
	case *ast.MemberNode:
		if id, ok := v.Node.(*ast.IdentifierNode); ok && id.Value == "attrs" {
			if k, ok := v.Property.(*ast.StringNode); ok {
				key := k.Value
				return func(e *Env) string { return e.Attrs[key] }, true
			}
		}
	case *ast.CallNode:
		if id, ok := v.Callee.(*ast.IdentifierNode); ok && len(v.Arguments) == 1 {
			arg, ok := cStr(v.Arguments[0])
			if !ok {
				return nil, false
			}
			switch id.Value {
			case "domain":
				return func(e *Env) string { return Domain(arg(e)) }, true
			case "trust_domain":
				return func(e *Env) string { s, _ := fnTrustDomain(arg(e)); return s.(string) }, true
			}
		}
	}
	return nil, false
}

// actionsOf returns the actions an expression can accept, when it constrains
// action with == or in at its top-level conjunction; nil means any.
func actionsOf(n ast.Node) []pipeline.Action {
	v, ok := n.(*ast.BinaryNode)
	if !ok {
		return nil
	}
	switch v.Operator {
	case "&&", "and":
		l, r := actionsOf(v.Left), actionsOf(v.Right)
		switch {
		case l == nil:
			return r
		case r == nil:
			return l
		}
		var both []pipeline.Action
		for _, a := range l {
			if slices.Contains(r, a) {
				both = append(both, a)
			}
		}
		if both == nil {
			both = []pipeline.Action{} // matches nothing
		}
		return both
	case "||", "or":
		l, r := actionsOf(v.Left), actionsOf(v.Right)
		if l == nil || r == nil {
			return nil
		}
		return append(slices.Clone(l), r...)
	case "==":
		if id, ok := v.Left.(*ast.IdentifierNode); ok && id.Value == "action" {
			if s, ok := v.Right.(*ast.StringNode); ok {
				return []pipeline.Action{pipeline.Action(s.Value)}
			}
		}
		if id, ok := v.Right.(*ast.IdentifierNode); ok && id.Value == "action" {
			if s, ok := v.Left.(*ast.StringNode); ok {
				return []pipeline.Action{pipeline.Action(s.Value)}
			}
		}
	case "in":
		if id, ok := v.Left.(*ast.IdentifierNode); ok && id.Value == "action" {
			if arr, ok := v.Right.(*ast.ArrayNode); ok {
				var out []pipeline.Action
				for _, x := range arr.Nodes {
					s, ok := x.(*ast.StringNode)
					if !ok {
						return nil
					}
					out = append(out, pipeline.Action(s.Value))
				}
				return out
			}
		}
	}
	return nil
}
