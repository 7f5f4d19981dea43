package pipeline

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// This file is the hot path of every consumer: a single-pass JSON scanner
// specialised for Event. It never uses reflection, never recurses except into
// unknown values (bounded by Limits.MaxDepth) and never panics.
//
// Allocation model: every string of an event is unescaped into one buffer
// (the arena); when the object is complete the arena becomes a single string
// and each field is a substring of it. A reused Decoder copies its arena into
// that string; the package-level Decode allocates a fresh arena for the one
// event and turns it into the string without a copy (unsafe.String; nothing
// writes to the arena afterwards). A typical event therefore costs one
// allocation for all of its strings, plus one for task_scope, two for the
// attrs map and one for Unknown when present. None of them alias the input.
//
// Because the strings of one event share a backing array, keeping any one of
// them alive keeps all of the event's text alive (a few hundred bytes). Code
// that retains a few fields of many events for a long time (window keys,
// first-seen sets) should strings.Clone them.

// field identifies a known top-level field; the order is the schema order.
type field uint8

const (
	fieldID field = iota
	fieldTime
	fieldTenant
	fieldAgent
	fieldInstance
	fieldParentAgent
	fieldDelegationDepth
	fieldPrincipal
	fieldSession
	fieldTask
	fieldTaskScope
	fieldTool
	fieldAction
	fieldActionRaw
	fieldResource
	fieldDestination
	fieldBytesIn
	fieldBytesOut
	fieldRecords
	fieldSensitivity
	fieldOutcome
	fieldApproval
	fieldEnvironment
	fieldCredential
	fieldTrace
	fieldAttrs
	numFields

	fieldUnknown field = 255
)

// fieldNames are the JSON names of the known fields, in schema order.
var fieldNames = [numFields]string{
	"id", "time", "tenant", "agent", "instance", "parent_agent",
	"delegation_depth", "principal", "session", "task", "task_scope", "tool",
	"action", "action_raw", "resource", "destination", "bytes_in", "bytes_out",
	"records", "sensitivity", "outcome", "approval", "environment",
	"credential", "trace", "attrs",
}

// requiredFields are the fields Validate requires.
var requiredFields = [...]field{fieldID, fieldTime, fieldTenant, fieldAgent, fieldTool, fieldAction}

type valueKind uint8

const (
	kindString valueKind = iota
	kindInt
	kindTime
	kindStringList
	kindStringMap
)

// fieldKinds is the JSON type of each known field.
var fieldKinds = [numFields]valueKind{
	fieldTime:            kindTime,
	fieldDelegationDepth: kindInt,
	fieldTaskScope:       kindStringList,
	fieldBytesIn:         kindInt,
	fieldBytesOut:        kindInt,
	fieldRecords:         kindInt,
	fieldAttrs:           kindStringMap,
	// every other field is kindString (the zero value)
}

// intSlot is where Decoder.ints keeps an integer field.
func intSlot(f field) int {
	switch f {
	case fieldBytesIn:
		return 1
	case fieldBytesOut:
		return 2
	case fieldRecords:
		return 3
	}
	return 0 // fieldDelegationDepth
}

// lookupField maps a JSON key onto a known field; the match is exact (JSON
// keys are case-sensitive, unlike encoding/json's struct matching).
func lookupField(key []byte) field {
	switch string(key) { // no allocation: the compiler compares in place
	case "id":
		return fieldID
	case "time":
		return fieldTime
	case "tenant":
		return fieldTenant
	case "agent":
		return fieldAgent
	case "instance":
		return fieldInstance
	case "parent_agent":
		return fieldParentAgent
	case "delegation_depth":
		return fieldDelegationDepth
	case "principal":
		return fieldPrincipal
	case "session":
		return fieldSession
	case "task":
		return fieldTask
	case "task_scope":
		return fieldTaskScope
	case "tool":
		return fieldTool
	case "action":
		return fieldAction
	case "action_raw":
		return fieldActionRaw
	case "resource":
		return fieldResource
	case "destination":
		return fieldDestination
	case "bytes_in":
		return fieldBytesIn
	case "bytes_out":
		return fieldBytesOut
	case "records":
		return fieldRecords
	case "sensitivity":
		return fieldSensitivity
	case "outcome":
		return fieldOutcome
	case "approval":
		return fieldApproval
	case "environment":
		return fieldEnvironment
	case "credential":
		return fieldCredential
	case "trace":
		return fieldTrace
	case "attrs":
		return fieldAttrs
	}
	return fieldUnknown
}

