package onnxrt

// Direct convolution for unit width stride (1-D and 2-D), without im2col.
//
// With stride 1 along the width, the patch row (channel, kh, kw) of 16
// neighbouring output positions of one output row is 16 neighbouring input
// values: in a copy of the input padded with zeros, one contiguous run. So
// the micro-kernel reads its B operand straight from that padded copy
// through a table of K offsets (an indirection table built once per call
// geometry), and nothing is unrolled. The profile of the 2-D CNN before this
// path: im2col cost as much as the micro-kernel, and the bias+ReLU pass over
// the output another third; here both are gone (the kernel adds the bias and
// applies ReLU before its store).
//
// Column panels never span two output rows, so a row whose width is not a
// multiple of 16 ends with a partial tile: directOK keeps the path to
// widths where that wastes at most a quarter of the work.

// indirectKernel computes one gemmMR×gemmNR tile: c[i*ldc+j] =
// bias[i] + Σ_k a[k*MR+i]·x[base+offs[k]+j], then max(·, 0) when relu. bias
// is nil or gemmMR long. panel (k·gemmNR long) is scratch for kernels that
// gather B first.
type indirectKernel func(k int, a, x []float32, base int, offs []int32, c []float32, ldc int, bias []float32, relu bool, panel []float32)

// gemmIndirect is the indirect kernel matching gemmKernel: the assembly one
// where there is one (gemm_amd64.go), else indirectGather.
var gemmIndirect indirectKernel = indirectGather

// indirectGather gathers the B panel and runs the packed micro-kernel: the
// portable path, and the one for kernels without an indirect form.
func indirectGather(k int, a, x []float32, base int, offs []int32, c []float32, ldc int, bias []float32, relu bool, panel []float32) {
	panel = panel[:k*gemmNR]
	for kk, off := range offs[:k] {
		*(*[gemmNR]float32)(panel[kk*gemmNR:]) = *(*[gemmNR]float32)(x[base+int(off):])
	}
	gemmKernel(k, a, panel, c, ldc)
	if bias == nil && !relu {
		return
	}
	for i := range gemmMR {
		row := (*[gemmNR]float32)(c[i*ldc:])
		var b float32
		if bias != nil {
			b = bias[i]
		}
		if relu {
			for j, v := range row {
				row[j] = max(v+b, 0)
			}
		} else {
			for j := range row {
				row[j] += b
			}
		}
	}
}

// directOK says whether the direct path fits geometry g: no depth
// dimension, width stride 1, and output rows wide enough that panels of 16
// waste at most a quarter of the work.
func directOK(g *geom) bool {
	if g.nsp > 2 || g.stride[2] != 1 || g.outSize == 0 {
		return false
	}
	ow := g.out[2]
	return 4*ow >= 3*ceilDiv(ow, gemmNR)*gemmNR
}

// directChunkBytes bounds one work item's padded input rows, so they stay
// in L2 while the weight panels pass over them.
const directChunkBytes = 192 << 10

// convDirectJob is one Conv call on the direct path, split into work items
// of (image, group, chunk of output rows).
type convDirectJob struct {
	k          *convKernel
	g          geom
	x, o, pa   []float32
	bias       []float32 // per group, padded to whole row panels; nil if none
	c, mg, kg  int
	wp         int // padded row width
	rowsChunk  int // output rows per item
	chunks     int // per image and group
	offs       []int32
	maxOff     int
	relu       bool
	scratch    [][]float32
	panelBytes int
}

// directGeometry fills the job's geometry-dependent parts: the offsets of
// the K patch rows in a padded chunk of rowsP rows and the chunking.
func (j *convDirectJob) plan(n, threads int) {
	g := &j.g
	j.wp = g.in[2] + g.padB[2] + g.padE[2]
	kh, kw := g.k[1], g.k[2]
	// Output rows per item: as many as keep the padded input in budget, but
	// enough items for every thread.
	rowBytes := 4 * j.c * g.stride[1] * j.wp
	rows := max(1, min(g.out[1], directChunkBytes/max(rowBytes, 1)))
	perImage := ceilDiv(g.out[1], rows)
	if want := 2 * threads; n*j.k.group*perImage < want {
		perImage = min(g.out[1], ceilDiv(want, n*j.k.group))
	}
	j.rowsChunk = ceilDiv(g.out[1], perImage)
	j.chunks = ceilDiv(g.out[1], j.rowsChunk)
	rowsP := (j.rowsChunk-1)*g.stride[1] + (kh-1)*g.dil[1] + 1
	if cap(j.offs) < j.kg {
		j.offs = make([]int32, j.kg)
	}
	j.offs = j.offs[:j.kg]
	i := 0
	for ch := range j.c {
		for y := range kh {
			for x := range kw {
				j.offs[i] = int32((ch*rowsP+y*g.dil[1])*j.wp + x*g.dil[2])
				i++
			}
		}
	}
	j.maxOff = int(j.offs[j.kg-1])
}

