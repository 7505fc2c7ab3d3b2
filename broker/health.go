package broker

import (
	"encoding/binary"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Health is what the embedded broker knows about its data dir beyond "it runs".
type Health struct {
	// DiskFull: produce requests are refused (KAFKA_STORAGE_ERROR, which clients retry)
	// because the data dir's file system has less than MinFreeBytes free.
	DiskFull     bool
	FreeBytes    int64 // -1 when not measured
	MinFreeBytes int64
	// Corrupt lists damage found in the data dir when the broker loaded it.
	Corrupt []Corruption
	// SyncFailed is set once an fsync of the data dir failed (durability
	// fsync): from then on nothing is acknowledged until a restart.
	SyncFailed error
}

// Corruption is damage found while loading the data dir. For a segment, the records from
// FirstLostOffset on (to LastLostOffset, or to the end of the partition's log when it is -1)
// were cut off: kfake truncates a segment at its first batch that fails its CRC.
type Corruption struct {
	File                            string // relative to the data dir
	Topic                           string // "" when not a segment
	Partition                       int32
	Bytes                           int64 // bytes discarded
	FirstLostOffset, LastLostOffset int64 // -1 when unknown
	Detail                          string
}

// String says which data was lost.
func (c Corruption) String() string {
	if c.Topic == "" {
		return fmt.Sprintf("%s: %s", c.File, c.Detail)
	}
	s := fmt.Sprintf("topic %s partition %d: segment %s was corrupt; %d bytes cut off", c.Topic, c.Partition, c.File, c.Bytes)
	switch {
	case c.FirstLostOffset >= 0 && c.LastLostOffset >= 0:
		s += fmt.Sprintf(": records at offsets %d to %d are lost", c.FirstLostOffset, c.LastLostOffset)
	case c.FirstLostOffset >= 0:
		s += fmt.Sprintf(": records from offset %d to the end of the log are lost (later offsets are reused by new records)", c.FirstLostOffset)
	}
	return s
}

// Health reports free space (measured now) and the damage found at start.
func (e *Embedded) Health() Health {
	free := e.guard.measure()
	e.klog.mu.Lock()
	corrupt := append([]Corruption(nil), e.klog.corrupt...)
	e.klog.mu.Unlock()
	h := Health{DiskFull: e.guard.full.Load(), FreeBytes: free, MinFreeBytes: e.cfg.MinFreeBytes, Corrupt: corrupt}
	if e.gsync != nil {
		h.SyncFailed = e.gsync.failed()
	}
	return h
}

// diskGuard refuses produce requests below the free-space floor. kfake writes every
// produced batch to its segment; on a full disk the write fails after the batch was
// accepted in memory, so the batch can be neither persisted nor fetched. Refusing the produce
// up front with a retriable error keeps producers retrying (nothing is lost) and leaves the
// floor to the DLQ store, whose database crashes the process when the disk fills under it.
type diskGuard struct {
	dir   string
	min   int64
	full  atomic.Bool
	last  atomic.Int64 // unix nanos of the last measurement
	free  atomic.Int64
	onLog func(full bool, free int64)
}

// measureEvery bounds the statfs calls on the produce path.
const measureEvery = 100 * time.Millisecond

func (g *diskGuard) measure() int64 {
	if g.min <= 0 {
		return -1
	}
	free, ok := freeBytes(g.dir)
	if !ok {
		return -1
	}
	g.free.Store(free)
	g.last.Store(time.Now().UnixNano())
	full := free < g.min
	if was := g.full.Swap(full); was != full && g.onLog != nil {
		g.onLog(full, free)
	}
	return free
}

// refuse reports whether produce requests are refused now.
func (g *diskGuard) refuse() bool {
	if g.min <= 0 {
		return false
	}
	if time.Since(time.Unix(0, g.last.Load())) >= measureEvery {
		g.measure()
	}
	return g.full.Load()
}

// install answers produce requests with KAFKA_STORAGE_ERROR while the disk is full.
func (g *diskGuard) install(c *kfake.Cluster) {
	if g.min <= 0 {
		return
	}
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !g.refuse() {
			return nil, nil, false
		}
		req := kr.(*kmsg.ProduceRequest)
		if req.Acks == 0 {
			return nil, nil, true // no response expected; dropped, as a full broker would
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		msg := fmt.Sprintf("infergate broker: data dir has %d bytes free, below the floor of %d (min_free_bytes); retry later", g.free.Load(), g.min)
		for _, t := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.KafkaStorageError.Code
				if req.Version >= 8 {
					rp.ErrorMessage = &msg
				}
				rp.BaseOffset, rp.LogStartOffset = -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
}

// corruption formats kfake logs (at warn) when it finds damage while loading its data dir.
const (
	fmtSegmentTruncated = "partition %s-%d segment %d: truncating %d corrupt bytes"
	fmtPIDsDiscarded    = "pids.log: discarding %d corrupt trailing bytes"
	fmtPIDsSkipped      = "pids.log: skipping corrupt entry: %v"
	fmtGroupsDiscarded  = "groups.log: discarding %d corrupt trailing bytes"
	fmtSessionCorrupt   = "session_state.json: corrupt, ignoring: %v"
)

// noteCorruption records damage kfake reports through its logger.
func (k *kfakeLogger) noteCorruption(format string, args []any) bool {
	var c Corruption
	switch format {
	case fmtSegmentTruncated:
		if len(args) != 4 {
			return false
		}
		topic, _ := args[0].(string)
		part, _ := args[1].(int32)
		base, _ := args[2].(int64)
		n, _ := args[3].(int)
		c = Corruption{Topic: topic, Partition: part, Bytes: int64(n), FirstLostOffset: -1, LastLostOffset: -1,
			File: filepath.Join("partitions", fmt.Sprintf("%s-%d", url.PathEscape(topic), part), strconv.FormatInt(base, 10)+".dat")}
	case fmtPIDsDiscarded, fmtPIDsSkipped:
		c = Corruption{File: "pids.log", FirstLostOffset: -1, LastLostOffset: -1,
			Detail: "producer state damaged (" + fmt.Sprintf(format, args...) + "); idempotent producers may see sequence errors once"}
	case fmtGroupsDiscarded:
		c = Corruption{File: "groups.log", FirstLostOffset: -1, LastLostOffset: -1,
			Detail: "committed offsets damaged (" + fmt.Sprintf(format, args...) + "); the last commits are lost, so their records are consumed again"}
	case fmtSessionCorrupt:
		c = Corruption{File: "session_state.json", FirstLostOffset: -1, LastLostOffset: -1, Detail: fmt.Sprintf(format, args...)}
	default:
		return false
	}
	k.mu.Lock()
	k.corrupt = append(k.corrupt, c)
	k.mu.Unlock()
	return true
}

// resolveLost fills in the offsets each truncated segment lost, once the broker has loaded
// (and truncated) them: the first lost offset follows the last batch kept; the last lost one
// precedes the next segment, when there is one.
func resolveLost(dataDir string, cs []Corruption) {
	for i := range cs {
		c := &cs[i]
		if c.Topic == "" {
			continue
		}
		path := filepath.Join(dataDir, c.File)
		base, _ := strconv.ParseInt(filepath.Base(path[:len(path)-len(".dat")]), 10, 64)
		c.FirstLostOffset = nextOffset(path, base)
		segs, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.dat"))
		var bases []int64
		for _, s := range segs {
			if b, err := strconv.ParseInt(filepath.Base(s[:len(s)-len(".dat")]), 10, 64); err == nil && b > base {
				bases = append(bases, b)
			}
		}
		sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
		if len(bases) > 0 {
			c.LastLostOffset = bases[0] - 1
		}
	}
}

// nextOffset is the offset after the last whole batch of a segment file (record-batch wire
// format: base offset at 0, length at 8, last offset delta at 23).
func nextOffset(path string, base int64) int64 {
	raw, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	next := base
	for pos := 0; pos+27 <= len(raw); {
		n := int(binary.BigEndian.Uint32(raw[pos+8 : pos+12]))
		if n <= 0 || pos+12+n > len(raw) {
			break
		}
		first := int64(binary.BigEndian.Uint64(raw[pos : pos+8]))
		delta := int64(int32(binary.BigEndian.Uint32(raw[pos+23 : pos+27])))
		next = first + delta + 1
		pos += 12 + n
	}
	return next
}
