package onnxrt

import (
	"fmt"

	"github.com/infergate/infergate/inference/tensor"
)

// convKernel is Conv over 1, 2 or 3 spatial dimensions, with groups
// (depthwise included), strides, dilations, explicit or automatic padding.
// It is a GEMM per image and group: the weights [M/G, C/G·k…] as A, packed at
// load when constant, times the input unrolled into columns (im2col) as B,
// written straight into packed panels a chunk of output positions at a time.
// Chunks are the unit of parallel work, so a batch of one image uses every
// thread as well as a batch of 32.
type convKernel struct {
	w       windowAttrs
	group   int
	pa      []float32 // packed weights, group after group; nil if W is computed
	m, kg   int       // output channels, and K = C/G·kernel size, of the packed weights
	bias    []float32 // a constant bias, with any folded BatchNormalization
	biasIn  bool      // the bias is computed: read input 2 at run time
	act     activation
	threads int
	scratch int // packed weights of a computed W
	jobs    freeList[convJob]
	// the direct path (conv_direct.go)
	scratchBias int
	directJobs  freeList[convDirectJob]
	// the depthwise path (conv_depthwise.go)
	depthwiseJobs freeList[depthwiseJob]
}

func compileConv(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 3); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1, 2); err != nil {
		return nil, nil, err
	}
	w, err := parseWindow(x, false)
	if err != nil {
		return nil, nil, err
	}
	group, err := x.intAttr("group", 1)
	if err != nil {
		return nil, nil, err
	}
	if group < 1 || group > 1<<20 {
		return nil, nil, fmt.Errorf("attribute group is %d, want at least 1", group)
	}
	k := &convKernel{w: w, group: int(group), threads: x.c.threads, scratch: x.newScratch(), scratchBias: x.newScratch()}
	if wt := x.konst(1); wt != nil {
		if err := k.checkWeights(wt.shape); err != nil {
			return nil, nil, err
		}
		k.m = wt.shape[0]
		k.kg = len(wt.f) / max(k.m, 1)
		k.pa = make([]float32, k.group*packedASize(k.m/k.group, k.kg))
		packConvWeights(k.pa, wt.f, k.m, k.kg, k.group)
	}
	if b := x.konst(2); b != nil {
		if x.konst(1) != nil && len(b.f) != k.m {
			return nil, nil, fmt.Errorf("bias has %d values for %d output channels", len(b.f), k.m)
		}
		k.bias = append([]float32(nil), b.f...)
	} else if x.has(2) {
		k.biasIn = true
	}
	return k, []tensor.DType{tensor.Float}, nil
}

func (k *convKernel) checkWeights(shape []int) error {
	if len(shape) < 3 || len(shape) > 2+maxSpatial {
		return fmt.Errorf("weights have shape %v; 1 to %d spatial dimensions are supported", shape, maxSpatial)
	}
	if shape[0]%k.group != 0 {
		return fmt.Errorf("weights have %d output channels, not a multiple of group %d", shape[0], k.group)
	}
	if k.w.kernel != nil {
		if len(k.w.kernel) != len(shape)-2 {
			return fmt.Errorf("kernel_shape %v does not match weights of shape %v", k.w.kernel, shape)
		}
		for i, d := range k.w.kernel {
			if int(d) != shape[2+i] {
				return fmt.Errorf("kernel_shape %v does not match weights of shape %v", k.w.kernel, shape)
			}
		}
	}
	return nil
}

// packConvWeights packs W ([M, C/G, k…], row-major; K = C/G·k…) group by
// group as GEMM A panels.
func packConvWeights(dst, w []float32, m, kg, group int) {
	mg := m / group
	size := packedASize(mg, kg)
	for g := range group {
		packA(dst[g*size:(g+1)*size], w[g*mg*kg:], mg, kg, kg, 1, 1)
	}
}