// rowsPadded is the number of padded input rows a chunk of rc output rows reads.
func (j *convDirectJob) rowsPadded(rc int) int {
	return (rc-1)*j.g.stride[1] + (j.g.k[1]-1)*j.g.dil[1] + 1
}

func (k *convKernel) runDirect(g geom, x, o, pa, bias []float32, n, cg, mg, kg int, st *state) {
	j := k.directJobs.get()
	defer func() {
		j.k, j.x, j.o, j.pa, j.bias = nil, nil, nil, nil, nil
		k.directJobs.put(j)
	}()
	j.k, j.g, j.x, j.o, j.pa = k, g, x, o, pa
	j.c, j.mg, j.kg = cg, mg, kg
	j.relu = k.act.on && k.act.op == uRelu
	threads := min(k.threads, max(1, n*k.m*kg*g.outSize/(64<<10)))
	j.plan(n, threads)
	j.bias = nil
	if bias != nil {
		// The kernel reads gemmMR bias values per row panel, past the
		// group's last channel too.
		per := ceilDiv(mg, gemmMR) * gemmMR
		bp := st.scratchF(k.scratchBias, k.group*per)
		clear(bp)
		for grp := range k.group {
			copy(bp[grp*per:grp*per+mg], bias[grp*mg:(grp+1)*mg])
		}
		j.bias = bp
	}
	for len(j.scratch) < threads {
		j.scratch = append(j.scratch, nil)
	}
	runParallel(j, n*k.group*j.chunks, threads)
}

func (j *convDirectJob) do(w, item int) {
	g := &j.g
	chunk := item % j.chunks
	img := item / j.chunks
	grp := img % j.k.group
	img /= j.k.group
	oh0 := chunk * j.rowsChunk
	oh1 := min(oh0+j.rowsChunk, g.out[1])
	rowsP := j.rowsPadded(j.rowsChunk) // the offsets' layout, even for a short last chunk
	bufLen := j.c*rowsP*j.wp + gemmNR
	need := bufLen + j.kg*gemmNR + gemmTileMax
	if cap(j.scratch[w]) < need {
		j.scratch[w] = make([]float32, need)
	}
	s := j.scratch[w][:need]
	buf, panel, tile := s[:bufLen], s[bufLen:bufLen+j.kg*gemmNR], s[bufLen+j.kg*gemmNR:]

	// The padded input rows of this chunk, channel after channel.
	inW, padL := g.in[2], g.padB[2]
	x := j.x[(img*j.k.group+grp)*j.c*g.inSize:]
	ih0 := oh0*g.stride[1] - g.padB[1]
	usedRows := j.rowsPadded(oh1 - oh0)
	for ch := range j.c {
		xc := x[ch*g.inSize : (ch+1)*g.inSize]
		dst := buf[ch*rowsP*j.wp : (ch+1)*rowsP*j.wp]
		for r := range rowsP {
			row := dst[r*j.wp : (r+1)*j.wp]
			ih := ih0 + r
			if r >= usedRows || ih < 0 || ih >= g.in[1] {
				clear(row)
				continue
			}
			clear(row[:padL])
			copy(row[padL:padL+inW], xc[ih*inW:(ih+1)*inW])
			clear(row[padL+inW:])
		}
	}
	clear(buf[j.c*rowsP*j.wp:])

	ow := g.out[2]
	ldc := g.outSize
	act := j.k.act
	fuse := j.relu || !act.on
	pa := j.pa[grp*packedASize(j.mg, j.kg):]
	out := j.o[(img*j.k.group+grp)*j.mg*g.outSize:]
	biasPer := ceilDiv(j.mg, gemmMR) * gemmMR
	for p := 0; p < j.mg; p += gemmMR {
		ap := pa[p*j.kg:]
		h := min(gemmMR, j.mg-p)
		var bias []float32
		if j.bias != nil {
			bias = j.bias[grp*biasPer+p : grp*biasPer+p+gemmMR]
		}
		for oh := oh0; oh < oh1; oh++ {
			base := (oh - oh0) * g.stride[1] * j.wp
			for ow0 := 0; ow0 < ow; ow0 += gemmNR {
				w := min(gemmNR, ow-ow0)
				off := p*ldc + oh*ow + ow0
				if h == gemmMR && w == gemmNR {
					gemmIndirect(j.kg, ap, buf, base+ow0, j.offs, out[off:], ldc, bias, j.relu, panel)
					if !fuse {
						for i := range h {
							act.apply(out[off+i*ldc : off+i*ldc+w])
						}
					}
					continue
				}
				gemmIndirect(j.kg, ap, buf, base+ow0, j.offs, tile, gemmNR, bias, j.relu, panel)
				for i := range h {
					row := out[off+i*ldc : off+i*ldc+w]
					copy(row, tile[i*gemmNR:i*gemmNR+w])
					if !fuse {
						act.apply(row)
					}
				}
			}
		}
	}
}
