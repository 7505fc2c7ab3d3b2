package rest

import (
	"fmt"
	"strconv"

	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// decodeExamples reads the body of :classify and :regress:
// {"signature_name": ..., "context": {feature: value}, "examples": [{feature: value}, ...]}.
// A feature value is a number, a string, {"b64": ...} or a flat list of
// them: integers become an int64_list, other numbers a float_list, strings a
// bytes_list. Every error is INVALID_ARGUMENT.
func decodeExamples(body []byte) (signature string, input *servingpb.Input, err error) {
	root, err := parseJSON(body)
	if err != nil {
		return "", nil, invalidf("%v", err)
	}
	if root.kind != jObject {
		return "", nil, invalidf("JSON Value: %s Is not an object", root.kind)
	}
	if sn := root.member("signature_name"); sn != nil {
		if sn.kind != jString {
			return "", nil, invalidf("'signature_name' key must be a string value, got %s", sn.kind)
		}
		signature = string(sn.raw)
	}
	ex := root.member("examples")
	if ex == nil {
		return "", nil, invalidf("Missing 'examples' key")
	}
	if ex.kind != jArray {
		return "", nil, invalidf("'examples' must be a list of objects, got %s", ex.kind)
	}
	examples := make([]*tfpb.Example, len(ex.elems))
	for i := range ex.elems {
		examples[i], err = example(&ex.elems[i], fmt.Sprintf("examples[%d]", i))
		if err != nil {
			return "", nil, err
		}
	}
	ctx := root.member("context")
	if ctx == nil {
		return signature, &servingpb.Input{Kind: &servingpb.Input_ExampleList{
			ExampleList: &servingpb.ExampleList{Examples: examples},
		}}, nil
	}
	c, err := example(ctx, "context")
	if err != nil {
		return "", nil, err
	}
	return signature, &servingpb.Input{Kind: &servingpb.Input_ExampleListWithContext{
		ExampleListWithContext: &servingpb.ExampleListWithContext{Examples: examples, Context: c},
	}}, nil
}

func example(v *jvalue, where string) (*tfpb.Example, error) {
	if v.kind != jObject {
		return nil, invalidf("%s must be an object of features, got %s", where, v.kind)
	}
	ex := &tfpb.Example{Features: &tfpb.Features{Feature: make(map[string]*tfpb.Feature, len(v.keys))}}
	for i, name := range v.keys {
		f, err := feature(&v.elems[i])
		if err != nil {
			return nil, invalidf("%s feature %q: %v", where, name, err)
		}
		ex.Features.Feature[name] = f
	}
	return ex, nil
}

func feature(v *jvalue) (*tfpb.Feature, error) {
	vals := []jvalue{*v}
	if v.kind == jArray {
		vals = v.elems
	}
	var kind jkind = jNull
	isInt := true
	for i := range vals {
		k := vals[i].kind
		if _, ok := vals[i].b64(); ok {
			k = jString
		}
		switch {
		case k != jNumber && k != jString:
			return nil, fmt.Errorf("values must be numbers or strings, got %s", k)
		case kind != jNull && k != kind:
			return nil, fmt.Errorf("mixes numbers and strings")
		}
		kind = k
		if k == jNumber {
			if _, err := strconv.ParseInt(string(vals[i].raw), 10, 64); err != nil {
				isInt = false
			}
		}
	}
	switch {
	case kind == jString:
		l := &tfpb.BytesList{Value: make([][]byte, len(vals))}
		for i := range vals {
			s, err := stringValue(&vals[i])
			if err != nil {
				return nil, err
			}
			l.Value[i] = s
		}
		return &tfpb.Feature{Kind: &tfpb.Feature_BytesList{BytesList: l}}, nil
	case kind == jNumber && isInt:
		l := &tfpb.Int64List{Value: make([]int64, len(vals))}
		for i := range vals {
			l.Value[i], _ = strconv.ParseInt(string(vals[i].raw), 10, 64)
		}
		return &tfpb.Feature{Kind: &tfpb.Feature_Int64List{Int64List: l}}, nil
	default: // numbers with a fraction, or an empty list
		l := &tfpb.FloatList{Value: make([]float32, len(vals))}
		for i := range vals {
			f, _ := strconv.ParseFloat(string(vals[i].raw), 32)
			l.Value[i] = float32(f)
		}
		return &tfpb.Feature{Kind: &tfpb.Feature_FloatList{FloatList: l}}, nil
	}
}

// encodeClassification writes {"result": [[[label, score], ...], ...]}.
func encodeClassification(res *servingpb.ClassificationResult) []byte {
	b := []byte(`{"result":[`)
	for i, cs := range res.GetClassifications() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, c := range cs.GetClasses() {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendString(b, []byte(c.GetLabel()))
			b = append(b, ',')
			b = appendFloat(b, float64(c.GetScore()), 32)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// encodeRegression writes {"result": [value, ...]}.
func encodeRegression(res *servingpb.RegressionResult) []byte {
	b := []byte(`{"result":[`)
	for i, r := range res.GetRegressions() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, float64(r.GetValue()), 32)
	}
	return append(b, "]}"...)
}