// strStop marks the bytes that end the fast path inside a JSON string: the
// closing quote, a backslash, control characters (invalid unescaped) and the
// first byte of every multi-byte UTF-8 sequence (to be validated).
var strStop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'] = true
	t['\\'] = true
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	return t
}()

// plainRun returns the index of the first byte at or after i that strStop
// marks, or len(data). It looks at eight bytes at a time.
func plainRun(data []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for i+8 <= len(data) {
		x := binary.LittleEndian.Uint64(data[i:])
		q := x ^ (ones * '"')
		b := x ^ (ones * '\\')
		// A byte is flagged when it is < 0x20 (subtracting 0x20 borrows),
		// '"' or '\\' (xor makes it zero, subtracting 1 borrows) or when its
		// high bit is set. A borrow can only flag bytes above a flagged
		// one, so the lowest flag is exact, and it is the one used.
		m := ((x - ones*0x20) | (q - ones) | (b - ones) | x) & highs
		if m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	for i < len(data) && !strStop[data[i]] {
		i++
	}
	return i
}

// span is a substring of the arena.
type span struct{ off, end int32 }

// spanList is a list of spans whose first entries live inline, so that a
// Decoder on the stack stays there (a slice of an inline array would move
// it to the heap) and typical events need no allocation for their lists.
type spanList struct {
	n     int
	small [8]span
	more  []span
}

func (l *spanList) reset() {
	l.n = 0
	l.more = l.more[:0]
}

func (l *spanList) add(s span) {
	if l.n < len(l.small) {
		l.small[l.n] = s
	} else {
		l.more = append(l.more, s)
	}
	l.n++
}

func (l *spanList) at(i int) span {
	if i < len(l.small) {
		return l.small[i]
	}
	return l.more[i-len(l.small)]
}

// Decoder decodes events, reusing its scratch buffers from one call to the
// next so that steady-state decoding allocates only what the returned Event
// keeps. The zero Decoder uses DefaultLimits. A Decoder is not safe for
// concurrent use; keep one per worker goroutine.
type Decoder struct {
	lim Limits

	data []byte
	pos  int

	arena   []byte // unescaped strings of the current event
	scratch []byte // unescaped keys and time strings
	strs    [numFields]span
	seen    uint32 // bit per known field
	scope   spanList
	attrs   spanList // key, value, key, value, …

	ints     [4]int64 // indexed by intSlot
	time     time.Time
	unknown  []byte // compact members of unknown fields, without braces
	ukeys    []byte // unescaped unknown keys, for duplicate detection
	ukeyEnds []int32

	// oneShot is set by the package-level Decode: the arena was allocated
	// for this one event and becomes its string block without a copy.
	oneShot bool
	attrsOK bool // set by finish: attrs are within limits
}

// NewDecoder returns a Decoder applying lim; nil means DefaultLimits and zero
// fields of lim take their default.
func NewDecoder(lim *Limits) *Decoder {
	return &Decoder{lim: resolveLimits(lim)}
}

// Decode decodes one event from data into ev, normalises it and validates it
// (see Event.Validate) with lim (nil means DefaultLimits).
//
// Any error means the event is invalid and will stay invalid: it is either a
// *DecodeError (not acceptable JSON for the contract; ev is left unchanged) or
// a *ValidationError listing every problem (ev then holds the decoded event,
// so the caller can log its id). The error text is suitable as a dead-letter
// reason. ev is overwritten as a whole, never merged. The strings in ev never
// alias data.
//
// Decode keeps its working state on the stack and allocates only what ev
// keeps (one block for all strings, sized to data, plus task_scope, attrs
// and Unknown when present). A Decoder, kept per worker, also reuses its
// scratch space for escaped keys and unknown fields and sizes the string
// block exactly.
func Decode(data []byte, ev *Event, lim *Limits) error {
	d := oneShot(lim, len(data)) // stays on the stack
	return d.Decode(data, ev)
}

// oneShot returns a Decoder for a single event of n bytes. Unescaping never
// makes a string longer, so its arena of n bytes never grows, and it becomes
// the event's strings without a copy (see finish).
func oneShot(lim *Limits, n int) Decoder {
	return Decoder{lim: resolveLimits(lim), oneShot: true, arena: make([]byte, 0, n)}
}

// Decode decodes, normalises and validates one event; see the package-level
// Decode for the contract.
func (d *Decoder) Decode(data []byte, ev *Event) error {
	if err := d.decode(data, ev); err != nil {
		return err
	}
	return ev.validate(d.lim, true, d.attrsOK)
}

// UnmarshalJSON decodes and normalises an event with DefaultLimits, like
// Decode but without Validate: encoding/json callers that need a valid event
// must call Validate themselves. Unlike encoding/json's default, it replaces
// the whole event rather than merging into it.
func (e *Event) UnmarshalJSON(data []byte) error {
	d := oneShot(nil, len(data))
	return d.decode(data, e)
}

// decode parses and normalises without validating.
func (d *Decoder) decode(data []byte, ev *Event) error {
	if d.lim.MaxEventBytes == 0 {
		d.lim = resolveLimits(&d.lim)
	}
	err := d.parse(data)
	if err == nil {
		err = d.finish(ev)
	}
	d.data = nil // do not keep the caller's buffer alive
	return err
}

func (d *Decoder) reset(data []byte) {
	d.data = data
	d.pos = 0
	d.arena = d.arena[:0]
	d.strs = [numFields]span{}
	d.seen = 0
	d.scope.reset()
	d.attrs.reset()
	d.ints = [4]int64{}
	d.time = time.Time{}
	d.unknown = d.unknown[:0]
	d.ukeys = d.ukeys[:0]
	d.ukeyEnds = d.ukeyEnds[:0]
}

// errAt builds the error for a problem at byte offset off.
func (d *Decoder) errAt(off int, path, reason string) error {
	return &DecodeError{Offset: off, Path: path, Reason: reason}
}

// errUnexpected reports the byte at d.pos as unexpected, or the end of input.
func (d *Decoder) errUnexpected(path, want string) error {
	if d.pos >= len(d.data) {
		return d.errAt(d.pos, path, "unexpected end of input, expected "+want)
	}
	return d.errAt(d.pos, path, fmt.Sprintf("invalid character %s, expected %s", quoteByte(d.data[d.pos]), want))
}

func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

func (d *Decoder) skipWS() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the byte at d.pos, or 0 at the end of input (0 is never valid
// JSON at any position where peek is used, so it reads as "unexpected").
func (d *Decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// parse scans the whole event object into the decoder's state.
func (d *Decoder) parse(data []byte) error {
	d.reset(data)
	if len(data) > d.lim.MaxEventBytes {
		return d.errAt(0, "", fmt.Sprintf("event is %d bytes, larger than the %d-byte limit", len(data), d.lim.MaxEventBytes))
	}
	d.skipWS()
	if d.peek() != '{' {
		return d.errUnexpected("", "a JSON object")
	}
	d.pos++
	d.skipWS()
	if d.peek() == '}' {
		d.pos++
	} else {
		for {
			if d.peek() != '"' {
				return d.errUnexpected("", "a field name")
			}
			keyStart := d.pos
			key, err := d.key()
			if err != nil {
				return err
			}
			keyEnd := d.pos
			d.skipWS()
			if d.peek() != ':' {
				return d.errUnexpected("", "':' after a field name")
			}
			d.pos++
			d.skipWS()
			if f := lookupField(key); f == fieldUnknown {
				err = d.unknownField(d.data[keyStart:keyEnd], key)
			} else {
				if d.seen&(1<<f) != 0 {
					return d.errAt(keyStart, fieldNames[f], "duplicate field")
				}
				d.seen |= 1 << f
				err = d.knownField(f)
			}
			if err != nil {
				return err
			}
			d.skipWS()
			c := d.peek()
			if c == ',' {
				d.pos++
				d.skipWS()
				continue
			}
			if c == '}' {
				d.pos++
				break
			}
			return d.errUnexpected("", "',' or '}' after a field value")
		}
	}
	d.skipWS()
	if d.pos != len(d.data) {
		return d.errAt(d.pos, "", "unexpected data after the event object")
	}
	return nil
}

// key scans an object key at d.pos (a '"'). Keys without escapes or
// non-ASCII bytes are returned as a slice of the input; others are unescaped
// into d.scratch.
func (d *Decoder) key() ([]byte, error) {
	start := d.pos + 1
	i := plainRun(d.data, start)
	if i < len(d.data) && d.data[i] == '"' {
		d.pos = i + 1
		return d.data[start:i], nil
	}
	var err error
	d.scratch, err = d.scanString(d.scratch[:0], true, "")
	return d.scratch, err
}

// scanString scans the JSON string at d.pos (a '"'), validating escapes and UTF-8,
// and appends its unescaped content to dst when keep is set.
func (d *Decoder) scanString(dst []byte, keep bool, path string) ([]byte, error) {
	data := d.data
	i := d.pos + 1
	start := i
	for {
		i = plainRun(data, i)
		if i >= len(data) {
			return dst, d.errAt(d.pos, path, "unterminated string")
		}
		switch c := data[i]; {
		case c == '"':
			if keep {
				dst = append(dst, data[start:i]...)
			}
			d.pos = i + 1
			return dst, nil
		case c == '\\':
			if keep {
				dst = append(dst, data[start:i]...)
			}
			var err error
			i, dst, err = d.escape(i, dst, keep, path)
			if err != nil {
				return dst, err
			}
			start = i
		case c < 0x20:
			return dst, d.errAt(i, path, fmt.Sprintf("control character %s in string (escape it)", quoteByte(c)))
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return dst, d.errAt(i, path, "invalid UTF-8 in string")
			}
			i += size
		}
	}
}

// escape decodes the escape sequence at data[i] (a '\\') and returns the
// offset just after it.
func (d *Decoder) escape(i int, dst []byte, keep bool, path string) (int, []byte, error) {
	data := d.data
	if i+1 >= len(data) {
		return i, dst, d.errAt(i, path, "unterminated string")
	}
	var c byte
	switch data[i+1] {
	case '"':
		c = '"'
	case '\\':
		c = '\\'
	case '/':
		c = '/'
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		r, ok := hex4(data, i+2)
		if !ok {
			return i, dst, d.errAt(i, path, `invalid \u escape (want four hex digits)`)
		}
		next := i + 6
		if r >= 0xD800 && r < 0xE000 { // UTF-16 surrogate
			if r >= 0xDC00 {
				return i, dst, d.errAt(i, path, `invalid \u escape: unpaired low surrogate`)
			}
			var lo rune
			if next+1 < len(data) && data[next] == '\\' && data[next+1] == 'u' {
				lo, ok = hex4(data, next+2)
			} else {
				ok = false
			}
			if !ok || lo < 0xDC00 || lo >= 0xE000 {
				return i, dst, d.errAt(i, path, `invalid \u escape: high surrogate not followed by a low surrogate`)
			}
			r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
			next += 6
		}
		if keep {
			dst = utf8.AppendRune(dst, r)
		}
		return next, dst, nil
	default:
		return i, dst, d.errAt(i, path, "invalid escape "+quoteByte(data[i+1])+" in string")
	}
	if keep {
		dst = append(dst, c)
	}
	return i + 2, dst, nil
}

// hex4 decodes four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number scans a JSON number at d.pos and reports whether it is an integer
// (no fraction, no exponent).
func (d *Decoder) number(path string) (num []byte, isInt bool, err error) {
	data := d.data
	start := d.pos
	i := start
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		d.pos = i
		return nil, false, d.errUnexpected(path, "a digit")
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			d.pos = i
			return nil, false, d.errUnexpected(path, "a digit after the decimal point")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i] < '0' || data[i] > '9' {
			d.pos = i
			return nil, false, d.errUnexpected(path, "a digit in the exponent")
		}
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	}
	d.pos = i
	return data[start:i], isInt, nil
}

