// Package recordcodec reads request records into tensors and writes result
// records: the JSON formats of docs/pipeline.md ("Requests", "Results"). It
// is the pipeline's hot path apart from batching and the model, kept on its
// own so it can be fuzzed and benchmarked alone. Errors carry the class
// (decode or validation) that the pipeline dead-letters them with.
package recordcodec

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unsafe"

	"github.com/infergate/infergate/inference/tensor"
)

// Form is which of the request shapes in docs/pipeline.md ("Requests") a record used.
type Form uint8

const (
	FormFeatures  Form = iota + 1 // {"features": [...]}: one row, batch dimension added
	FormInputs                    // {"inputs": {name: tensor}}: columnar, batch dimension included
	FormInstances                 // {"instances": [...]}: one element per row
)

// Envelope is a request record after the first pass: everything except the
// tensor values, which need the model's signature to be read into the right
// Go type (DecodeInputs). body is the raw text of the features/inputs/instances value.
type Envelope struct {
	ID         []byte // request_id as JSON text (a string with its quotes, or a number); nil if absent
	Model      string // "" if the request names none
	Version    int64
	Label      string
	Signature  string
	HasVersion bool
	Form       Form
	body       []byte
	// row is the short form's features read speculatively as a flat
	// float32 list while scanning the envelope (the common case: the
	// signature is then only checked, not re-read); nil if they are not one.
	row []float32
}

// Error classes, as docs/pipeline.md's table ("Errors") names them.
const (
	ClassDecode     = "decode"     // the record is not a well-formed request
	ClassValidation = "validation" // it is, but does not fit the model's signature
)