// absorb takes over a following element-wise activation, or a
// BatchNormalization with constant statistics (folded into the packed
// weights and the bias), when the weights are constant.
func (k *convKernel) absorb(next *node, out int, consts []*value) bool {
	if k.act.on {
		return false
	}
	switch n := next.k.(type) {
	case *unaryKernel:
		k.act = activation{on: true, op: n.op, alpha: n.alpha, beta: n.beta}
		return true
	case *batchNormKernel:
		if k.pa == nil || k.biasIn || len(n.scale) != k.m || next.in[0] != out {
			return false
		}
		mg := k.m / k.group
		size := packedASize(mg, k.kg)
		for g := range k.group {
			panels := k.pa[g*size : (g+1)*size]
			for p := 0; p < mg; p += gemmMR {
				for i := 0; i < k.kg*gemmMR; i++ {
					if r := p + i%gemmMR; r < mg {
						panels[p*k.kg+i] *= n.scale[g*mg+r]
					}
				}
			}
		}
		bias := make([]float32, k.m)
		for c := range bias {
			var b float32
			if k.bias != nil {
				b = k.bias[c]
			}
			bias[c] = b*n.scale[c] + n.shift[c]
		}
		k.bias = bias
		return true
	}
	return false
}

// convChunkBytes bounds one work item's im2col panels, so they stay in L2
// while every packed weight panel streams past them.
const convChunkBytes = 96 << 10

// convJob is one Conv call split into work items of (image, group, chunk of
// output positions); workers each unroll their chunk into their own buffer.
type convJob struct {
	k           *convKernel
	g           geom
	x, o, pa    []float32
	bias        []float32
	c, mg, kg   int // input channels per group, output channels per group, K
	chunkPanels int
	chunks      int // per image and group
	scratch     [][]float32
}

func (k *convKernel) run(st *state, nd *node) error {
	x, w := st.in(nd, 0), st.in(nd, 1)
	if len(x.shape) != len(w.shape) {
		return fmt.Errorf("input has shape %v and weights %v: ranks differ", x.shape, w.shape)
	}
	if err := k.checkWeights(w.shape); err != nil {
		return err
	}
	n, c, m := x.shape[0], x.shape[1], w.shape[0]
	cg := w.shape[1]
	if c != cg*k.group {
		return fmt.Errorf("input has %d channels; weights of shape %v with group %d want %d", c, w.shape, k.group, cg*k.group)
	}
	g, err := k.w.resolve(x.shape[2:], w.shape[2:])
	if err != nil {
		return err
	}
	bias := k.bias
	if k.biasIn {
		b := st.in(nd, 2)
		if len(b.shape) != 1 || len(b.f) != m {
			return fmt.Errorf("bias has shape %v for %d output channels", b.shape, m)
		}
		bias = b.f
	}
	out := nd.out[0]
	g.outShape(st, out, n, m)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	if len(o) == 0 {
		return nil
	}
	mg, kg := m/k.group, cg*g.K
	pa := k.pa
	if pa == nil {
		pa = st.scratchF(k.scratch, k.group*packedASize(mg, kg))
		packConvWeights(pa, w.f, m, kg, k.group)
	}
	if useDepthwise && cg == 1 && mg == 1 && kg > 0 {
		k.runDepthwise(g, x.f, o, pa, bias, n, c)
		return nil
	}
	if kg > 0 && directOK(&g) {
		k.runDirect(g, x.f, o, pa, bias, n, cg, mg, kg, st)
		return nil
	}
	j := k.getJob()
	defer k.putJob(j)
	j.g, j.x, j.o, j.pa, j.bias = g, x.f, o, pa, bias
	j.c, j.mg, j.kg = cg, mg, kg
	panels := ceilDiv(g.outSize, gemmNR)
	j.chunkPanels = max(1, min(panels, convChunkBytes/(4*gemmNR*max(kg, 1))))
	j.chunks = ceilDiv(panels, j.chunkPanels)
	items := n * k.group * j.chunks
	// Threads pay off only with enough work each: about 64k multiply-adds.
	threads := min(k.threads, max(1, n*m*kg*g.outSize/(64<<10)))
	for len(j.scratch) < threads {
		j.scratch = append(j.scratch, nil)
	}
	runParallel(j, items, threads)
	return nil
}

func (k *convKernel) getJob() *convJob {
	j := k.jobs.get()
	j.k = k
	return j
}

func (k *convKernel) putJob(j *convJob) {
	j.x, j.o, j.pa, j.bias = nil, nil, nil, nil
	k.jobs.put(j)
}

