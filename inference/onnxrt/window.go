package onnxrt

import (
	"fmt"

	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// maxSpatial is the number of spatial dimensions the convolution and pooling
// kernels handle: 1-D, 2-D and 3-D windows, all computed as 3-D with the
// missing leading dimensions of size 1.
const maxSpatial = 3

// windowAttrs are the attributes Conv, ConvTranspose and the pools share.
// Slices are nil when the attribute is absent.
type windowAttrs struct {
	kernel    []int64
	strides   []int64
	dilations []int64
	pads      []int64 // begins then ends
	autoPad   string
	ceil      bool
}

func parseWindow(x *nodeCtx, pool bool) (windowAttrs, error) {
	var w windowAttrs
	var err error
	for _, a := range []struct {
		name string
		dst  *[]int64
	}{{"kernel_shape", &w.kernel}, {"strides", &w.strides}, {"dilations", &w.dilations}, {"pads", &w.pads}} {
		if *a.dst, _, err = x.intsAttr(a.name); err != nil {
			return w, err
		}
	}
	if pool && w.kernel == nil {
		return w, fmt.Errorf("attribute kernel_shape is required")
	}
	if a, err := x.attr("auto_pad", onnxpb.AttributeProto_STRING); err != nil {
		return w, err
	} else if a != nil {
		w.autoPad = string(a.GetS())
	}
	switch w.autoPad {
	case "", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER":
	default:
		return w, fmt.Errorf("attribute auto_pad is %q, want NOTSET, VALID, SAME_UPPER or SAME_LOWER", w.autoPad)
	}
	if w.autoPad == "NOTSET" {
		w.autoPad = ""
	}
	c, err := x.intAttr("ceil_mode", 0)
	if err != nil {
		return w, err
	}
	w.ceil = c != 0
	if w.kernel != nil {
		if len(w.kernel) == 0 || len(w.kernel) > maxSpatial {
			return w, fmt.Errorf("kernel_shape %v: 1 to %d spatial dimensions are supported", w.kernel, maxSpatial)
		}
		if err := w.check(len(w.kernel)); err != nil {
			return w, err
		}
	}
	return w, nil
}

// check validates the attributes for nsp spatial dimensions.
func (w *windowAttrs) check(nsp int) error {
	for _, a := range []struct {
		name string
		v    []int64
		n    int
		min  int64
	}{{"kernel_shape", w.kernel, nsp, 1}, {"strides", w.strides, nsp, 1}, {"dilations", w.dilations, nsp, 1}, {"pads", w.pads, 2 * nsp, 0}} {
		if a.v == nil {
			continue
		}
		if len(a.v) != a.n {
			return fmt.Errorf("attribute %s %v has %d values, want %d for %d spatial dimensions", a.name, a.v, len(a.v), a.n, nsp)
		}
		for _, v := range a.v {
			if v < a.min || v > 1<<20 {
				return fmt.Errorf("attribute %s %v: values must be at least %d", a.name, a.v, a.min)
			}
		}
	}
	return nil
}

// geom is one window operation's resolved geometry, always 3-D.
type geom struct {
	nsp                int
	in, out, k         [maxSpatial]int
	stride, dil, padB  [maxSpatial]int
	padE               [maxSpatial]int
	inSize, outSize, K int // products over the spatial dims
}

// resolve computes the geometry for input spatial dims in and kernel dims k
// (from the attribute or the weights), with the spec's output-size rules:
// explicit pads (floor, or ceil with ceil_mode, where the last window must
// start inside the input or its begin padding), VALID, SAME_UPPER/LOWER.
func (w *windowAttrs) resolve(in, k []int) (geom, error) {
	var g geom
	nsp := len(in)
	if nsp == 0 || nsp > maxSpatial {
		return g, fmt.Errorf("%d spatial dimensions; 1 to %d are supported", nsp, maxSpatial)
	}
	if err := w.check(nsp); err != nil {
		return g, err
	}
	g.nsp = nsp
	off := maxSpatial - nsp
	for i := range maxSpatial {
		g.in[i], g.out[i], g.k[i], g.stride[i], g.dil[i] = 1, 1, 1, 1, 1
	}
	for i := range nsp {
		d := off + i
		g.in[d], g.k[d] = in[i], k[i]
		if w.strides != nil {
			g.stride[d] = int(w.strides[i])
		}
		if w.dilations != nil {
			g.dil[d] = int(w.dilations[i])
		}
		ext := (g.k[d]-1)*g.dil[d] + 1
		switch w.autoPad {
		case "":
			if w.pads != nil {
				g.padB[d], g.padE[d] = int(w.pads[i]), int(w.pads[nsp+i])
			}
			span := g.in[d] + g.padB[d] + g.padE[d] - ext
			if span < 0 {
				return g, fmt.Errorf("input spatial size %d with pads %d+%d is smaller than the window %d", g.in[d], g.padB[d], g.padE[d], ext)
			}
			o := span/g.stride[d] + 1
			if w.ceil && span%g.stride[d] != 0 {
				o++
				if (o-1)*g.stride[d] >= g.in[d]+g.padB[d] {
					o--
				}
			}
			g.out[d] = o
		case "VALID":
			if g.in[d] < ext {
				return g, fmt.Errorf("input spatial size %d is smaller than the window %d", g.in[d], ext)
			}
			g.out[d] = (g.in[d]-ext)/g.stride[d] + 1
		default:
			g.out[d] = ceilDiv(g.in[d], g.stride[d])
			total := max(0, (g.out[d]-1)*g.stride[d]+ext-g.in[d])
			if w.autoPad == "SAME_UPPER" {
				g.padB[d] = total / 2
			} else {
				g.padB[d] = total - total/2
			}
			g.padE[d] = total - g.padB[d]
		}
	}
	g.inSize, g.outSize, g.K = 1, 1, 1
	for d := range maxSpatial {
		g.inSize *= g.in[d]
		g.outSize *= g.out[d]
		g.K *= g.k[d]
	}
	return g, nil
}

// outShape sets value id's shape to [n, c, out...].
func (g *geom) outShape(st *state, id, n, c int) {
	sh := st.outShape(id, 2+g.nsp)
	sh[0], sh[1] = n, c
	copy(sh[2:], g.out[maxSpatial-g.nsp:])
}

func intsOf(v []int64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}