// Error is an error with its class attached, made where the class is known
// rather than guessed later. The pipeline uses it for its own classes too.
type Error struct {
	Class string
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func withClass(class string, err error) error { return &Error{Class: class, Err: err} }

func decodeErr(format string, args ...any) error {
	return withClass(ClassDecode, fmt.Errorf(format, args...))
}

func validationErr(format string, args ...any) error {
	return withClass(ClassValidation, fmt.Errorf(format, args...))
}

// ParseEnvelope reads a request record's JSON object. Every error is of class
// decode: the record is not a well-formed request. Unknown fields are ignored
// so producers can add their own.
func ParseEnvelope(b []byte) (Envelope, error) {
	var env Envelope
	s := scanner{b: b}
	s.ws()
	if s.peek() != '{' {
		return env, decodeErr("request is not a JSON object")
	}
	if err := s.enter(); err != nil {
		return env, withClass(ClassDecode, err)
	}
	if !s.empty('}') {
		for {
			k, err := s.str()
			if err != nil {
				return env, withClass(ClassDecode, err)
			}
			if err := s.expect(':'); err != nil {
				return env, withClass(ClassDecode, err)
			}
			if err := env.field(&s, k); err != nil {
				return env, err
			}
			more, err := s.more('}')
			if err != nil {
				return env, withClass(ClassDecode, err)
			}
			if !more {
				break
			}
		}
	}
	s.ws()
	if s.i != len(s.b) {
		return env, withClass(ClassDecode, s.errorf("data after the request object"))
	}
	if env.Form == 0 {
		return env, decodeErr(`request has none of "features", "inputs", "instances"`)
	}
	if env.HasVersion && env.Label != "" {
		return env, decodeErr(`request has both "version" and "version_label"`)
	}
	return env, nil
}

func (env *Envelope) field(s *scanner, k []byte) error {
	switch string(k) {
	case "request_id":
		s.ws()
		switch c := s.peek(); {
		case c == '"':
			start := s.i
			if _, err := s.str(); err != nil {
				return withClass(ClassDecode, err)
			}
			env.ID = s.b[start:s.i]
		case c == '-' || isDigit(c):
			n, err := s.number()
			if err != nil {
				return withClass(ClassDecode, err)
			}
			env.ID = n
		case s.isNull():
		default:
			return decodeErr(`"request_id" must be a string or a number`)
		}
		return nil
	case "model", "version_label", "signature_name":
		if s.isNull() {
			return nil
		}
		v, err := s.str()
		if err != nil {
			return decodeErr("%q must be a string: %w", k, err)
		}
		switch string(k) {
		case "model":
			env.Model = string(v)
		case "version_label":
			env.Label = string(v)
		default:
			env.Signature = string(v)
		}
		return nil
	case "version":
		if s.isNull() {
			return nil
		}
		var text []byte
		var err error
		if s.peek() == '"' { // TF Serving's REST API accepts versions as strings too
			text, err = s.str()
		} else {
			text, err = s.number()
		}
		if err != nil {
			return decodeErr(`"version" must be a number: %w`, err)
		}
		v, perr := strconv.ParseInt(string(text), 10, 64)
		if perr != nil || v < 0 {
			return decodeErr(`"version" must be a non-negative integer, got %s`, text)
		}
		env.Version, env.HasVersion = v, true
		return nil
	case "features", "inputs", "instances":
		f := FormFeatures
		switch string(k) {
		case "inputs":
			f = FormInputs
		case "instances":
			f = FormInstances
		}
		if env.Form != 0 && env.Form != f {
			return decodeErr(`request has more than one of "features", "inputs", "instances"`)
		}
		s.ws()
		start := s.i
		if f == FormFeatures {
			if row, end := floatRow(s.b, start, 16); row != nil {
				s.i = end
				env.Form, env.body, env.row = f, s.b[start:end], row
				return nil
			}
		}
		body, err := s.skipStructure()
		if err != nil {
			return withClass(ClassDecode, err)
		}
		env.Form, env.body, env.row = f, body, nil
		return nil
	}
	if _, err := s.skip(); err != nil {
		return withClass(ClassDecode, err)
	}
	return nil
}

// DecodeInputs reads the envelope's tensors with the signature's dtypes and
// checks them against it. It returns one tensor per signature input (in the
// signature's order) and the number of rows the request contributes to a
// batch.
func DecodeInputs(env *Envelope, si *Signature) ([]*tensor.Tensor, int64, error) {
	ins := make([]*tensor.Tensor, len(si.Sig.Inputs))
	switch env.Form {
	case FormFeatures:
		if si.Default < 0 {
			return nil, 0, validationErr("%s; send the full form with \"inputs\" or \"instances\"", si.DefaultErr)
		}
		if spec := si.Sig.Inputs[si.Default]; env.row != nil && spec.DType == tensor.Float && len(spec.Shape) == 2 {
			ins[si.Default] = &tensor.Tensor{DType: tensor.Float, Shape: []int64{1, int64(len(env.row))}, Data: env.row}
			break
		}
		t, err := parseTensorText(env.body, si.Sig.Inputs[si.Default].DType, 1)
		if err != nil {
			return nil, 0, fmt.Errorf("features: %w", err)
		}
		ins[si.Default] = t
	case FormInputs:
		if err := decodeColumnar(env.body, si, ins); err != nil {
			return nil, 0, err
		}
	case FormInstances:
		if err := decodeInstances(env.body, si, ins); err != nil {
			return nil, 0, err
		}
	}
	rows := int64(1)
	for i, t := range ins {
		spec := si.Sig.Inputs[i]
		if t == nil {
			return nil, 0, validationErr("input %q is missing", spec.Name)
		}
		if !tensor.Compatible(spec.Shape, t.Shape) {
			return nil, 0, validationErr("input %q: shape %s does not match the signature's %s",
				spec.Name, tensor.ShapeString(t.Shape), tensor.ShapeString(spec.Shape))
		}
		if si.Batchable {
			if len(t.Shape) == 0 {
				return nil, 0, validationErr("input %q has no batch dimension", spec.Name)
			}
			if i == 0 {
				rows = t.Shape[0]
			} else if t.Shape[0] != rows {
				return nil, 0, validationErr("inputs have different batch sizes (%d and %d)", rows, t.Shape[0])
			}
		}
	}
	if rows == 0 {
		return nil, 0, validationErr("request has no rows")
	}
	return ins, rows, nil
}

// floatRow reads a flat list of numbers starting at b[i] as float32s and
// returns them and the index after the list; nil if b[i:] does not start
// with such a list (or a number is out of float32's range), which the
// general parser then reads and reports errors in.
func floatRow(b []byte, i, hint int) ([]float32, int) {
	s := scanner{b: b, i: i}
	if s.peek() != '[' {
		return nil, 0
	}
	s.i++
	row := make([]float32, 0, hint)
	for {
		s.ws()
		f, _, ok, err := s.float(32)
		if err != nil || !ok {
			return nil, 0
		}
		row = append(row, float32(f))
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			continue
		case ']':
			return row, s.i + 1
		}
		return nil, 0
	}
}