func (j *convJob) do(w, item int) {
	chunk := item % j.chunks
	img := item / j.chunks
	grp := img % j.k.group
	img /= j.k.group
	g := &j.g
	q0 := chunk * j.chunkPanels
	col0 := q0 * gemmNR
	cols := min(j.chunkPanels*gemmNR, g.outSize-col0)
	npan := ceilDiv(cols, gemmNR)
	size := npan * gemmNR * j.kg
	if cap(j.scratch[w]) < size+gemmTileMax {
		j.scratch[w] = make([]float32, size+gemmTileMax)
	}
	pb := j.scratch[w][:size]
	tile := j.scratch[w][size : size+gemmTileMax]
	x := j.x[(img*j.k.group+grp)*j.c*g.inSize:]
	im2colPanels(pb, x, g, j.c, col0, cols)
	call := gemmCall{
		m: j.mg, n: cols, k: j.kg,
		pa:   j.pa[grp*packedASize(j.mg, j.kg):],
		pb:   pb,
		c:    j.o[((img*j.k.group+grp)*j.mg)*g.outSize+col0:],
		ldc:  g.outSize,
		act:  j.k.act,
		tile: tile,
	}
	if j.bias != nil {
		call.rowBias = j.bias[grp*j.mg : (grp+1)*j.mg]
	}
	call.cols(0, npan, 0)
}

// im2colPanels writes the input patches of output positions col0..col0+cols
// as packed B panels: row r = (channel, kd, kh, kw) in the weights' order,
// column = output position, zero where the window hangs over the padding.
// Positions of one panel that share an output row form a segment whose
// inputs, at stride 1, are one contiguous run: a copy plus zero fill.
func im2colPanels(dst, x []float32, g *geom, c, col0, cols int) {
	type segment struct{ j, n, od, oh, ow int }
	var segs [gemmNR]segment
	kk := c * g.K
	ow := g.out[2]
	inW := g.in[2]
	for p := 0; p*gemmNR < cols; p++ {
		panel := dst[p*gemmNR*kk : (p+1)*gemmNR*kk]
		width := min(gemmNR, cols-p*gemmNR)
		ns := 0
		for j := 0; j < width; {
			pos := col0 + p*gemmNR + j
			x0 := pos % ow
			rest := pos / ow
			n := min(width-j, ow-x0)
			segs[ns] = segment{j: j, n: n, od: rest / g.out[1], oh: rest % g.out[1], ow: x0}
			ns++
			j += n
		}
		if width < gemmNR {
			for r := range kk {
				clear(panel[r*gemmNR+width : (r+1)*gemmNR])
			}
		}
		for _, s := range segs[:ns] {
			row := 0
			for ch := range c {
				xc := x[ch*g.inSize : (ch+1)*g.inSize]
				for kd := range g.k[0] {
					id := s.od*g.stride[0] - g.padB[0] + kd*g.dil[0]
					for kh := range g.k[1] {
						ih := s.oh*g.stride[1] - g.padB[1] + kh*g.dil[1]
						if id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] {
							for range g.k[2] {
								clear(panel[row*gemmNR+s.j : row*gemmNR+s.j+s.n])
								row++
							}
							continue
						}
						src := xc[(id*g.in[1]+ih)*inW:][:inW]
						ix0 := s.ow*g.stride[2] - g.padB[2]
						for kw := range g.k[2] {
							seg := panel[row*gemmNR+s.j : row*gemmNR+s.j+s.n]
							row++
							ix := ix0 + kw*g.dil[2]
							if g.stride[2] == 1 {
								if ix >= 0 && ix+s.n <= inW {
									if s.n == gemmNR {
										// A whole panel row: an inlined 64-byte move.
										*(*[gemmNR]float32)(seg) = *(*[gemmNR]float32)(src[ix:])
									} else {
										copy(seg, src[ix:ix+s.n])
									}
									continue
								}
								// Pads wider than the kernel reaches put the
								// whole segment left or right of the input.
								lo := min(max(0, -ix), s.n)
								hi := max(min(s.n, inW-ix), lo)
								clear(seg[:lo])
								if hi > lo {
									copy(seg[lo:hi], src[ix+lo:ix+hi])
								}
								clear(seg[hi:])
								continue
							}
							for t := range seg {
								if xi := ix + t*g.stride[2]; xi >= 0 && xi < inW {
									seg[t] = src[xi]
								} else {
									seg[t] = 0
								}
							}
						}
					}
				}
			}
		}
	}
}