// parseInt converts a JSON integer (as validated by number) to int64.
func parseInt(num []byte) (int64, bool) {
	neg := len(num) > 0 && num[0] == '-'
	if neg {
		num = num[1:]
	}
	if len(num) == 0 || len(num) > 19 { // 19 digits always fit in uint64
		return 0, false
	}
	var u uint64
	for _, c := range num {
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}

// literal consumes the literal lit (true, false or null) at d.pos.
func (d *Decoder) literal(lit, path string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.errUnexpected(path, "a JSON value")
	}
	d.pos += len(lit)
	return nil
}

// typeName names the JSON type that starts with c, for type errors.
func typeName(c byte) string {
	switch {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	}
	return ""
}

// typeError reports a value of the wrong JSON type at d.pos, or a syntax
// error when the value does not even start like JSON.
func (d *Decoder) typeError(path, want string) error {
	got := typeName(d.peek())
	if got == "" {
		return d.errUnexpected(path, want)
	}
	return d.errAt(d.pos, path, "expected "+want+", got "+got)
}

// knownField decodes the value of a known field at d.pos. A null value leaves
// the field absent (as encoding/json does).
func (d *Decoder) knownField(f field) error {
	name := fieldNames[f]
	c := d.peek()
	if c == 'n' {
		return d.literal("null", name)
	}
	switch fieldKinds[f] {
	case kindString:
		if c != '"' {
			return d.typeError(name, "a string")
		}
		off := len(d.arena)
		var err error
		d.arena, err = d.scanString(d.arena, true, name)
		d.strs[f] = span{int32(off), int32(len(d.arena))}
		return err

	case kindInt:
		if c != '-' && (c < '0' || c > '9') {
			return d.typeError(name, "an integer")
		}
		start := d.pos
		num, isInt, err := d.number(name)
		if err != nil {
			return err
		}
		if !isInt {
			return d.errAt(start, name, "expected an integer, got "+string(num))
		}
		v, ok := parseInt(num)
		if !ok || (f == fieldDelegationDepth && int64(int(v)) != v) {
			return d.errAt(start, name, "integer "+string(num)+" out of range")
		}
		d.ints[intSlot(f)] = v
		return nil

	case kindTime:
		return d.timeValue(name)

	case kindStringList:
		return d.stringList(name)

	case kindStringMap:
		return d.stringMap(name)
	}
	return nil
}

// timeValue decodes "time": an RFC 3339 string or integer unix milliseconds.
func (d *Decoder) timeValue(name string) error {
	start := d.pos
	switch c := d.peek(); {
	case c == '"':
		var s []byte
		if i := plainRun(d.data, start+1); i < len(d.data) && d.data[i] == '"' {
			s = d.data[start+1 : i] // no escapes: parse in place
			d.pos = i + 1
		} else {
			var err error
			d.scratch, err = d.scanString(d.scratch[:0], true, name)
			if err != nil {
				return err
			}
			s = d.scratch
		}
		t, ok := parseRFC3339(s)
		if !ok {
			if len(s) > 40 {
				s = s[:40]
			}
			return d.errAt(start, name, strconv.Quote(string(s))+" is not an RFC 3339 time like 2024-05-01T12:34:56.789Z")
		}
		d.time = t
	case c == '-' || (c >= '0' && c <= '9'):
		num, isInt, err := d.number(name)
		if err != nil {
			return err
		}
		ms, ok := parseInt(num)
		if !isInt || !ok {
			return d.errAt(start, name, "expected integer unix milliseconds, got "+string(num))
		}
		d.time = time.UnixMilli(ms).UTC()
	default:
		return d.typeError(name, "an RFC 3339 string or integer unix milliseconds")
	}
	return nil
}

// stringList decodes task_scope.
func (d *Decoder) stringList(name string) error {
	if d.peek() != '[' {
		return d.typeError(name, "an array of strings")
	}
	d.pos++
	d.skipWS()
	if d.peek() == ']' {
		d.pos++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.typeError(name+"["+strconv.Itoa(d.scope.n)+"]", "a string")
		}
		off := len(d.arena)
		var err error
		d.arena, err = d.scanString(d.arena, true, name)
		if err != nil {
			return err
		}
		d.scope.add(span{int32(off), int32(len(d.arena))})
		d.skipWS()
		switch d.peek() {
		case ',':
			d.pos++
			d.skipWS()
		case ']':
			d.pos++
			return nil
		default:
			return d.errUnexpected(name, "',' or ']'")
		}
	}
}

// stringMap decodes attrs. Duplicate keys are detected in finish.
func (d *Decoder) stringMap(name string) error {
	if d.peek() != '{' {
		return d.typeError(name, "an object of strings")
	}
	d.pos++
	d.skipWS()
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.errUnexpected(name, "a key")
		}
		koff := len(d.arena)
		var err error
		d.arena, err = d.scanString(d.arena, true, name)
		if err != nil {
			return err
		}
		kend := len(d.arena)
		d.skipWS()
		if d.peek() != ':' {
			return d.errUnexpected(name, "':' after a key")
		}
		d.pos++
		d.skipWS()
		if d.peek() != '"' {
			return d.typeError(name+"["+strconv.Quote(string(d.arena[koff:kend]))+"]", "a string")
		}
		voff := len(d.arena)
		d.arena, err = d.scanString(d.arena, true, name)
		if err != nil {
			return err
		}
		d.attrs.add(span{int32(koff), int32(kend)})
		d.attrs.add(span{int32(voff), int32(len(d.arena))})
		d.skipWS()
		switch d.peek() {
		case ',':
			d.pos++
			d.skipWS()
		case '}':
			d.pos++
			return nil
		default:
			return d.errUnexpected(name, "',' or '}'")
		}
	}
}

