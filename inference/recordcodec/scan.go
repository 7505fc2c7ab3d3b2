package recordcodec

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/infergate/infergate/internal/jsonscan"
)

// scanner is a small JSON reader for request records. It exists because the
// pipeline's hot path is "parse an array of numbers into []float32": with
// encoding/json that goes through reflection and []float64 (or any), which
// profiling showed to dominate the decode cost (docs/pipeline.md has the
// numbers). The scanner validates everything it reads, so a record either
// decodes completely or fails with the byte offset of the problem.
type scanner struct {
	b     []byte
	i     int
	depth int
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

var errSyntax = errors.New("invalid JSON")

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errSyntax, s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() { s.i = jsonscan.Space(s.b, s.i) }

// peek returns the next byte without consuming it, 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	s.ws()
	if s.peek() != c {
		return s.errorf("expected %q", c)
	}
	s.i++
	return nil
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > maxDepth {
		return s.errorf("nested more than %d levels", maxDepth)
	}
	s.i++
	return nil
}

// more is called after an element of an array or object: it consumes a comma
// (true: another element follows) or the closing bracket (false).
func (s *scanner) more(end byte) (bool, error) {
	s.ws()
	switch s.peek() {
	case ',':
		s.i++
		return true, nil
	case end:
		s.i++
		s.depth--
		return false, nil
	}
	return false, s.errorf("expected ',' or %q", end)
}

// empty consumes the closing bracket of an empty array or object.
func (s *scanner) empty(end byte) bool {
	s.ws()
	if s.peek() == end {
		s.i++
		s.depth--
		return true
	}
	return false
}

// str reads a string and returns its unescaped bytes; without escapes the
// result aliases the input.
func (s *scanner) str() ([]byte, error) {
	s.ws()
	if s.peek() != '"' {
		return nil, s.errorf("expected a string")
	}
	out, end, f := jsonscan.String(s.b, s.i)
	s.i = end
	switch f {
	case jsonscan.OK:
		if !utf8.Valid(out) {
			return nil, s.errorf("string is not valid UTF-8")
		}
		return out, nil
	case jsonscan.Control:
		return nil, s.errorf("control character in string")
	case jsonscan.BadEscape:
		return nil, s.errorf("invalid escape")
	case jsonscan.ShortHex:
		return nil, s.errorf("short \\u escape")
	case jsonscan.BadHex:
		return nil, s.errorf("invalid \\u escape")
	}
	return nil, s.errorf("unterminated string")
}

func isDigit(c byte) bool { return jsonscan.IsDigit(c) }

// number reads a number and returns its text.
func (s *scanner) number() ([]byte, error) {
	start := s.i
	end, f := jsonscan.Number(s.b, s.i)
	s.i = end
	if f != jsonscan.OK {
		return nil, s.errorf("invalid number")
	}
	return s.b[start:s.i], nil
}

// literal consumes one of true, false, null.
func (s *scanner) literal(lit string) bool {
	if jsonscan.Literal(s.b, s.i, lit) {
		s.i += len(lit)
		return true
	}
	return false
}

// skip reads and validates one value and returns its text.
func (s *scanner) skip() ([]byte, error) {
	s.ws()
	start := s.i
	switch c := s.peek(); {
	case c == '{':
		if err := s.enter(); err != nil {
			return nil, err
		}
		if !s.empty('}') {
			for {
				if _, err := s.str(); err != nil {
					return nil, err
				}
				if err := s.expect(':'); err != nil {
					return nil, err
				}
				if _, err := s.skip(); err != nil {
					return nil, err
				}
				more, err := s.more('}')
				if err != nil {
					return nil, err
				}
				if !more {
					break
				}
			}
		}
	case c == '[':
		if err := s.enter(); err != nil {
			return nil, err
		}
		if !s.empty(']') {
			for {
				if _, err := s.skip(); err != nil {
					return nil, err
				}
				more, err := s.more(']')
				if err != nil {
					return nil, err
				}
				if !more {
					break
				}
			}
		}
	case c == '"':
		if _, err := s.str(); err != nil {
			return nil, err
		}
	case c == '-' || isDigit(c):
		if _, err := s.number(); err != nil {
			return nil, err
		}
	case s.literal("true"), s.literal("false"), s.literal("null"):
	default:
		return nil, s.errorf("expected a value")
	}
	return s.b[start:s.i], nil
}

