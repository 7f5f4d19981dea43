package rules

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Pos is a position in a rule file, 1-based.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Error is one problem in a rule file.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// ErrorList is every problem found while loading a rule set. A set with any
// error is rejected whole.
type ErrorList []*Error

func (l ErrorList) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Duration is a time.Duration written in YAML as "90s", "5m", "1h30m", "7d".
type Duration time.Duration

// ParseDuration parses Go durations plus the units d (24h) and w (7d).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		v, err := strconv.ParseFloat(s[:n-1], 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		if v > float64(math.MaxInt64)/float64(unit) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		return time.Duration(v * float64(unit)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use 500ms, 30s, 5m, 1h, 7d)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// Date is a calendar date (2026-12-31) or an RFC 3339 time.
type Date struct{ time.Time }

// nodeDecoder decodes yaml.Node trees into Go values strictly: unknown keys,
// wrong types and duplicate keys are errors, each with its position, and
// decoding goes on so that every error in a file is reported at once.
type nodeDecoder struct {
	file string
	errs ErrorList
}

func (d *nodeDecoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: d.pos(n), Msg: fmt.Sprintf(format, args...)})
}

func (d *nodeDecoder) pos(n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: d.file, Line: 1, Col: 1}
	}
	return Pos{File: d.file, Line: n.Line, Col: n.Column}
}

var (
	durationType = reflect.TypeOf(Duration(0))
	dateType     = reflect.TypeOf(Date{})
	nodeType     = reflect.TypeOf(yaml.Node{})
	posType      = reflect.TypeOf(Pos{})
	keyPosType   = reflect.TypeOf(map[string]*yaml.Node(nil))
)

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an alias"
}

// decode fills v (a pointer's element) from n.
func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.AliasNode {
		d.errorf(n, "aliases are not allowed in rule files")
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	// A yaml.Node field keeps the raw node (used for inline event fields).
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if v.Kind() == reflect.Pointer {
		if n.Tag == "!!null" {
			return
		}
		if v.Type().Elem().Kind() == reflect.Struct && v.Type().Elem() != dateType && v.Type().Elem() != durationType && n.Kind != yaml.MappingNode {
			d.errorf(n, "want a mapping, got %s", kindName(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem())
		return
	}
	switch v.Type() {
	case durationType:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "want a duration such as 5m, got %s", kindName(n))
			return
		}
		dur, err := ParseDuration(n.Value)
		if err != nil {
			d.errorf(n, "%v", err)
			return
		}
		v.SetInt(int64(dur))
		return
	case dateType:
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, "want a date such as 2026-12-31, got %s", kindName(n))
			return
		}
		t, err := time.Parse("2006-01-02", n.Value)
		if err != nil {
			t, err = time.Parse(time.RFC3339Nano, n.Value)
		}
		if err != nil {
			d.errorf(n, "invalid date %q (use 2026-12-31 or RFC 3339)", n.Value)
			return
		}
		v.Set(reflect.ValueOf(Date{t.UTC()}))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v)
	case reflect.Slice:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, "want a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				d.errorf(k, "duplicate key %q", k.Value)
				continue
			}
			seen[k.Value] = true
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.decodeScalar(n, v)
	}
}

func (d *nodeDecoder) decodeScalar(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "want a %s, got %s", v.Kind(), kindName(n))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" && n.Tag != "!!bool" && n.Tag != "!!timestamp" {
			d.errorf(n, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Tag != "!!bool" {
			d.errorf(n, "want true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil || v.OverflowInt(i) {
			d.errorf(n, "want an integer, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil {
			d.errorf(n, "want a number, got %q", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.errorf(n, "internal: cannot decode into %s", v.Type())
	}
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "want a mapping, got %s", kindName(n))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		switch {
		case f.Type == posType && f.Name == "Pos":
			v.Field(i).Set(reflect.ValueOf(d.pos(n)))
			continue
		case f.Type == keyPosType && f.Name == "Nodes":
			v.Field(i).Set(reflect.ValueOf(map[string]*yaml.Node{}))
			continue
		}
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
		known = append(known, name)
	}
	var nodes map[string]*yaml.Node
	if f := v.FieldByName("Nodes"); f.IsValid() {
		nodes, _ = f.Interface().(map[string]*yaml.Node)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, "unknown field %q (known: %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "duplicate field %q", k.Value)
			continue
		}
		seen[k.Value] = true
		if nodes != nil {
			nodes[k.Value] = val
		}
		d.decode(val, v.Field(idx))
	}
}

func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }
