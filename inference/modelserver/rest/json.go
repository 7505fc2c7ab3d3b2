package rest

import (
	"fmt"

	"github.com/infergate/infergate/internal/jsonscan"
)

// TF Serving parses request bodies with rapidjson's NaN/Infinity extension,
// so Python's json.dumps(float("nan")) output is a valid request there.
// encoding/json rejects those tokens, hence this small parser. It also keeps
// numbers as their literal text, so int64 values and float32 values convert
// exactly once, to the dtype the signature asks for.

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber // raw holds the literal, including NaN/Infinity/-Infinity
	jString // raw holds the decoded bytes
	jArray
	jObject // keys[i] names elems[i]
)

func (k jkind) String() string {
	return [...]string{"null", "bool", "number", "string", "list", "object"}[k]
}

type jvalue struct {
	kind  jkind
	b     bool
	raw   []byte
	elems []jvalue
	keys  []string
}

// member returns the value of key in an object, or nil.
func (v *jvalue) member(key string) *jvalue {
	for i, k := range v.keys {
		if k == key {
			return &v.elems[i]
		}
	}
	return nil
}

// b64 returns the base64 text of a {"b64": "..."} object, TF's way of
// sending binary strings.
func (v *jvalue) b64() ([]byte, bool) {
	if v.kind == jObject && len(v.keys) == 1 && v.keys[0] == "b64" && v.elems[0].kind == jString {
		return v.elems[0].raw, true
	}
	return nil, false
}

// maxDepth bounds nesting so a body of "[[[[..." cannot exhaust the stack.
const maxDepth = 128

type jsonError struct {
	msg string
	off int
}

func (e *jsonError) Error() string {
	return fmt.Sprintf("JSON Parse error: %s at offset: %d", e.msg, e.off)
}

type parser struct {
	b     []byte
	i     int
	depth int
	// stack and keys hold the members of the lists and objects being
	// parsed; each list or object gets one exactly sized slice when it
	// closes, instead of growing its own by appending.
	stack []jvalue
	keys  []string
}

// pop moves the values pushed since mark into a new slice.
func (p *parser) pop(mark int) []jvalue {
	elems := make([]jvalue, len(p.stack)-mark)
	copy(elems, p.stack[mark:])
	clear(p.stack[mark:]) // drop references for the GC
	p.stack = p.stack[:mark]
	return elems
}

// parseJSON parses one JSON document. String and number values may alias b.
func parseJSON(b []byte) (jvalue, error) {
	p := parser{b: b}
	p.ws()
	v, err := p.value()
	if err != nil {
		return jvalue{}, err
	}
	p.ws()
	if p.i != len(p.b) {
		return jvalue{}, p.err("The document root must not be followed by other values.")
	}
	return v, nil
}

func (p *parser) err(msg string) error { return &jsonError{msg: msg, off: p.i} }

func (p *parser) ws() { p.i = jsonscan.Space(p.b, p.i) }

func (p *parser) lit(s string) bool {
	if jsonscan.Literal(p.b, p.i, s) {
		p.i += len(s)
		return true
	}
	return false
}

func (p *parser) value() (jvalue, error) {
	if p.i >= len(p.b) {
		return jvalue{}, p.err("The document is empty or ends early.")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return jvalue{kind: jString, raw: s}, err
	case c == 't' && p.lit("true"):
		return jvalue{kind: jBool, b: true}, nil
	case c == 'f' && p.lit("false"):
		return jvalue{kind: jBool}, nil
	case c == 'n' && p.lit("null"):
		return jvalue{kind: jNull}, nil
	case c == '-' || c == 'N' || c == 'I' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return jvalue{}, p.err("Invalid value.")
}

func (p *parser) nest() error {
	p.depth++
	if p.depth > maxDepth {
		return p.err(fmt.Sprintf("Nesting deeper than %d.", maxDepth))
	}
	return nil
}

func (p *parser) array() (jvalue, error) {
	if err := p.nest(); err != nil {
		return jvalue{}, err
	}
	p.i++ // [
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return jvalue{kind: jArray, elems: []jvalue{}}, nil
	}
	mark := len(p.stack)
	for {
		p.ws()
		e, err := p.value()
		if err != nil {
			return jvalue{}, err
		}
		p.stack = append(p.stack, e)
		p.ws()
		if p.i >= len(p.b) {
			return jvalue{}, p.err("Missing a comma or ']' after an array element.")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return jvalue{kind: jArray, elems: p.pop(mark)}, nil
		default:
			return jvalue{}, p.err("Missing a comma or ']' after an array element.")
		}
	}
}

