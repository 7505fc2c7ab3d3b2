package onnxrt

import (
	"errors"
	"fmt"
	"math"

	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// resizeKernel is Resize (opsets 10–19) and Upsample (7–9): nearest, linear
// and cubic interpolation, computed one axis at a time (all three are
// separable), with the spec's coordinate transformations and rounding modes.
type resizeKernel struct {
	mode        string // nearest, linear, cubic
	coord       string
	nearest     string
	cubicA      float32
	exclude     bool
	aspect      string // keep_aspect_ratio_policy
	scalesAttr  []float32
	scalesIn    int // input index of scales, -1 if none
	sizesIn     int // input index of sizes, -1 if none
	axesAttr    []int64
	roiIn       int     // input index of roi (tf_crop_and_resize), -1 if none
	extrap      float32 // extrapolation_value (tf_crop_and_resize)
	scratchPing int
	scratchPong int
}

func strAttr(x *nodeCtx, name, def string) (string, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_STRING)
	if a == nil || err != nil {
		return def, err
	}
	return string(a.GetS()), nil
}

func compileResize(upsample bool) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		k := &resizeKernel{scalesIn: -1, sizesIn: -1, roiIn: -1, coord: "half_pixel", nearest: "round_prefer_floor",
			scratchPing: x.newScratch(), scratchPong: x.newScratch()}
		var err error
		if k.mode, err = strAttr(x, "mode", "nearest"); err != nil {
			return nil, nil, err
		}
		// Before opset 11 (and for Upsample) the mapping is x/scale, rounded down.
		old := upsample || x.c.opset < 11
		switch {
		case upsample && x.c.opset < 9:
			if err := x.inputs(1, 1); err != nil {
				return nil, nil, err
			}
			a, err := x.attr("scales", onnxpb.AttributeProto_FLOATS)
			if err != nil {
				return nil, nil, err
			}
			if a == nil {
				return nil, nil, errors.New("attribute scales is required")
			}
			k.scalesAttr = a.GetFloats()
		case old:
			if err := x.inputs(2, 2); err != nil {
				return nil, nil, err
			}
			k.scalesIn = 1
		default:
			if err := x.inputs(1, 4); err != nil {
				return nil, nil, err
			}
			if x.has(2) {
				k.scalesIn = 2
			}
			if x.has(3) {
				k.sizesIn = 3
			}
			if k.scalesIn < 0 && k.sizesIn < 0 {
				return nil, nil, errors.New("one of scales and sizes is required")
			}
		}
		k.aspect = "stretch"
		if old {
			k.coord, k.nearest = "asymmetric", "floor"
			if k.mode == "bilinear" || k.mode == "trilinear" {
				k.mode = "linear"
			}
		} else {
			if k.coord, err = strAttr(x, "coordinate_transformation_mode", "half_pixel"); err != nil {
				return nil, nil, err
			}
			if k.nearest, err = strAttr(x, "nearest_mode", "round_prefer_floor"); err != nil {
				return nil, nil, err
			}
			if k.cubicA, err = x.floatAttr("cubic_coeff_a", -0.75); err != nil {
				return nil, nil, err
			}
			ex, err := x.intAttr("exclude_outside", 0)
			if err != nil {
				return nil, nil, err
			}
			k.exclude = ex != 0
			if aa, err := x.intAttr("antialias", 0); err != nil || aa != 0 {
				return nil, nil, errors.New("antialias is not supported")
			}
			if k.aspect, err = strAttr(x, "keep_aspect_ratio_policy", "stretch"); err != nil {
				return nil, nil, err
			}
			if k.axesAttr, _, err = x.intsAttr("axes"); err != nil {
				return nil, nil, err
			}
			if k.coord == "tf_crop_and_resize" {
				if !x.has(1) {
					return nil, nil, errors.New(`coordinate_transformation_mode "tf_crop_and_resize" needs the roi input`)
				}
				if err := x.types(floatOnly, 1); err != nil {
					return nil, nil, err
				}
				k.roiIn = 1
				if k.extrap, err = x.floatAttr("extrapolation_value", 0); err != nil {
					return nil, nil, err
				}
			}
		}
		switch k.mode {
		case "nearest", "linear", "cubic":
		default:
			return nil, nil, fmt.Errorf("mode %q is not supported (nearest, linear, cubic)", k.mode)
		}
		switch k.coord {
		case "half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
			"tf_crop_and_resize":
		default:
			return nil, nil, fmt.Errorf("coordinate_transformation_mode %q is not supported", k.coord)
		}
		switch k.nearest {
		case "round_prefer_floor", "round_prefer_ceil", "floor", "ceil":
		default:
			return nil, nil, fmt.Errorf("nearest_mode %q is not supported", k.nearest)
		}
		switch k.aspect {
		case "stretch", "not_larger", "not_smaller":
		default:
			return nil, nil, fmt.Errorf("keep_aspect_ratio_policy %q is not supported", k.aspect)
		}
		if err := x.types(floatOnly, 0); err != nil {
			return nil, nil, err
		}
		if k.scalesIn >= 0 {
			if err := x.types(floatOnly, k.scalesIn); err != nil {
				return nil, nil, err
			}
		}
		if k.sizesIn >= 0 {
			if err := x.types(int64Only, k.sizesIn); err != nil {
				return nil, nil, err
			}
		}
		return k, []tensor.DType{tensor.Float}, nil
	}
}

