package onnxrt

// A blocked single-precision GEMM for the large products (convolution after
// im2col, dense layers at batch ≥ gemmMinRows). Both operands are packed into
// panels so the micro-kernel reads memory strictly sequentially:
//
//   - A (M×K) in panels of gemmMR rows: for each k, gemmMR values.
//   - B (K×N) in panels of gemmNR columns: for each k, gemmNR values.
//
// The micro-kernel computes one gemmMR×gemmNR tile of C from one A panel and
// one B panel. Rows and columns past M and N are zero in the panels, so the
// kernel always runs full tiles; partial tiles go through a small buffer.
// Weights are packed once at load; the activation side (im2col columns, or
// the rows of a dense layer's input) is packed per call into reused scratch.

// gemmNR is fixed; gemmMR is the selected micro-kernel's row count (6 for
// AVX2 and the portable kernel, 8 for AVX-512). Panels are packed with the
// gemmMR in force at load time, so it is only set at start (and by tests
// before they load).
const (
	gemmNR    = 16
	gemmMRMax = 8
)

var gemmMR = 6

// gemmTileMax is the largest partial-tile buffer any kernel needs;
// gemmTile is the same (the name the recurrent kernels use).
const (
	gemmTileMax = gemmMRMax * gemmNR
	gemmTile    = gemmTileMax
)

// microKernel computes c[i*ldc+j] = Σ_k a[k*MR+i]·b[k*NR+j] for one full
// tile, overwriting c. a holds k·MR values, b k·NR, c (MR-1)·ldc+NR.
type microKernel func(k int, a, b, c []float32, ldc int)

// rowsKernel computes one full gemmMR×gemmNR tile like microKernel but reads
// A where it lies — row i of the tile at a[i*lda:], k values — and starts
// the sums from bias (16 per-column values; nil: zero). Where the CPU has
// none (gemmRows nil), A is packed instead.
type rowsKernel func(k int, a []float32, lda int, b, c []float32, ldc int, bias []float32)

var gemmRows rowsKernel

// kernel is the micro-kernel in use: the assembly one where the CPU has it
// (gemm_amd64.go), else kernelGo. Tests switch it to compare the two.
var gemmKernel microKernel = kernelGo

// kernelName says which micro-kernel runs, for benchmarks and the bench command.
var kernelName = "go"

// KernelName says which GEMM micro-kernel this CPU uses: "avx2+fma" (Go
// assembly) or "go" (the portable loop).
func KernelName() string { return kernelName }