func (p *parser) object() (jvalue, error) {
	if err := p.nest(); err != nil {
		return jvalue{}, err
	}
	p.i++ // {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return jvalue{kind: jObject, elems: []jvalue{}, keys: []string{}}, nil
	}
	mark, kmark := len(p.stack), len(p.keys)
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return jvalue{}, p.err("Missing a name for object member.")
		}
		k, err := p.str()
		if err != nil {
			return jvalue{}, err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return jvalue{}, p.err("Missing a colon after a name of object member.")
		}
		p.i++
		p.ws()
		e, err := p.value()
		if err != nil {
			return jvalue{}, err
		}
		p.keys = append(p.keys, string(k))
		p.stack = append(p.stack, e)
		p.ws()
		if p.i >= len(p.b) {
			return jvalue{}, p.err("Missing a comma or '}' after an object member.")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			keys := append([]string(nil), p.keys[kmark:]...)
			p.keys = p.keys[:kmark]
			return jvalue{kind: jObject, elems: p.pop(mark), keys: keys}, nil
		default:
			return jvalue{}, p.err("Missing a comma or '}' after an object member.")
		}
	}
}

// number accepts JSON's number grammar plus NaN, Infinity, Inf and their
// negative forms, as rapidjson's kParseNanAndInfFlag does.
func (p *parser) number() (jvalue, error) {
	start := p.i
	if p.lit("NaN") || p.lit("Infinity") || p.lit("Inf") || p.lit("-Infinity") || p.lit("-Inf") {
		return jvalue{kind: jNumber, raw: p.b[start:p.i]}, nil
	}
	end, f := jsonscan.Number(p.b, p.i)
	p.i = end
	switch f {
	case jsonscan.NoDigits:
		return jvalue{}, p.err("Invalid value.")
	case jsonscan.NoFraction:
		return jvalue{}, p.err("Missing fraction part in number.")
	case jsonscan.NoExponent:
		return jvalue{}, p.err("Missing exponent in number.")
	}
	// jsonscan ends the number at a leading 0; rapidjson reads the digits
	// after it and then refuses them.
	if zero := start + btoi(p.b[start] == '-'); end == zero+1 && p.b[zero] == '0' && end < len(p.b) && jsonscan.IsDigit(p.b[end]) {
		for p.i < len(p.b) && jsonscan.IsDigit(p.b[p.i]) {
			p.i++
		}
		return jvalue{}, p.err("Leading zeros are not allowed.")
	}
	return jvalue{kind: jNumber, raw: p.b[start:p.i]}, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// str reads a string; without escapes it returns a subslice of the input.
func (p *parser) str() ([]byte, error) {
	s, end, f := jsonscan.String(p.b, p.i)
	p.i = end
	switch f {
	case jsonscan.OK:
		return s, nil
	case jsonscan.Control:
		return nil, p.err("Invalid encoding in string.")
	case jsonscan.BadEscape:
		if p.i < len(p.b) {
			p.i++ // rapidjson reports the offset after the escape character
			return nil, p.err("Invalid escape character in string.")
		}
	case jsonscan.ShortHex, jsonscan.BadHex:
		return nil, p.err("Incorrect hex digit after \\u escape in string.")
	}
	return nil, p.err("Missing a closing quotation mark in string.")
}

// countJSON counts the scalar values (object keys excluded) and the lists
// and objects of a JSON text without parsing or allocating, so a body can be
// refused before its parse tree is built. On malformed input the counts are
// only estimates; the parser reports the error.
func countJSON(b []byte) (scalars, containers int64) {
	inToken := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			inToken = false
			i = jsonscan.SkipString(b, i)
			// A string followed by ':' is an object key, not a value.
			j := i + 1
			for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r') {
				j++
			}
			if j >= len(b) || b[j] != ':' {
				scalars++
			}
		case '[', '{':
			inToken = false
			containers++
		case ',', ':', ']', '}', ' ', '\t', '\n', '\r':
			inToken = false
		default:
			if !inToken {
				scalars++
				inToken = true
			}
		}
	}
	return scalars, containers
}