func (k *resizeKernel) run(st *state, nd *node) error {
	x := st.in(nd, 0)
	r := len(x.shape)
	axes := make([]int, 0, r)
	if k.axesAttr != nil {
		for _, a := range k.axesAttr {
			d, err := normAxis(a, r)
			if err != nil {
				return err
			}
			axes = append(axes, d)
		}
	} else {
		for d := range r {
			axes = append(axes, d)
		}
	}
	scales := make([]float64, r)
	outLen := make([]int, r)
	for d := range r {
		scales[d], outLen[d] = 1, x.shape[d]
	}
	var sv []float32
	switch {
	case k.scalesAttr != nil:
		sv = k.scalesAttr
	case k.scalesIn >= 0 && len(st.in(nd, k.scalesIn).f) > 0:
		sv = st.in(nd, k.scalesIn).f
	}
	switch {
	case sv != nil:
		if len(sv) != len(axes) {
			return fmt.Errorf("scales has %d values for %d axes", len(sv), len(axes))
		}
		for i, d := range axes {
			if !(sv[i] > 0) {
				return fmt.Errorf("scales %v must be positive", sv)
			}
			scales[d] = float64(sv[i])
			outLen[d] = int(math.Floor(float64(x.shape[d]) * scales[d]))
		}
	case k.sizesIn >= 0:
		sz := st.in(nd, k.sizesIn).i
		if len(sz) != len(axes) {
			return fmt.Errorf("sizes has %d values for %d axes", len(sz), len(axes))
		}
		if k.aspect != "stretch" {
			s := math.Inf(1)
			if k.aspect == "not_smaller" {
				s = math.Inf(-1)
			}
			for i, d := range axes {
				f := float64(sz[i]) / float64(x.shape[d])
				if k.aspect == "not_larger" {
					s = min(s, f)
				} else {
					s = max(s, f)
				}
			}
			for _, d := range axes {
				scales[d] = s
				outLen[d] = int(math.Round(s * float64(x.shape[d])))
			}
		} else {
			for i, d := range axes {
				if sz[i] < 0 {
					return fmt.Errorf("sizes %v must not be negative", sz)
				}
				outLen[d] = int(sz[i])
				scales[d] = float64(sz[i]) / float64(x.shape[d])
			}
		}
	default:
		return errors.New("neither scales nor sizes is given")
	}
	// roi[d] is the crop box along axis d, as fractions of the input
	// (tf_crop_and_resize only): starts for the axes, then ends.
	roi := make([][2]float64, r)
	if k.roiIn >= 0 {
		rv := st.in(nd, k.roiIn).f
		if len(rv) != 2*len(axes) {
			return fmt.Errorf("roi has %d values for %d axes, want %d", len(rv), len(axes), 2*len(axes))
		}
		for d := range roi {
			roi[d] = [2]float64{0, 1}
		}
		for i, d := range axes {
			roi[d] = [2]float64{float64(rv[i]), float64(rv[len(axes)+i])}
		}
	}
	out := nd.out[0]
	st.setShape(out, outLen)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	if len(o) == 0 {
		return nil
	}
	// One axis at a time, ping-ponging through scratch, the last into o.
	cur := x.f
	shape := append([]int(nil), x.shape...)
	var todo []int
	for d := range r {
		if taps := k.taps(shape[d], outLen[d], scales[d], roi[d]); !taps.identity() {
			todo = append(todo, d)
		}
	}
	if len(todo) == 0 {
		copy(o, cur)
		return nil
	}
	for i, d := range todo {
		t := k.taps(shape[d], outLen[d], scales[d], roi[d])
		outer, inner := 1, 1
		for j := range d {
			outer *= shape[j]
		}
		for j := d + 1; j < r; j++ {
			inner *= shape[j]
		}
		n := outer * outLen[d] * inner
		var dst []float32
		switch {
		case i == len(todo)-1:
			dst = o
		case i%2 == 0:
			dst = st.scratchF(k.scratchPing, n)
		default:
			dst = st.scratchF(k.scratchPong, n)
		}
		t.apply(dst, cur, outer, shape[d], inner)
		shape[d] = outLen[d]
		cur = dst
	}
	return nil
}

// taps are, for each output index along one axis, the input indices and
// weights it is interpolated from. An output whose first index is -1 lies
// outside the input (tf_crop_and_resize) and is extrap.
type taps struct {
	n      int // taps per output
	in     int
	idx    []int
	w      []float32
	extrap float32
}