// decodeColumnar reads {"inputs": {name: tensor, ...}} or, for a signature
// with one input, {"inputs": tensor}. Tensors include the batch dimension.
func decodeColumnar(body []byte, si *Signature, ins []*tensor.Tensor) error {
	s := scanner{b: body}
	s.ws()
	if s.peek() != '{' || isB64Object(body) {
		if si.Default < 0 {
			return validationErr("%s; name the inputs: {\"inputs\": {name: tensor}}", si.DefaultErr)
		}
		t, err := parseTensorText(body, si.Sig.Inputs[si.Default].DType, 0)
		if err != nil {
			return fmt.Errorf("inputs: %w", err)
		}
		ins[si.Default] = t
		return nil
	}
	if err := s.enter(); err != nil {
		return withClass(ClassDecode, err)
	}
	if s.empty('}') {
		return nil
	}
	for {
		k, err := s.str()
		if err != nil {
			return withClass(ClassDecode, err)
		}
		if err := s.expect(':'); err != nil {
			return withClass(ClassDecode, err)
		}
		j := si.inputIndex(k)
		if j < 0 {
			return validationErr("input %q is not in signature %q", k, si.Name)
		}
		if ins[j] != nil {
			return decodeErr("input %q appears twice", k)
		}
		t, err := parseTensor(&s, si.Sig.Inputs[j].DType, 0)
		if err != nil {
			return fmt.Errorf("input %q: %w", k, err)
		}
		ins[j] = t
		more, err := s.more('}')
		if err != nil {
			return withClass(ClassDecode, err)
		}
		if !more {
			return nil
		}
	}
}