// convTransposeKernel is ConvTranspose: per image and group, the weights
// transposed times the input gives every input position's contribution to a
// window of outputs (a GEMM), which col2im adds into place.
type convTransposeKernel struct {
	w                  windowAttrs
	group              int
	outPad, outShape   []int64
	scratchA, scratchB int
	scratchCol         int
}

func compileConvTranspose(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 3); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1, 2); err != nil {
		return nil, nil, err
	}
	w, err := parseWindow(x, false)
	if err != nil {
		return nil, nil, err
	}
	group, err := x.intAttr("group", 1)
	if err != nil {
		return nil, nil, err
	}
	if group < 1 || group > 1<<20 {
		return nil, nil, fmt.Errorf("attribute group is %d, want at least 1", group)
	}
	k := &convTransposeKernel{w: w, group: int(group),
		scratchA: x.newScratch(), scratchB: x.newScratch(), scratchCol: x.newScratch()}
	if k.outPad, _, err = x.intsAttr("output_padding"); err != nil {
		return nil, nil, err
	}
	if k.outShape, _, err = x.intsAttr("output_shape"); err != nil {
		return nil, nil, err
	}
	return k, []tensor.DType{tensor.Float}, nil
}

// geometry resolves the output size and padding per the spec: from
// output_shape (padding split as auto_pad says), SAME_* (output = input ×
// stride), or the explicit pads.
func (k *convTransposeKernel) geometry(in, ks []int) (geom, error) {
	var g geom
	nsp := len(in)
	if nsp == 0 || nsp > maxSpatial {
		return g, fmt.Errorf("%d spatial dimensions; 1 to %d are supported", nsp, maxSpatial)
	}
	if err := k.w.check(nsp); err != nil {
		return g, err
	}
	if k.outPad != nil && len(k.outPad) != nsp {
		return g, fmt.Errorf("attribute output_padding %v has %d values, want %d", k.outPad, len(k.outPad), nsp)
	}
	outShape := k.outShape
	if len(outShape) == nsp+2 {
		outShape = outShape[2:]
	}
	if outShape != nil && len(outShape) != nsp {
		return g, fmt.Errorf("attribute output_shape %v has %d values, want %d", k.outShape, len(k.outShape), nsp)
	}
	g.nsp = nsp
	off := maxSpatial - nsp
	for i := range maxSpatial {
		g.in[i], g.out[i], g.k[i], g.stride[i], g.dil[i] = 1, 1, 1, 1, 1
	}
	for i := range nsp {
		d := off + i
		g.in[d], g.k[d] = in[i], ks[i]
		if k.w.strides != nil {
			g.stride[d] = int(k.w.strides[i])
		}
		if k.w.dilations != nil {
			g.dil[d] = int(k.w.dilations[i])
		}
		op := 0
		if k.outPad != nil {
			op = int(k.outPad[i])
		}
		full := g.stride[d]*(g.in[d]-1) + op + (g.k[d]-1)*g.dil[d] + 1
		switch {
		case outShape != nil || k.w.autoPad == "SAME_UPPER" || k.w.autoPad == "SAME_LOWER":
			if outShape != nil {
				g.out[d] = int(outShape[i])
			} else {
				g.out[d] = g.in[d] * g.stride[d]
			}
			total := full - g.out[d]
			if total < 0 {
				// More output than the input reaches: the rest is bias only.
				total = 0
			}
			if k.w.autoPad == "SAME_UPPER" {
				g.padB[d] = total / 2
			} else {
				g.padB[d] = total - total/2
			}
			g.padE[d] = total - g.padB[d]
		default:
			if k.w.pads != nil && k.w.autoPad != "VALID" {
				g.padB[d], g.padE[d] = int(k.w.pads[i]), int(k.w.pads[nsp+i])
			}
			g.out[d] = full - g.padB[d] - g.padE[d]
		}
		if g.out[d] < 0 {
			return g, fmt.Errorf("output spatial size %d is negative", g.out[d])
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

func (k *convTransposeKernel) run(st *state, nd *node) error {
	x, w := st.in(nd, 0), st.in(nd, 1)
	if len(x.shape) < 3 || len(x.shape) != len(w.shape) {
		return fmt.Errorf("input has shape %v and weights %v; want [N, C, spatial…] and [C, M/group, k…]", x.shape, w.shape)
	}
	n, c := x.shape[0], x.shape[1]
	if w.shape[0] != c || c%k.group != 0 {
		return fmt.Errorf("input has %d channels; weights of shape %v with group %d do not fit", c, w.shape, k.group)
	}
	if k.w.kernel != nil {
		for i, d := range k.w.kernel {
			if i >= len(w.shape)-2 || int(d) != w.shape[2+i] {
				return fmt.Errorf("kernel_shape %v does not match weights of shape %v", k.w.kernel, w.shape)
			}
		}
	}
	g, err := k.geometry(x.shape[2:], w.shape[2:])
	if err != nil {
		return err
	}
	cg, mg := c/k.group, w.shape[1]
	m := mg * k.group
	var bias []float32
	if b := st.in(nd, 2); b != nil {
		if len(b.f) != m {
			return fmt.Errorf("bias has shape %v for %d output channels", b.shape, m)
		}
		bias = b.f
	}
	out := nd.out[0]
	g.outShape(st, out, n, m)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	rows := mg * g.K
	pa := st.scratchF(k.scratchA, packedASize(rows, cg))
	pb := st.scratchF(k.scratchB, packedBSize(cg, g.inSize))
	col := st.scratchF(k.scratchCol, rows*g.inSize+gemmTileMax)
	tile := col[rows*g.inSize:]
	col = col[:rows*g.inSize]
	for img := range n {
		for grp := range k.group {
			oc := o[(img*m+grp*mg)*g.outSize : (img*m+(grp+1)*mg)*g.outSize]
			for co := range mg {
				var b float32
				if bias != nil {
					b = bias[grp*mg+co]
				}
				plane := oc[co*g.outSize : (co+1)*g.outSize]
				for i := range plane {
					plane[i] = b
				}
			}
			if cg == 0 || g.inSize == 0 {
				continue
			}
			// A = W_gᵀ: row (co, k…), column ci, at W[ci·rows + row].
			packA(pa, w.f[grp*cg*rows:], rows, cg, 1, rows, 1)
			packB(pb, x.f[(img*c+grp*cg)*g.inSize:], cg, g.inSize, g.inSize, 1, 1)
			call := gemmCall{m: rows, n: g.inSize, k: cg, pa: pa, pb: pb, c: col, ldc: g.inSize, tile: tile}
			call.cols(0, ceilDiv(g.inSize, gemmNR), 0)
			col2im(oc, col, &g, mg)
		}
	}
	return nil
}

// col2im adds col [(co, kd, kh, kw), input position] into out [co, output
// position] at output = input·stride − pad + k·dilation.
func col2im(out, col []float32, g *geom, mg int) {
	row := 0
	for co := range mg {
		plane := out[co*g.outSize : (co+1)*g.outSize]
		for kd := range g.k[0] {
			for kh := range g.k[1] {
				for kw := range g.k[2] {
					src := col[row*g.inSize : (row+1)*g.inSize]
					row++
					i := 0
					for id := range g.in[0] {
						od := id*g.stride[0] - g.padB[0] + kd*g.dil[0]
						for ih := range g.in[1] {
							oh := ih*g.stride[1] - g.padB[1] + kh*g.dil[1]
							if od < 0 || od >= g.out[0] || oh < 0 || oh >= g.out[1] {
								i += g.in[2]
								continue
							}
							dst := plane[(od*g.out[1]+oh)*g.out[2]:][:g.out[2]]
							for iw := range g.in[2] {
								ow := iw*g.stride[2] - g.padB[2] + kw*g.dil[2]
								if ow >= 0 && ow < g.out[2] {
									dst[ow] += src[i]
								}
								i++
							}
						}
					}
				}
			}
		}
	}
}