func (t *taps) identity() bool {
	if len(t.idx)/t.n != t.in {
		return false
	}
	for o := 0; o < len(t.idx)/t.n; o++ {
		if t.idx[o*t.n] < 0 {
			return false
		}
		for j := range t.n {
			i, w := t.idx[o*t.n+j], t.w[o*t.n+j]
			if w != 0 && (i != o || w != 1) {
				return false
			}
		}
	}
	return true
}

func (t *taps) apply(dst, src []float32, outer, in, inner int) {
	out := len(t.idx) / t.n
	for a := range outer {
		s := src[a*in*inner : (a+1)*in*inner]
		d := dst[a*out*inner : (a+1)*out*inner]
		for o := range out {
			row := d[o*inner : (o+1)*inner]
			if t.idx[o*t.n] < 0 {
				for e := range row {
					row[e] = t.extrap
				}
				continue
			}
			clear(row)
			for j := range t.n {
				w := t.w[o*t.n+j]
				if w == 0 {
					continue
				}
				sr := s[t.idx[o*t.n+j]*inner:][:inner]
				for e := range row {
					row[e] += w * sr[e]
				}
			}
		}
	}
}

// coordinate maps output index xo to the input coordinate; roi is the crop
// box of tf_crop_and_resize.
func (k *resizeKernel) coordinate(xo, in, out int, scale float64, roi [2]float64) float64 {
	x := float64(xo)
	switch k.coord {
	case "tf_crop_and_resize":
		// As align_corners, the resized length is in·scale before rounding.
		if l := scale * float64(in); l > 1 {
			return roi[0]*float64(in-1) + x*(roi[1]-roi[0])*float64(in-1)/(l-1)
		}
		return 0.5 * (roi[0] + roi[1]) * float64(in-1)
	case "half_pixel":
		return (x+0.5)/scale - 0.5
	case "half_pixel_symmetric":
		adj := float64(out) / (scale * float64(in))
		center := float64(in) / 2
		return center*(1-adj) + (x+0.5)/scale - 0.5
	case "pytorch_half_pixel":
		if scale*float64(in) > 1 {
			return (x+0.5)/scale - 0.5
		}
		return 0
	case "align_corners":
		// The resized length here is in·scale before rounding, as the
		// spec's reference computes it.
		if l := scale * float64(in); l != 1 {
			return x * float64(in-1) / (l - 1)
		}
		return 0
	case "tf_half_pixel_for_nn":
		return (x + 0.5) / scale
	}
	return x / scale // asymmetric
}

func (k *resizeKernel) taps(in, out int, scale float64, roi [2]float64) taps {
	t := taps{in: in, extrap: k.extrap}
	switch k.mode {
	case "nearest":
		t.n = 1
	case "linear":
		t.n = 2
	default:
		t.n = 4
	}
	t.idx = make([]int, out*t.n)
	t.w = make([]float32, out*t.n)
	clamp := func(i int) int { return min(max(i, 0), in-1) }
	for o := range out {
		x := k.coordinate(o, in, out, scale, roi)
		ix, w := t.idx[o*t.n:(o+1)*t.n], t.w[o*t.n:(o+1)*t.n]
		if k.coord == "tf_crop_and_resize" && (x < 0 || x > float64(in-1)) {
			// Outside the input: the extrapolation value, as TensorFlow's
			// CropAndResize gives (idx -1, weights 0).
			ix[0] = -1
			continue
		}
		switch k.mode {
		case "nearest":
			var i float64
			switch k.nearest {
			case "round_prefer_floor":
				if x == math.Floor(x)+0.5 {
					i = math.Floor(x)
				} else {
					i = math.Round(x)
				}
			case "round_prefer_ceil":
				i = math.Round(x)
				if x == math.Floor(x)+0.5 {
					i = math.Ceil(x)
				}
			case "floor":
				i = math.Floor(x)
			case "ceil":
				i = math.Ceil(x)
			}
			ix[0], w[0] = clamp(int(i)), 1
		case "linear":
			x = min(max(x, 0), float64(in-1))
			x0 := math.Floor(x)
			f := x - x0
			ix[0], ix[1] = clamp(int(x0)), clamp(int(x0)+1)
			w[0], w[1] = float32(1-f), float32(f)
		default:
			x0 := math.Floor(x)
			f := x - x0
			a := float64(k.cubicA)
			var sum float64
			var cw [4]float64
			for j := range 4 {
				d := math.Abs(f - float64(j-1)) // distance to tap x0-1+j
				switch {
				case d <= 1:
					cw[j] = (a+2)*d*d*d - (a+3)*d*d + 1
				case d < 2:
					cw[j] = a*d*d*d - 5*a*d*d + 8*a*d - 4*a
				}
				p := int(x0) - 1 + j
				if k.exclude && (p < 0 || p >= in) {
					cw[j] = 0
				}
				sum += cw[j]
				ix[j] = clamp(p)
			}
			for j := range 4 {
				if k.exclude && sum != 0 {
					cw[j] /= sum
				}
				w[j] = float32(cw[j])
			}
		}
	}
	return t
}