// decodeInstances reads {"instances": [row, ...]} where a row is the value of
// the only input, or {name: value, ...} naming each input.
func decodeInstances(body []byte, si *Signature, ins []*tensor.Tensor) error {
	s := scanner{b: body}
	s.ws()
	if s.peek() != '[' {
		return decodeErr(`"instances" must be a list`)
	}
	if err := s.enter(); err != nil {
		return withClass(ClassDecode, err)
	}
	ps := make([]*tensorParser, len(ins))
	for j := range ps {
		ps[j] = newTensorParser(&s, si.Sig.Inputs[j].DType)
	}
	n := int64(0)
	if !s.empty(']') {
		seen := make([]bool, len(ins))
		for {
			s.ws()
			if s.peek() == '{' && !isB64Object(s.b[s.i:]) {
				clear(seen)
				if err := s.enter(); err != nil {
					return withClass(ClassDecode, err)
				}
				if !s.empty('}') {
					for {
						k, err := s.str()
						if err != nil {
							return withClass(ClassDecode, err)
						}
						if err := s.expect(':'); err != nil {
							return withClass(ClassDecode, err)
						}
						j := si.inputIndex(k)
						if j < 0 {
							return validationErr("instance %d: input %q is not in signature %q", n, k, si.Name)
						}
						if seen[j] {
							return decodeErr("instance %d: input %q appears twice", n, k)
						}
						seen[j] = true
						if err := ps[j].value(1); err != nil {
							return fmt.Errorf("instance %d: input %q: %w", n, k, err)
						}
						more, err := s.more('}')
						if err != nil {
							return withClass(ClassDecode, err)
						}
						if !more {
							break
						}
					}
				}
				for j, ok := range seen {
					if !ok {
						return validationErr("instance %d: input %q is missing", n, si.Sig.Inputs[j].Name)
					}
				}
			} else {
				if si.Default < 0 {
					return validationErr("%s; name the inputs in each instance", si.DefaultErr)
				}
				if len(ins) != 1 {
					return validationErr("signature %q has %d inputs; name them in each instance", si.Name, len(ins))
				}
				if err := ps[0].value(1); err != nil {
					return fmt.Errorf("instance %d: %w", n, err)
				}
			}
			n++
			more, err := s.more(']')
			if err != nil {
				return withClass(ClassDecode, err)
			}
			if !more {
				break
			}
		}
	}
	for j, p := range ps {
		t, err := p.finish(n)
		if err != nil {
			return fmt.Errorf("input %q: %w", si.Sig.Inputs[j].Name, err)
		}
		ins[j] = t
	}
	return nil
}

// isB64Object reports whether b starts with {"b64": ...}, TF Serving's way of
// sending binary strings, which is a value and not a map of inputs.
func isB64Object(b []byte) bool {
	s := scanner{b: b}
	s.ws()
	if s.peek() != '{' {
		return false
	}
	s.i++
	k, err := s.str()
	return err == nil && string(k) == "b64"
}

// parseTensorText reads one nested-list tensor that must fill text. lead
// dimensions of size 1 are prepended (the batch dimension of the short form).
func parseTensorText(text []byte, dt tensor.DType, lead int) (*tensor.Tensor, error) {
	s := scanner{b: text}
	t, err := parseTensor(&s, dt, lead)
	if err != nil {
		return nil, err
	}
	s.ws()
	if s.i != len(s.b) {
		return nil, withClass(ClassDecode, s.errorf("data after the tensor"))
	}
	return t, nil
}

func parseTensor(s *scanner, dt tensor.DType, lead int) (*tensor.Tensor, error) {
	p := newTensorParser(s, dt)
	if p == nil {
		return nil, validationErr("dtype %s is not supported", dt)
	}
	if err := p.value(0); err != nil {
		return nil, err
	}
	t, err := p.finish(-1)
	if err != nil {
		return nil, err
	}
	if lead > 0 {
		shape := make([]int64, 0, len(t.Shape)+lead)
		for range lead {
			shape = append(shape, 1)
		}
		t.Shape = append(shape, t.Shape...)
	}
	return t, nil
}

// tensorParser reads nested lists of one dtype, checking they are
// rectangular, and appends the values to its column, a flat slice of the Go
// type of the dtype. It is used once per tensor, or once per input across all
// instances (instances are then depth 0 and each instance's value starts at
// depth 1).
type tensorParser struct {
	s     *scanner
	dt    tensor.DType
	shape []int64 // per depth; -1 until the first list at that depth closes
	rank  int     // depth of the scalars; -1 until the first scalar or empty list
	col   column
}

// newTensorParser returns nil for a dtype infergate cannot hold. It is the
// one place that maps a dtype to its column.
func newTensorParser(s *scanner, dt tensor.DType) *tensorParser {
	var col column
	switch dt {
	case tensor.Float:
		col = &floatColumn[float32]{}
	case tensor.Half:
		col = &floatColumn[float32]{half: true}
	case tensor.Double:
		col = &floatColumn[float64]{}
	case tensor.Int32:
		col = &intColumn[int32]{}
	case tensor.Int64:
		col = &intColumn[int64]{}
	case tensor.Int16:
		col = &intColumn[int16]{}
	case tensor.Int8:
		col = &intColumn[int8]{}
	case tensor.Uint8:
		col = &intColumn[uint8]{}
	case tensor.Bool:
		col = &boolColumn{}
	case tensor.String:
		col = &stringColumn{}
	default:
		return nil
	}
	return &tensorParser{s: s, dt: dt, rank: -1, col: col}
}