// unknownField keeps an unknown top-level field: rawKey is the key as it
// appeared in the input (quotes and escapes included), key its unescaped form.
func (d *Decoder) unknownField(rawKey, key []byte) error {
	if len(d.ukeyEnds) >= d.lim.MaxUnknownFields {
		return d.errAt(d.pos, keyPath(key), fmt.Sprintf("more than %d unknown fields", d.lim.MaxUnknownFields))
	}
	prev := int32(0)
	for _, end := range d.ukeyEnds {
		if string(d.ukeys[prev:end]) == string(key) {
			return d.errAt(d.pos, keyPath(key), "duplicate field")
		}
		prev = end
	}
	d.ukeys = append(d.ukeys, key...)
	d.ukeyEnds = append(d.ukeyEnds, int32(len(d.ukeys)))
	if len(d.unknown) > 0 {
		d.unknown = append(d.unknown, ',')
	}
	d.unknown = append(d.unknown, rawKey...)
	d.unknown = append(d.unknown, ':')
	if err := d.skipValue(2); err != nil {
		if de, ok := err.(*DecodeError); ok {
			de.Path = keyPath(key) // built only now: most events have no errors
		}
		return err
	}
	return nil
}

// keyPath is the error path of an unknown top-level field.
func keyPath(key []byte) string { return strconv.Quote(string(key)) }

