// Package jsonscan holds the JSON token code that the project's two
// hand-written JSON readers share: the request-record codec
// (inference/recordcodec) and the model server's REST API
// (inference/modelserver/rest). Each reader keeps its own grammar on top
// (the REST API accepts NaN and Infinity, as TF Serving does) and its own
// error texts (REST mirrors TF Serving's), so the functions here report a
// Fault and where it is, not an error.
//
// The functions take the input and an index and return the index after
// what they read, so that a reader's loop keeps its position in a local
// variable and nothing here allocates unless a string has escapes.
package jsonscan

import (
	"unicode/utf16"
	"unicode/utf8"
)

// Fault is what is wrong with a token; the reader turns it into its own
// error text.
type Fault uint8

const (
	OK           Fault = iota
	Unterminated       // the input ends inside the string; at len(b)
	Control            // an unescaped control character in a string; at that byte
	BadEscape          // a backslash not followed by one of "\/bfnrtu; at the byte after the backslash (len(b) if none)
	ShortHex           // fewer than 4 bytes after \u; at the first of them
	BadHex             // a non-hex digit in the 4 bytes after \u; at the first of them
	NoDigits           // a number without digits before any fraction; where a digit was expected
	NoFraction         // a '.' without digits after it; where a digit was expected
	NoExponent         // an 'e' without digits after it (and its sign); where a digit was expected
)

// IsDigit reports whether c is an ASCII digit.
func IsDigit(c byte) bool { return c >= '0' && c <= '9' }

// Space returns the index of the first byte at or after i that is not JSON
// white space.
func Space(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// String reads the string whose opening quote is b[i]. It returns the
// string's bytes unescaped, aliasing b when there are no escapes, and the
// index after the closing quote; or a Fault and the index where it is. A
// \u escape of a lone surrogate becomes U+FFFD, as in encoding/json. The
// bytes are not checked to be UTF-8.
func String(b []byte, i int) (s []byte, end int, f Fault) {
	i++ // opening quote
	start := i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return b[start:i], i + 1, OK
		case c == '\\':
			return escaped(b, start, i)
		case c < 0x20:
			return nil, i, Control
		}
		i++
	}
	return nil, i, Unterminated
}

// escaped continues String from b[i], the first backslash.
func escaped(b []byte, start, i int) ([]byte, int, Fault) {
	out := append([]byte(nil), b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return out, i + 1, OK
		case c < 0x20:
			return nil, i, Control
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		i++ // backslash
		if i >= len(b) {
			return nil, i, BadEscape
		}
		e := b[i]
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			i++
			r, f := hex4(b, i)
			if f != OK {
				return nil, i, f
			}
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					if r2, f = hex4(b, i+2); f != OK {
						return nil, i + 2, f
					}
				}
				// Not a pair: the second escape, if any, stands alone.
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, i, BadEscape
		}
		i++
	}
	return nil, i, Unterminated
}

func hex4(b []byte, i int) (rune, Fault) {
	if i+4 > len(b) {
		return 0, ShortHex
	}
	var r rune
	for _, c := range b[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		default:
			return 0, BadHex
		}
	}
	return r, OK
}

// SkipString returns the index of the closing quote of the string whose
// opening quote is b[i], stepping over escaped bytes without checking them;
// len(b) or more if there is none.
func SkipString(b []byte, i int) int {
	for i++; i < len(b) && b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i
}

// Number reads a number by JSON's grammar from b[i] and returns the index
// after it, or a Fault and the index where it is. A leading 0 ends the
// integer part: for "01" the number is "0" and the reader decides what the
// "1" after it means.
func Number(b []byte, i int) (end int, f Fault) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && IsDigit(b[i]); i++ {
		}
	default:
		return i, NoDigits
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !IsDigit(b[i]) {
			return i, NoFraction
		}
		for i < len(b) && IsDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !IsDigit(b[i]) {
			return i, NoExponent
		}
		for i < len(b) && IsDigit(b[i]) {
			i++
		}
	}
	return i, OK
}

// Literal reports whether b[i:] starts with lit.
func Literal(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Bytes that are not UTF-8 are
// written as \ufffd, so the result is always valid JSON.
func AppendString[S ~string | ~[]byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := decodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func decodeRune[S ~string | ~[]byte](s S) (rune, int) {
	if b, ok := any(s).([]byte); ok {
		return utf8.DecodeRune(b)
	}
	return utf8.DecodeRuneInString(string(s))
}