// column holds the values of one tensor as they are read, in the Go type of
// its dtype, and knows how that dtype is written in JSON.
type column interface {
	// scalar reads one JSON value of the dtype.
	scalar(p *tensorParser) error
	// data is the values as tensor.Tensor.Data.
	data() any
}

// values are a column's values.
type values[T any] []T

// data is never nil: a tensor of no values holds an empty slice.
func (v values[T]) data() any {
	if v == nil {
		return []T{}
	}
	return []T(v)
}

func raggedErr(format string, args ...any) error {
	return withClass(ClassDecode, fmt.Errorf("not a rectangular tensor: "+format, args...))
}

func (p *tensorParser) value(depth int) error {
	s := p.s
	s.ws()
	if s.peek() != '[' {
		if p.rank < 0 {
			p.rank = depth
		} else if depth != p.rank {
			return raggedErr("a value where a list was expected")
		}
		return p.col.scalar(p)
	}
	if p.rank >= 0 && depth >= p.rank {
		return raggedErr("a list where a value was expected")
	}
	if err := s.enter(); err != nil {
		return withClass(ClassDecode, err)
	}
	for len(p.shape) <= depth {
		p.shape = append(p.shape, -1)
	}
	n := int64(0)
	if s.empty(']') {
		if p.rank < 0 {
			p.rank = depth + 1
		} else if p.rank != depth+1 {
			return raggedErr("an empty list where values were expected")
		}
	} else {
		for {
			if err := p.value(depth + 1); err != nil {
				return err
			}
			n++
			more, err := s.more(']')
			if err != nil {
				return withClass(ClassDecode, err)
			}
			if !more {
				break
			}
		}
	}
	switch p.shape[depth] {
	case -1:
		p.shape[depth] = n
	case n:
	default:
		return raggedErr("lists of length %d and %d at depth %d", p.shape[depth], n, depth)
	}
	return nil
}

// finish returns the tensor read so far. rows >= 0 is the number of
// instances, the size of depth 0, which has no list of its own.
func (p *tensorParser) finish(rows int64) (*tensor.Tensor, error) {
	if rows >= 0 {
		if len(p.shape) == 0 {
			p.shape = append(p.shape, rows)
		}
		p.shape[0] = rows
		if p.rank < 0 {
			p.rank = 1
		}
	}
	if p.rank < 0 {
		p.rank = 0
	}
	if len(p.shape) > p.rank {
		p.shape = p.shape[:p.rank]
	}
	for len(p.shape) < p.rank { // only after an empty list of instances
		p.shape = append(p.shape, 0)
	}
	t := &tensor.Tensor{DType: p.dt, Shape: p.shape, Data: p.col.data()}
	if err := t.Validate(); err != nil {
		return nil, raggedErr("%v", err)
	}
	return t, nil
}

// numberNext reports whether a JSON number comes next; any other value is a
// mismatch for a numeric dtype.
func (p *tensorParser) numberNext() bool {
	c := p.s.peek()
	return c == '-' || isDigit(c)
}

// floatColumn holds DT_FLOAT, DT_DOUBLE, and DT_HALF as float32 values
// rounded to the nearest half.
type floatColumn[T float32 | float64] struct {
	values[T]
	half bool // DT_HALF: each value must fit a half
}

