package onnxrt

// The depthwise path: a convolution whose every group is one input and one
// output channel (MobileNet's 3×3 depthwise layers) is, per channel, a small
// window sum over one plane. Through the GEMM it is a one-row matrix product,
// so a micro-kernel of 6 or 8 rows does 6–8 times the work it needs; here
// each kernel tap adds a weighted input row to the output row instead.
//
// It runs where the portable Go micro-kernel is the GEMM (arm64, arm,
// -tags purego, INFERGATE_GEMM_KERNEL=go): there the one-row product wastes
// scalar work and this loop is strictly less of it. The AVX-512 and AVX2
// kernels keep the GEMM path, whose 16 lanes may outrun a scalar loop even
// at 1/8 occupancy; which is faster there is for measurement to say.
var useDepthwise = true

// depthwiseJob is one call on the depthwise path; work items are (image,
// channel, chunk of output rows).
type depthwiseJob struct {
	k        *convKernel
	g        geom
	x, o, pa []float32
	bias     []float32
	c        int // channels
	chunks   int // per image and channel
	rows     int // output rows (depth × height) per chunk
}

func (k *convKernel) runDepthwise(g geom, x, o, pa, bias []float32, n, c int) {
	j := k.depthwiseJobs.get()
	defer func() {
		j.k, j.x, j.o, j.pa, j.bias = nil, nil, nil, nil, nil
		k.depthwiseJobs.put(j)
	}()
	j.k, j.g, j.x, j.o, j.pa, j.bias, j.c = k, g, x, o, pa, bias, c
	threads := min(k.threads, max(1, n*c*g.K*g.outSize/(64<<10)))
	rows := g.out[0] * g.out[1]
	// Split a channel's rows only when there are too few channels to
	// share out (a batch of one image with few channels).
	j.chunks = 1
	if items := n * c; items < 2*threads {
		j.chunks = min(rows, ceilDiv(2*threads, items))
	}
	j.rows = ceilDiv(rows, j.chunks)
	j.chunks = ceilDiv(rows, j.rows)
	runParallel(j, n*c*j.chunks, threads)
}

func (j *depthwiseJob) do(_, item int) {
	g := &j.g
	chunk := item % j.chunks
	plane := item / j.chunks // image × channels + channel
	ch := plane % j.c
	x := j.x[plane*g.inSize : (plane+1)*g.inSize]
	o := j.o[plane*g.outSize : (plane+1)*g.outSize]
	// The channel's weights are its group's packed A panel: one row, so
	// tap t is at t·gemmMR.
	pa := j.pa[ch*packedASize(1, g.K):]
	var b float32
	if j.bias != nil {
		b = j.bias[ch]
	}
	ow := g.out[2]
	r0 := chunk * j.rows
	r1 := min(r0+j.rows, g.out[0]*g.out[1])
	for r := r0; r < r1; r++ {
		od, oh := r/g.out[1], r%g.out[1]
		row := o[r*ow : (r+1)*ow]
		for i := range row {
			row[i] = b
		}
		for kd := range g.k[0] {
			id := od*g.stride[0] - g.padB[0] + kd*g.dil[0]
			if id < 0 || id >= g.in[0] {
				continue
			}
			for kh := range g.k[1] {
				ih := oh*g.stride[1] - g.padB[1] + kh*g.dil[1]
				if ih < 0 || ih >= g.in[1] {
					continue
				}
				src := x[(id*g.in[1]+ih)*g.in[2] : (id*g.in[1]+ih+1)*g.in[2]]
				for kw := range g.k[2] {
					w := pa[((kd*g.k[1]+kh)*g.k[2]+kw)*gemmMR]
					addTap(row, src, w, kw*g.dil[2]-g.padB[2], g.stride[2])
				}
			}
		}
		j.k.act.apply(row)
	}
}

// addTap adds w·src[ow·stride + off] to row[ow] for every ow whose input
// column is inside src.
func addTap(row, src []float32, w float32, off, stride int) {
	last := len(src) - 1 - off // the largest ow·stride inside src
	if last < 0 {
		return
	}
	lo := 0
	if off < 0 {
		lo = ceilDiv(-off, stride)
	}
	hi := min(len(row), last/stride+1)
	if lo >= hi {
		return
	}
	if stride == 1 {
		s := src[lo+off : hi+off]
		r := row[lo:hi]
		for i, v := range s {
			r[i] += w * v
		}
		return
	}
	for ow := lo; ow < hi; ow++ {
		row[ow] += w * src[ow*stride+off]
	}
}