// kernelGo is the portable micro-kernel, for either row count.
func kernelGo(k int, a, b, c []float32, ldc int) {
	mr := gemmMR
	var acc [gemmMRMax][gemmNR]float32
	a = a[:k*mr]
	b = b[:k*gemmNR]
	for kk := range k {
		bb := (*[gemmNR]float32)(b[kk*gemmNR:])
		aa := a[kk*mr : kk*mr+mr]
		for i, ai := range aa {
			r := &acc[i]
			for j := range gemmNR {
				r[j] += ai * bb[j]
			}
		}
	}
	for i := range mr {
		copy(c[i*ldc:i*ldc+gemmNR], acc[i][:])
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// packedASize is the length of A packed for m rows and k columns.
func packedASize(m, k int) int { return ceilDiv(m, gemmMR) * gemmMR * k }

// packedBSize is the length of B packed for k rows and n columns.
func packedBSize(k, n int) int { return ceilDiv(n, gemmNR) * gemmNR * k }

// packA packs the m×k matrix with element (i,kk) at a[i*rs+kk*cs] into
// dst (packedASize(m,k) long), scaled by alpha.
func packA(dst, a []float32, m, k, rs, cs int, alpha float32) {
	for p := 0; p < m; p += gemmMR {
		panel := dst[p*k : (p+gemmMR)*k]
		for kk := range k {
			d := panel[kk*gemmMR : kk*gemmMR+gemmMR]
			for i := range gemmMR {
				if p+i < m {
					d[i] = alpha * a[(p+i)*rs+kk*cs]
				} else {
					d[i] = 0
				}
			}
		}
	}
}

// packB packs the k×n matrix with element (kk,j) at b[kk*rs+j*cs] into dst
// (packedBSize(k,n) long), scaled by alpha.
func packB(dst, b []float32, k, n, rs, cs int, alpha float32) {
	for q := 0; q < n; q += gemmNR {
		panel := dst[q*k : (q+gemmNR)*k]
		w := min(gemmNR, n-q)
		for kk := range k {
			d := panel[kk*gemmNR : kk*gemmNR+gemmNR]
			src := b[kk*rs+q*cs:]
			if cs == 1 && alpha == 1 {
				copy(d[:w], src[:w])
			} else {
				for j := range w {
					d[j] = alpha * src[j*cs]
				}
			}
			clear(d[w:])
		}
	}
}

// gemmCall is one product C = A·B (+ bias, then an activation) over packed
// operands; cols computes a range of B panels, so calls split by columns
// run in parallel without sharing any output.
type gemmCall struct {
	m, n, k int
	pa, pb  []float32 // packed; pb may hold only the panels cols is given
	// a, if set, is A unpacked, row i at a[i*lda:] (columns contiguous):
	// with gemmRows the full panels are read in place and only a last
	// partial one is packed, into pa (which then needs gemmMR·k values).
	a       []float32
	lda     int
	c       []float32
	ldc     int
	rowBias []float32 // added to row i (convolution: per output channel)
	colBias []float32 // added to column j (dense layer)
	act     activation
	// tile (gemmTileMax long) takes the partial tiles at the edges. The caller
	// provides it from reused memory: a local array would escape to the heap
	// through the kernel's function value and cost an allocation per call.
	tile []float32
}

// cols computes the columns of panels [q0,q1) of pb (pb's panel q0 at
// offset pbOff), writing C's columns q0·NR.. into c. The A panel is the outer
// loop: it stays in L1 while the B panels (sized by the caller to fit L2)
// pass under it, and each block of MR rows is finished (bias, activation)
// over the whole column range at once, while still in cache.
func (g *gemmCall) cols(q0, q1, pbOff int) {
	tile := g.tile
	if tile == nil {
		tile = make([]float32, gemmTileMax)
	}
	k := g.k
	j0 := q0 * gemmNR
	jEnd := min(q1*gemmNR, g.n)
	rows := g.a != nil && gemmRows != nil && k > 0
	// With A in place and whole panels of columns, the kernel starts from
	// the bias, so finish need not add it.
	biasIn := rows && g.colBias != nil && g.n%gemmNR == 0
	for p := 0; p < g.m; p += gemmMR {
		h := min(gemmMR, g.m-p)
		var ap []float32
		if g.a == nil {
			ap = g.pa[p*k:]
		} else {
			if rows && h == gemmMR {
				g.rowsPanel(p, q0, q1, pbOff, biasIn, tile)
				g.finish(p, h, j0, jEnd-j0, biasIn)
				continue
			}
			ap = g.pa[:gemmMR*k]
			packA(ap, g.a[p*g.lda:], h, k, g.lda, 1, 1)
		}
		for q := q0; q < q1; q++ {
			bp := g.pb[pbOff+(q-q0)*gemmNR*k:]
			jq := q * gemmNR
			w := min(gemmNR, g.n-jq)
			off := p*g.ldc + jq
			if h == gemmMR && w == gemmNR {
				gemmKernel(k, ap, bp, g.c[off:], g.ldc)
				continue
			}
			gemmKernel(k, ap, bp, tile, gemmNR)
			for i := range h {
				copy(g.c[off+i*g.ldc:off+i*g.ldc+w], tile[i*gemmNR:i*gemmNR+w])
			}
		}
		g.finish(p, h, j0, jEnd-j0, false)
	}
}

// rowsPanel computes the full row panel at p over the B panels [q0,q1) with
// gemmRows, A read in place; biasIn: the kernel adds the column bias.
func (g *gemmCall) rowsPanel(p, q0, q1, pbOff int, biasIn bool, tile []float32) {
	k := g.k
	ar := g.a[p*g.lda:]
	for q := q0; q < q1; q++ {
		bp := g.pb[pbOff+(q-q0)*gemmNR*k:]
		jq := q * gemmNR
		var bias []float32
		if biasIn {
			bias = g.colBias[jq : jq+gemmNR]
		}
		w := min(gemmNR, g.n-jq)
		off := p*g.ldc + jq
		if w == gemmNR {
			gemmRows(k, ar, g.lda, bp, g.c[off:], g.ldc, bias)
			continue
		}
		gemmRows(k, ar, g.lda, bp, tile, gemmNR, bias)
		for i := range gemmMR {
			copy(g.c[off+i*g.ldc:off+i*g.ldc+w], tile[i*gemmNR:i*gemmNR+w])
		}
	}
}

// finish adds the bias (the column bias unless the kernel did) and applies
// the activation to the h×w tile at (i0,j0) while it is still in cache.
func (g *gemmCall) finish(i0, h, j0, w int, colBiasDone bool) {
	colBias := g.colBias
	if colBiasDone {
		colBias = nil
	}
	if g.rowBias == nil && colBias == nil && !g.act.on {
		return
	}
	relu := g.act.on && g.act.op == uRelu
	for i := i0; i < i0+h; i++ {
		row := g.c[i*g.ldc+j0 : i*g.ldc+j0+w]
		if relu && colBias == nil {
			// The common convolution epilogue in one pass.
			var b float32
			if g.rowBias != nil {
				b = g.rowBias[i]
			}
			// max, not a branch: the builtin compiles branch-free, and a
			// branch on the sign of random activations mispredicts half
			// the time (it cost 15× in a profile).
			for j, v := range row {
				row[j] = max(v+b, 0)
			}
			continue
		}
		if g.rowBias != nil {
			b := g.rowBias[i]
			for j := range row {
				row[j] += b
			}
		}
		if colBias != nil {
			cb := colBias[j0 : j0+w]
			for j := range row {
				row[j] += cb[j]
			}
		}
		g.act.apply(row)
	}
}