// isNull consumes a null if one is next.
func (s *scanner) isNull() bool {
	s.ws()
	return s.literal("null")
}

// pow10 are the powers of ten exactly representable as float64.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float reads a number and converts it to a float of the given bit size,
// correctly rounded as strconv.ParseFloat does. Most sensor readings have
// few digits and a small exponent, which this converts in a few
// instructions while scanning (one correctly rounded float64 multiply or
// divide, Clinger's fast path); anything else goes to strconv. ok is false
// when the value is out of range for the bit size.
func (s *scanner) float(bits int) (v float64, tok []byte, ok bool, err error) {
	start := s.i
	neg := false
	if s.peek() == '-' {
		neg = true
		s.i++
	}
	var mant uint64
	digits, exp := 0, 0
	fast := true
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		for ; s.i < len(s.b) && isDigit(s.b[s.i]); s.i++ {
			if digits < 19 {
				mant = mant*10 + uint64(s.b[s.i]-'0')
				digits++
			} else {
				fast = false
			}
		}
	default:
		return 0, nil, false, s.errorf("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if !isDigit(s.peek()) {
			return 0, nil, false, s.errorf("invalid number")
		}
		for ; s.i < len(s.b) && isDigit(s.b[s.i]); s.i++ {
			if mant == 0 && s.b[s.i] == '0' {
				exp-- // leading zeros of a fraction cost no precision
				continue
			}
			if digits < 19 {
				mant = mant*10 + uint64(s.b[s.i]-'0')
				digits++
				exp--
			} else {
				fast = false
			}
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		eneg := false
		if c := s.peek(); c == '+' || c == '-' {
			eneg = c == '-'
			s.i++
		}
		if !isDigit(s.peek()) {
			return 0, nil, false, s.errorf("invalid number")
		}
		e := 0
		for ; s.i < len(s.b) && isDigit(s.b[s.i]); s.i++ {
			if e < 10000 {
				e = e*10 + int(s.b[s.i]-'0')
			}
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	tok = s.b[start:s.i]
	if fast && mant <= 1<<53 {
		f := float64(mant)
		switch {
		case mant == 0:
			f = 0
		case exp == 0:
		case exp > 0 && exp <= 22:
			f *= pow10[exp]
		case exp < 0 && exp >= -22:
			f /= pow10[-exp]
		default:
			fast = false
		}
		if fast && neg {
			f = -f
		}
		if fast && bits == 64 {
			return f, tok, true, nil
		}
		// Rounding first to float64 and then to float32 is correct unless
		// the float64 is exactly halfway between two float32s; keep to
		// float32's normal range, where that is a check of the low bits.
		if a := math.Abs(f); fast && (a == 0 || (a >= 0x1p-126 && a <= math.MaxFloat32)) &&
			math.Float64bits(f)&(1<<29-1) != 1<<28 {
			return float64(float32(f)), tok, true, nil
		}
	}
	v, err = strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), bits)
	return v, tok, err == nil, nil
}

// skipStructure finds the end of one value by its brackets and strings
// only, without validating it. The envelope pass uses it for the tensor
// values, which the second pass reads (and validates) in full anyway.
func (s *scanner) skipStructure() ([]byte, error) {
	s.ws()
	start := s.i
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i = jsonscan.SkipString(s.b, s.i)
			if s.i >= len(s.b) {
				return nil, s.errorf("unterminated string")
			}
		case '[', '{':
			if depth++; depth > maxDepth {
				return nil, s.errorf("nested more than %d levels", maxDepth)
			}
		case ']', '}':
			if depth == 0 {
				return s.b[start:s.i], nil
			}
			if depth--; depth == 0 {
				s.i++
				return s.b[start:s.i], nil
			}
		case ',':
			if depth == 0 {
				return s.b[start:s.i], nil
			}
		}
		s.i++
	}
	if depth > 0 {
		return nil, s.errorf("unterminated value")
	}
	return s.b[start:s.i], nil
}
