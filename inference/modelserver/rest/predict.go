package rest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/jsonscan"
)

// predictBody is a decoded :predict request body.
type predictBody struct {
	signature string // as sent; "" means the server's default
	row       bool   // "instances" (row format) rather than "inputs" (columnar)
	inputs    map[string]*tensor.Tensor
}

func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// signatureLookup returns the signature a request names ("" = default). It
// is called after the body parsed and before its values convert, because
// JSON numbers take their type from the signature's inputs.
type signatureLookup func(name string) (*model.Signature, error)

// decodePredict reads TF Serving's predict request body: an object with an
// optional "signature_name" and exactly one of "instances" (row format) or
// "inputs" (columnar format). Every error it makes is INVALID_ARGUMENT;
// lookup's errors pass through unchanged.
func decodePredict(body []byte, lookup signatureLookup) (*predictBody, error) {
	root, err := parseJSON(body)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	if root.kind != jObject {
		return nil, invalidf("JSON Value: %s Is not an object", root.kind)
	}
	req := &predictBody{}
	if sn := root.member("signature_name"); sn != nil {
		if sn.kind != jString {
			return nil, invalidf("'signature_name' key must be a string value, got %s", sn.kind)
		}
		req.signature = string(sn.raw)
	}
	instances, inputs := root.member("instances"), root.member("inputs")
	switch {
	case instances == nil && inputs == nil:
		return nil, invalidf("Missing 'inputs' or 'instances' key")
	case instances != nil && inputs != nil:
		return nil, invalidf("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
	}
	sig, err := lookup(req.signature)
	if err != nil {
		return nil, err
	}
	if instances != nil {
		req.row = true
		req.inputs, err = decodeInstances(instances, sig)
	} else {
		req.inputs, err = decodeInputs(inputs, sig)
	}
	if err != nil {
		return nil, err
	}
	return req, nil
}

// isNamed reports whether v is an object keyed by input names (as opposed
// to a value, which may itself be a {"b64": ...} object).
func isNamed(v *jvalue) bool {
	_, b64 := v.b64()
	return v.kind == jObject && !b64
}

func inputSpec(sig *model.Signature, name string) (model.TensorSpec, error) {
	if spec, ok := sig.Input(name); ok {
		return spec, nil
	}
	names := make([]string, len(sig.Inputs))
	for i, in := range sig.Inputs {
		names[i] = in.Name
	}
	return model.TensorSpec{}, invalidf("input size does not match signature: %q is not an input of the signature (inputs: %s)",
		name, strings.Join(names, ", "))
}

func soleInput(sig *model.Signature, key string) (model.TensorSpec, error) {
	if len(sig.Inputs) != 1 {
		return model.TensorSpec{}, invalidf("'%s' is a plain value/list, but expecting an object keyed by input name as %d input tensors are required by the signature",
			key, len(sig.Inputs))
	}
	return sig.Inputs[0], nil
}

// decodeInstances reads the row format: a list with one entry per example,
// either plain values (one input) or objects keyed by input name. An input's
// tensor is its rows stacked along a new first dimension.
func decodeInstances(v *jvalue, sig *model.Signature) (map[string]*tensor.Tensor, error) {
	if v.kind != jArray {
		return nil, invalidf("Expecting 'instances' to be an list/array, got %s", v.kind)
	}
	if len(v.elems) == 0 {
		return nil, invalidf("'instances' is an empty list")
	}
	if !isNamed(&v.elems[0]) {
		spec, err := soleInput(sig, "instances")
		if err != nil {
			return nil, err
		}
		t, err := buildTensor(spec.Name, v, spec.DType)
		if err != nil {
			return nil, err
		}
		return map[string]*tensor.Tensor{spec.Name: t}, nil
	}
	first := &v.elems[0]
	out := make(map[string]*tensor.Tensor, len(first.keys))
	column := make([]jvalue, len(v.elems))
	for _, name := range first.keys {
		spec, err := inputSpec(sig, name)
		if err != nil {
			return nil, err
		}
		if _, dup := out[name]; dup {
			return nil, invalidf("instance 0 names input %q twice", name)
		}
		for i := range v.elems {
			inst := &v.elems[i]
			if !isNamed(inst) {
				return nil, invalidf("instance %d is a %s, instance 0 is an object of inputs", i, inst.kind)
			}
			if len(inst.keys) != len(first.keys) {
				return nil, invalidf("instance %d has %d inputs, instance 0 has %d: every instance needs the same inputs", i, len(inst.keys), len(first.keys))
			}
			val := inst.member(name)
			if val == nil {
				return nil, invalidf("instance %d has no input %q, instance 0 has", i, name)
			}
			column[i] = *val
		}
		t, err := buildTensor(name, &jvalue{kind: jArray, elems: column}, spec.DType)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// decodeInputs reads the columnar format: one value (one input) or an object
// keyed by input name, each value a whole tensor.
func decodeInputs(v *jvalue, sig *model.Signature) (map[string]*tensor.Tensor, error) {
	if !isNamed(v) {
		spec, err := soleInput(sig, "inputs")
		if err != nil {
			return nil, err
		}
		t, err := buildTensor(spec.Name, v, spec.DType)
		if err != nil {
			return nil, err
		}
		return map[string]*tensor.Tensor{spec.Name: t}, nil
	}
	out := make(map[string]*tensor.Tensor, len(v.keys))
	for i, name := range v.keys {
		spec, err := inputSpec(sig, name)
		if err != nil {
			return nil, err
		}
		if _, dup := out[name]; dup {
			return nil, invalidf("'inputs' names input %q twice", name)
		}
		t, err := buildTensor(name, &v.elems[i], spec.DType)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// builder fills one tensor from nested JSON lists.
type builder struct {
	input string
	dt    tensor.DType
	shape []int64
	t     *tensor.Tensor // nil while only the structure is checked
	n     int            // values written
}

// buildTensor converts nested lists to a tensor of dtype dt. The shape comes
// from the first element at each depth; every other list must match it.
func buildTensor(input string, v *jvalue, dt tensor.DType) (*tensor.Tensor, error) {
	if !dt.Supported() {
		return nil, invalidf("input %q has dtype %s, which the REST API cannot convert", input, dt)
	}
	var shape []int64
	for cur := v; cur.kind == jArray; cur = &cur.elems[0] {
		shape = append(shape, int64(len(cur.elems)))
		if len(cur.elems) == 0 {
			break
		}
	}
	if _, err := tensor.NumElements(shape); err != nil {
		return nil, invalidf("input %q: %v", input, err)
	}
	// Check the structure before allocating: the first elements alone can
	// imply a shape far larger than the body ([[[0 × 1000] × 1] ...]).
	b := &builder{input: input, dt: dt, shape: shape}
	if err := b.fill(v, 0, make([]int, 0, len(shape)+1)); err != nil {
		return nil, err
	}
	t, err := tensor.New(dt, shape...)
	if err != nil {
		return nil, invalidf("input %q: %v", input, err)
	}
	b.t, b.n = t, 0
	if err := b.fill(v, 0, make([]int, 0, len(shape)+1)); err != nil {
		return nil, err
	}
	return t, nil
}

func pathString(path []int) string {
	var s strings.Builder
	for _, i := range path {
		fmt.Fprintf(&s, "[%d]", i)
	}
	return s.String()
}

func (b *builder) fill(v *jvalue, depth int, path []int) error {
	if depth < len(b.shape) {
		if v.kind != jArray || int64(len(v.elems)) != b.shape[depth] {
			what := v.kind.String()
			if v.kind == jArray {
				what = fmt.Sprintf("a list of %d", len(v.elems))
			}
			return invalidf("input %q: lists of unequal lengths: the first elements imply shape %s, but %s is %s",
				b.input, tensor.ShapeString(b.shape), "value"+pathString(path), what)
		}
		for i := range v.elems {
			if err := b.fill(&v.elems[i], depth+1, append(path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if v.kind == jArray {
		return invalidf("input %q: lists of unequal lengths: the first elements imply shape %s, but value%s is a list",
			b.input, tensor.ShapeString(b.shape), pathString(path))
	}
	if b.t == nil { // structure pass
		return nil
	}
	if err := b.leaf(v); err != nil {
		return invalidf("input %q: value%s: %v", b.input, pathString(path), err)
	}
	b.n++
	return nil
}

func (b *builder) leaf(v *jvalue) error {
	i := b.n
	switch b.dt {
	case tensor.Float, tensor.Double, tensor.Half:
		if v.kind != jNumber {
			return fmt.Errorf("expected a number for %s, got %s", b.dt, v.kind)
		}
		bits := 64
		if b.dt == tensor.Float {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(v.raw), bits)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			// Out of range saturates to ±Inf (what a C++ cast of the
			// parsed double gives TF); anything else cannot happen for a
			// literal the parser accepted.
			return fmt.Errorf("%s is not a number", v.raw)
		}
		switch b.dt {
		case tensor.Float:
			b.t.Data.([]float32)[i] = float32(f)
		case tensor.Half:
			// double → float → half, the path of TF's Eigen::half(double);
			// beyond ±65504 (and half an ulp) is ±Inf, as there.
			b.t.Data.([]float32)[i] = tensor.HalfFromBits(tensor.HalfBits(float32(f)))
		default:
			b.t.Data.([]float64)[i] = f
		}
	case tensor.Int32, tensor.Int64, tensor.Int16, tensor.Int8, tensor.Uint8:
		if v.kind != jNumber {
			return fmt.Errorf("expected an integer for %s, got %s", b.dt, v.kind)
		}
		var n int64
		var err error
		if b.dt == tensor.Uint8 {
			var u uint64
			u, err = strconv.ParseUint(string(v.raw), 10, 8)
			n = int64(u)
		} else {
			n, err = strconv.ParseInt(string(v.raw), 10, 8*b.dt.Size())
		}
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return fmt.Errorf("%s is out of range for %s", v.raw, b.dt)
			}
			return fmt.Errorf("expected an integer for %s, got %s", b.dt, v.raw)
		}
		switch d := b.t.Data.(type) {
		case []int32:
			d[i] = int32(n)
		case []int64:
			d[i] = n
		case []int16:
			d[i] = int16(n)
		case []int8:
			d[i] = int8(n)
		case []uint8:
			d[i] = uint8(n)
		}
	case tensor.Bool:
		if v.kind != jBool {
			return fmt.Errorf("expected true or false for %s, got %s", b.dt, v.kind)
		}
		b.t.Data.([]bool)[i] = v.b
	case tensor.String:
		s, err := stringValue(v)
		if err != nil {
			return err
		}
		b.t.Data.([][]byte)[i] = s
	}
	return nil
}

func stringValue(v *jvalue) ([]byte, error) {
	if enc, ok := v.b64(); ok {
		s, err := decodeBase64(enc)
		if err != nil {
			return nil, fmt.Errorf("'b64' value is not base64: %v", err)
		}
		return s, nil
	}
	if v.kind != jString {
		return nil, fmt.Errorf("expected a string or {\"b64\": ...} for DT_STRING, got %s", v.kind)
	}
	return v.raw, nil
}

// decodeBase64 accepts standard base64 with or without padding, as TF does.
func decodeBase64(s []byte) ([]byte, error) {
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out := make([]byte, enc.DecodedLen(len(s)))
	n, err := enc.Decode(out, s)
	return out[:n], err
}

// encodePredict writes the response body. Row requests get
// {"predictions": [...]} with one entry per example: the output's row when
// there is one output, an object of rows when there are several. Columnar
// requests get {"outputs": value} or {"outputs": {name: value}}.
func encodePredict(row bool, outputs map[string]*tensor.Tensor) ([]byte, error) {
	names := make([]string, 0, len(outputs))
	size := 64
	for name, t := range outputs {
		names = append(names, name)
		size += t.Len() * 8
	}
	slices.Sort(names)
	b := make([]byte, 0, size)
	if !row {
		b = append(b, `{"outputs":`...)
		if len(names) == 1 {
			b = appendTensor(b, outputs[names[0]], names[0], outputs[names[0]].Shape, 0)
		} else {
			b = append(b, '{')
			for i, name := range names {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendString(b, []byte(name))
				b = append(b, ':')
				b = appendTensor(b, outputs[name], name, outputs[name].Shape, 0)
			}
			b = append(b, '}')
		}
		return append(b, '}'), nil
	}

	batch := int64(-1)
	for _, name := range names {
		t := outputs[name]
		if len(t.Shape) == 0 {
			return nil, invalidf("output %q is a scalar; the row format needs outputs with a batch dimension (use the columnar 'inputs' format)", name)
		}
		if batch >= 0 && t.Shape[0] != batch {
			return nil, invalidf("output tensors do not have the same size for 0th dimension: %q has %d, others %d (use the columnar 'inputs' format)", name, t.Shape[0], batch)
		}
		batch = t.Shape[0]
	}
	b = append(b, `{"predictions":[`...)
	for r := range max(batch, 0) {
		if r > 0 {
			b = append(b, ',')
		}
		if len(names) == 1 {
			t := outputs[names[0]]
			b = appendTensor(b, t, names[0], t.Shape[1:], int(r)*rowSize(t))
			continue
		}
		b = append(b, '{')
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			t := outputs[name]
			b = appendString(b, []byte(name))
			b = append(b, ':')
			b = appendTensor(b, t, name, t.Shape[1:], int(r)*rowSize(t))
		}
		b = append(b, '}')
	}
	return append(b, "]}"...), nil
}

func rowSize(t *tensor.Tensor) int {
	n := 1
	for _, d := range t.Shape[1:] {
		n *= int(d)
	}
	return n
}

// appendTensor writes the values of t from offset off as nested lists of
// the given shape.
func appendTensor(b []byte, t *tensor.Tensor, name string, shape []int64, off int) []byte {
	// TF marks string outputs whose alias ends in _bytes as binary; bytes
	// that are not UTF-8 cannot be a JSON string either way.
	binary := strings.HasSuffix(name, "_bytes")
	return appendNested(b, t, shape, off, binary)
}

func appendNested(b []byte, t *tensor.Tensor, shape []int64, off int, binary bool) []byte {
	if len(shape) == 0 {
		return appendValue(b, t, off, binary)
	}
	sub := 1
	for _, d := range shape[1:] {
		sub *= int(d)
	}
	b = append(b, '[')
	for i := range int(shape[0]) {
		if i > 0 {
			b = append(b, ',')
		}
		if len(shape) == 1 {
			b = appendValue(b, t, off+i, binary)
		} else {
			b = appendNested(b, t, shape[1:], off+i*sub, binary)
		}
	}
	return append(b, ']')
}

func appendValue(b []byte, t *tensor.Tensor, i int, binary bool) []byte {
	switch d := t.Data.(type) {
	case []float32:
		return appendFloat(b, float64(d[i]), 32)
	case []float64:
		return appendFloat(b, d[i], 64)
	case []int32:
		return strconv.AppendInt(b, int64(d[i]), 10)
	case []int64:
		return strconv.AppendInt(b, d[i], 10)
	case []int16:
		return strconv.AppendInt(b, int64(d[i]), 10)
	case []int8:
		return strconv.AppendInt(b, int64(d[i]), 10)
	case []uint8:
		return strconv.AppendUint(b, uint64(d[i]), 10)
	case []bool:
		return strconv.AppendBool(b, d[i])
	case [][]byte:
		if binary || !utf8.Valid(d[i]) {
			b = append(b, `{"b64":"`...)
			b = base64.StdEncoding.AppendEncode(b, d[i])
			return append(b, `"}`...)
		}
		return appendString(b, d[i])
	}
	return append(b, "null"...)
}

// appendFloat writes f the way TF Serving does: NaN and ±Infinity as bare
// tokens, and always with a fraction or exponent, so clients (Python's json)
// read 1.0 as a float, not the integer 1.
func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, bits)
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b
		}
	}
	return append(b, ".0"...)
}

// appendString writes s (valid UTF-8) as a JSON string.
func appendString(b []byte, s []byte) []byte { return jsonscan.AppendString(b, s) }