// skipValue validates the value at d.pos and appends it, without insignificant
// whitespace, to d.unknown. depth is the depth the value would have if it is a
// container. Its errors have no path; unknownField adds it.
func (d *Decoder) skipValue(depth int) error {
	switch c := d.peek(); c {
	case '{', '[':
		if depth > d.lim.MaxDepth {
			return d.errAt(d.pos, "", fmt.Sprintf("nested deeper than %d levels", d.lim.MaxDepth))
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		d.unknown = append(d.unknown, c)
		d.pos++
		d.skipWS()
		if d.peek() == end {
			d.pos++
			d.unknown = append(d.unknown, end)
			return nil
		}
		for {
			if c == '{' {
				if d.peek() != '"' {
					return d.errUnexpected("", "an object key")
				}
				start := d.pos
				if _, err := d.scanString(nil, false, ""); err != nil {
					return err
				}
				d.unknown = append(d.unknown, d.data[start:d.pos]...)
				d.skipWS()
				if d.peek() != ':' {
					return d.errUnexpected("", "':' after an object key")
				}
				d.pos++
				d.unknown = append(d.unknown, ':')
				d.skipWS()
			}
			if err := d.skipValue(depth + 1); err != nil {
				return err
			}
			d.skipWS()
			switch d.peek() {
			case ',':
				d.pos++
				d.unknown = append(d.unknown, ',')
				d.skipWS()
			case end:
				d.pos++
				d.unknown = append(d.unknown, end)
				return nil
			default:
				return d.errUnexpected("", "',' or "+quoteByte(end))
			}
		}
	case '"':
		start := d.pos
		if _, err := d.scanString(nil, false, ""); err != nil {
			return err
		}
		d.unknown = append(d.unknown, d.data[start:d.pos]...)
	case 't':
		if err := d.literal("true", ""); err != nil {
			return err
		}
		d.unknown = append(d.unknown, "true"...)
	case 'f':
		if err := d.literal("false", ""); err != nil {
			return err
		}
		d.unknown = append(d.unknown, "false"...)
	case 'n':
		if err := d.literal("null", ""); err != nil {
			return err
		}
		d.unknown = append(d.unknown, "null"...)
	default:
		num, _, err := d.number("")
		if err != nil {
			return err
		}
		d.unknown = append(d.unknown, num...)
	}
	return nil
}

// finish builds the Event from the decoder's state; ev is only written when
// nothing can fail any more.
func (d *Decoder) finish(ev *Event) error {
	// Lower-case the enumerated values in the arena before it is frozen.
	for _, f := range [...]field{fieldSensitivity, fieldOutcome, fieldApproval} {
		sp := d.strs[f]
		lowerASCII(d.arena[sp.off:sp.end])
	}
	var s string
	switch {
	case len(d.arena) == 0:
	case d.oneShot:
		// The arena was allocated for this event alone and is dropped
		// below, so nothing can write to it any more: it can back the
		// strings directly.
		s = unsafe.String(unsafe.SliceData(d.arena), len(d.arena))
		d.arena = nil
	default:
		s = string(d.arena) // the one allocation for all strings of the event
	}
	sub := func(sp span) string { return s[sp.off:sp.end] }

	var attrs map[string]string
	d.attrsOK = d.attrs.n/2 <= d.lim.MaxAttrs
	if n := d.attrs.n / 2; n > 0 {
		attrs = make(map[string]string, n)
		maxLen := int32(d.lim.MaxStringLen)
		for i := 0; i+1 < d.attrs.n; i += 2 {
			ks, vs := d.attrs.at(i), d.attrs.at(i+1)
			if ks.end == ks.off || ks.end-ks.off > maxLen || vs.end-vs.off > maxLen {
				d.attrsOK = false
			}
			k := sub(ks)
			if _, dup := attrs[k]; dup {
				return &DecodeError{Offset: d.pos, Path: "attrs[" + strconv.Quote(k) + "]", Reason: "duplicate key"}
			}
			attrs[k] = sub(vs)
		}
	}
	var scope []string
	if d.scope.n > 0 {
		scope = make([]string, d.scope.n)
		for i := range scope {
			scope[i] = sub(d.scope.at(i))
		}
	}
	var unknown []byte
	if len(d.unknown) > 0 {
		unknown = make([]byte, 0, len(d.unknown)+2)
		unknown = append(unknown, '{')
		unknown = append(unknown, d.unknown...)
		unknown = append(unknown, '}')
	}

	rawAction := sub(d.strs[fieldAction])
	action := NormalizeAction(rawAction)
	actionRaw := sub(d.strs[fieldActionRaw])
	if actionRaw == "" && string(action) != rawAction {
		actionRaw = rawAction
	}

	*ev = Event{
		ID:              sub(d.strs[fieldID]),
		Time:            d.time,
		Tenant:          sub(d.strs[fieldTenant]),
		Agent:           sub(d.strs[fieldAgent]),
		Instance:        sub(d.strs[fieldInstance]),
		ParentAgent:     sub(d.strs[fieldParentAgent]),
		DelegationDepth: int(d.ints[intSlot(fieldDelegationDepth)]),
		Principal:       sub(d.strs[fieldPrincipal]),
		Session:         sub(d.strs[fieldSession]),
		Task:            sub(d.strs[fieldTask]),
		TaskScope:       scope,
		Tool:            sub(d.strs[fieldTool]),
		Action:          action,
		ActionRaw:       actionRaw,
		Resource:        sub(d.strs[fieldResource]),
		Destination:     sub(d.strs[fieldDestination]),
		BytesIn:         d.ints[intSlot(fieldBytesIn)],
		BytesOut:        d.ints[intSlot(fieldBytesOut)],
		Records:         d.ints[intSlot(fieldRecords)],
		Sensitivity:     sub(d.strs[fieldSensitivity]),
		Outcome:         sub(d.strs[fieldOutcome]),
		Approval:        sub(d.strs[fieldApproval]),
		Environment:     sub(d.strs[fieldEnvironment]),
		Credential:      sub(d.strs[fieldCredential]),
		Trace:           sub(d.strs[fieldTrace]),
		Attrs:           attrs,
		Unknown:         unknown,
	}
	return nil
}

func lowerASCII(b []byte) {
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
}