func (c *floatColumn[T]) scalar(p *tensorParser) error {
	if !p.numberNext() {
		return p.mismatch()
	}
	f, tok, ok, err := p.s.float(8 * int(unsafe.Sizeof(T(0))))
	if err != nil {
		return withClass(ClassDecode, err)
	}
	if !ok {
		return validationErr("%s is out of range for %s", tok, p.dt)
	}
	v := T(f)
	if c.half {
		h := tensor.HalfFromBits(tensor.HalfBits(float32(f)))
		if math.IsInf(float64(h), 0) && !math.IsInf(f, 0) {
			return validationErr("%s is out of range for %s", tok, p.dt)
		}
		v = T(h)
	}
	c.values = append(c.values, v)
	return nil
}

// intColumn holds the integer dtypes; a value must fit T.
type intColumn[T int8 | int16 | int32 | int64 | uint8] struct{ values[T] }

func (c *intColumn[T]) scalar(p *tensorParser) error {
	if !p.numberNext() {
		return p.mismatch()
	}
	tok, err := p.s.number()
	if err != nil {
		return withClass(ClassDecode, err)
	}
	text := unsafe.String(unsafe.SliceData(tok), len(tok)) // strconv does not keep it
	v, err := parseInt(text, p.dt)
	if err != nil {
		return err
	}
	if int64(T(v)) != v {
		return validationErr("%s is out of range for %s", text, p.dt)
	}
	c.values = append(c.values, T(v))
	return nil
}

type boolColumn struct{ values[bool] }

func (c *boolColumn) scalar(p *tensorParser) error {
	switch {
	case p.s.literal("true"):
		c.values = append(c.values, true)
	case p.s.literal("false"):
		c.values = append(c.values, false)
	default:
		return p.mismatch()
	}
	return nil
}

// parseInt reads an integer (the column checks it fits its dtype); 3.0 is
// accepted as 3 because many producers serialise every number as a float.
func parseInt(text string, dt tensor.DType) (int64, error) {
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, validationErr("%s is out of range for %s", text, dt)
		}
		f, ferr := strconv.ParseFloat(text, 64)
		if ferr != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
			return 0, validationErr("%s is not an integer for %s", text, dt)
		}
		v = int64(f)
	}
	return v, nil
}

// stringColumn holds DT_STRING: a JSON string, or {"b64": "..."} for bytes.
type stringColumn struct{ values[[]byte] }

func (c *stringColumn) scalar(p *tensorParser) error {
	s := p.s
	switch s.peek() {
	case '"':
		v, err := s.str()
		if err != nil {
			return withClass(ClassDecode, err)
		}
		c.values = append(c.values, append([]byte(nil), v...))
		return nil
	case '{':
		if !isB64Object(s.b[s.i:]) {
			return p.mismatch()
		}
		if err := s.enter(); err != nil {
			return withClass(ClassDecode, err)
		}
		if _, err := s.str(); err != nil {
			return withClass(ClassDecode, err)
		}
		if err := s.expect(':'); err != nil {
			return withClass(ClassDecode, err)
		}
		v, err := s.str()
		if err != nil {
			return decodeErr(`"b64" must be a string: %w`, err)
		}
		raw, err := base64.StdEncoding.DecodeString(string(v))
		if err != nil {
			return decodeErr(`"b64" is not base64: %w`, err)
		}
		if more, err := s.more('}'); err != nil || more {
			return decodeErr(`a {"b64": ...} value must have only the "b64" field`)
		}
		c.values = append(c.values, raw)
		return nil
	}
	return p.mismatch()
}

// mismatch reports a value whose JSON type cannot hold the input's dtype:
// the request is well-formed JSON but does not fit the signature.
func (p *tensorParser) mismatch() error {
	s := p.s
	start := s.i
	v, err := s.skip()
	if err != nil {
		return withClass(ClassDecode, err)
	}
	if len(v) > 32 {
		v = append(v[:29:29], "..."...)
	}
	return validationErr("value %s at byte %d does not fit dtype %s", v, start, p.dt)
}
