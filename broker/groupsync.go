package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The fsync durability as a group commit.
//
// kfake's own SyncWrites fsyncs the segment and the index of every partition
// batch, and the group log at every offset commit, on the broker's one
// goroutine: each produce request costs two fsyncs per partition it touches,
// queued behind every other connection's, and the broker does nothing else
// meanwhile. Instead kfake runs without SyncWrites (every write still goes to
// the OS before the response is made) and the response to every request that
// may have changed the data dir waits, on its own connection only, for one
// round of fdatasync over the broker's files that began after it was written.
// One round serves every response waiting when it starts, however many
// partitions and connections they came from, and syncs only the files written
// since the round before (reported by an inotify watch on Linux, found by
// listing the directories elsewhere). The promise is the one
// SyncWrites gives — nothing is acknowledged before it is on stable storage —
// and a few things more: a directory is fsynced when a file appears in it, and
// a failed fsync fails every later acknowledgement instead of being ignored.

// readOnlyAPI marks the Kafka API keys whose requests change nothing kfake
// persists; their responses are never held. Every other key (produce, offset
// commits, group membership, transactions, topic and config changes, and any
// key not listed, including ones newer than this table) waits for a round.
var readOnlyAPI = func() (ro [128]bool) {
	for _, k := range []int{
		1,  // Fetch
		2,  // ListOffsets
		3,  // Metadata
		9,  // OffsetFetch
		10, // FindCoordinator
		12, // Heartbeat
		15, // DescribeGroups
		16, // ListGroups
		17, // SaslHandshake
		18, // ApiVersions
		23, // OffsetForLeaderEpoch
		29, // DescribeAcls
		32, // DescribeConfigs
		35, // DescribeLogDirs
		36, // SaslAuthenticate
		46, // ListPartitionReassignments
		48, // DescribeClientQuotas
		50, // DescribeUserScramCredentials
		60, // DescribeCluster
		61, // DescribeProducers
		65, // DescribeTransactions
		66, // ListTransactions
		69, // ConsumerGroupDescribe
		71, // GetTelemetrySubscriptions
		74, // ListConfigResources
		75, // DescribeTopicPartitions
		77, // ShareGroupDescribe
		90, // DescribeShareGroupOffsets
	} {
		ro[k] = true
	}
	return ro
}()

func heldAPI(key int16) bool {
	return key < 0 || int(key) >= len(readOnlyAPI) || !readOnlyAPI[key]
}

// groupSync runs the fdatasync rounds. Wait returns once a round that began
// after the call has finished.
type groupSync struct {
	dir    string
	parts  string       // dir/partitions, which holds a directory per partition
	syncFn func() error // one round; a field so tests can hold it

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // rounds begun
	done    uint64 // rounds finished
	want    uint64 // the highest round a waiter needs
	err     error  // sticky: after a failed fsync nothing is acknowledged
	closed  bool

	files map[string]*syncedFile // the broker's files, kept open between rounds
	dirs  map[string]bool        // partition directories seen in earlier rounds
	onErr func(error)            // told once, when the first round fails

	// watch says which files changed since the last round (inotify on
	// Linux), so a round syncs those without listing every directory; nil,
	// or after it could not say, a round scans everything (scanNext).
	watch    fileWatch
	scanNext bool
	scans    atomic.Uint64     // rounds that scanned every directory
	synced   func(path string) // tests: told of every file and directory synced

	rounds   atomic.Uint64
	waits    atomic.Uint64
	syncTime atomic.Int64 // nanoseconds spent in rounds
	stopped  chan struct{}
}

var errGroupSyncClosed = errors.New("embedded broker is stopping")

func newGroupSync(dir string) *groupSync {
	s := &groupSync{dir: dir, parts: filepath.Join(dir, "partitions"), files: map[string]*syncedFile{}, dirs: map[string]bool{}, stopped: make(chan struct{}),
		watch: newFileWatch(), scanNext: true}
	s.cond = sync.NewCond(&s.mu)
	s.syncFn = s.syncFiles
	go s.loop()
	return s
}

// Wait blocks until everything written to the data dir before the call is on
// stable storage, or returns why it cannot be.
func (s *groupSync) Wait() error {
	s.waits.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.started + 1 // a round in progress may have begun before our write
	if s.want < target {
		s.want = target
		s.cond.Broadcast()
	}
	for s.done < target && s.err == nil && !s.closed {
		s.cond.Wait()
	}
	switch {
	case s.err != nil:
		return s.err
	case s.done < target:
		return errGroupSyncClosed
	}
	return nil
}

// failed is the error that stopped acknowledgements, nil while rounds succeed.
func (s *groupSync) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *groupSync) loop() {
	defer close(s.stopped)
	s.mu.Lock()
	for {
		for s.want <= s.done && !s.closed {
			s.cond.Wait()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.started++
		round, syncFn := s.started, s.syncFn
		s.mu.Unlock()

		start := time.Now()
		err := syncFn()
		s.syncTime.Add(int64(time.Since(start)))
		s.rounds.Add(1)

		s.mu.Lock()
		s.done = round
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("embedded broker: fsync of the data dir failed, so nothing more is acknowledged; "+
				"restart infergate once the disk is healthy (records not acknowledged are retried by their producers): %w", err)
			if s.onErr != nil {
				s.onErr(s.err)
			}
		}
		s.cond.Broadcast()
	}
}

// Close ends the rounds, after the broker has stopped: waiters still waiting
// get errGroupSyncClosed (their connections are closed by then), and one last
// round makes what kfake wrote while stopping durable; kfake fsyncs its
// segments at close only with SyncWrites.
func (s *groupSync) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.stopped
	err := s.syncFn()
	for _, sf := range s.files {
		sf.f.Close()
	}
	s.files = nil
	if s.watch != nil {
		s.watch.close()
	}
	if err != nil {
		return fmt.Errorf("fsync of the data dir at close: %w", err)
	}
	return nil
}

// fileWatch reports what changed in the watched directories since it was
// last asked.
type fileWatch interface {
	// add watches dir; its changes are reported from then on.
	add(dir string) error
	// events returns the changes since the last call; ok is false when it
	// cannot tell them all, and everything must be scanned.
	events() (evs []fileEvent, ok bool)
	close()
}

type fileOp int

const (
	fileWritten fileOp = iota
	fileCreated        // or renamed into the directory
	fileRemoved        // or renamed out of it
)

type fileEvent struct {
	dir, name string
	op        fileOp
}

// syncFiles is one round: every file kfake appends to (partition segments and
// indexes, groups.log, pids.log) that was written since the last round is
// fdatasynced, and every directory a file appeared in since the last round is
// fsynced, so a new segment's name is as durable as its records. kfake writes
// its JSON state files with an fsync and a rename itself; they are skipped.
// With a watch the round syncs what it reports; without one, or when it
// cannot tell, the round scans every directory and syncs each file whose
// size changed.
func (s *groupSync) syncFiles() error {
	if s.watch != nil && !s.scanNext {
		if evs, ok := s.watch.events(); ok {
			return s.syncEvents(evs)
		}
	}
	return s.scanFiles()
}

// tracked reports whether a round syncs the file name of directory dir.
func (s *groupSync) tracked(dir, name string) bool {
	if strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".tmp") {
		return false
	}
	if dir == s.dir {
		return name == "groups.log" || name == "pids.log"
	}
	return filepath.Dir(dir) == s.parts
}

// syncEvents is a round from the watch's report.
func (s *groupSync) syncEvents(evs []fileEvent) error {
	if len(evs) == 0 {
		return nil
	}
	dirty := make(map[string]bool, len(evs))
	var created map[string]bool
	for _, ev := range evs {
		if !s.tracked(ev.dir, ev.name) {
			continue
		}
		path := filepath.Join(ev.dir, ev.name)
		switch ev.op {
		case fileWritten:
			dirty[path] = true
		case fileCreated:
			if sf := s.files[path]; sf != nil { // renamed over: the new file is synced
				sf.f.Close()
				delete(s.files, path)
			}
			dirty[path] = true
			if created == nil {
				created = map[string]bool{}
			}
			created[ev.dir] = true
		case fileRemoved:
			if sf := s.files[path]; sf != nil {
				sf.f.Close()
				delete(s.files, path)
			}
			delete(dirty, path)
		}
	}
	var errs []error
	for path := range dirty {
		sf := s.files[path]
		if sf == nil {
			var err error
			if sf, err = openSynced(path); err != nil {
				errs = append(errs, err)
				continue
			}
			if sf == nil {
				continue // removed after it was written: nothing to keep
			}
			s.files[path] = sf
		}
		// The size before the sync is what a scan may take as synced.
		size := int64(-1)
		if info, err := sf.f.Stat(); err == nil {
			size = info.Size()
		}
		if err := fdatasync(sf.f); err != nil {
			errs = append(errs, fmt.Errorf("fdatasync %s: %w", path, err))
			continue
		}
		sf.synced = size
		s.didSync(path)
	}
	for dir := range created {
		if err := fsyncPath(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		s.didSync(dir)
	}
	return errors.Join(errs...)
}

func (s *groupSync) didSync(path string) {
	if s.synced != nil {
		s.synced(path)
	}
}

// watchDir adds dir to the watch before a scan lists it, so nothing written
// after the listing goes unreported; a watch that fails is given up.
func (s *groupSync) watchDir(dir string) {
	if s.watch == nil {
		return
	}
	if err := s.watch.add(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.watch.close()
		s.watch = nil
	}
}

// scanFiles is a round that lists every directory.
func (s *groupSync) scanFiles() error {
	s.scans.Add(1)
	if s.watch != nil {
		// What is queued now is covered by this scan; what comes after the
		// drain is reported to the next round.
		s.watch.events()
		s.scanNext = false
	}
	seen := make(map[string]bool, len(s.files))
	var errs []error
	syncDir := func(dir string) {
		s.watchDir(dir)
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			return
		}
		added := false
		for _, e := range entries {
			name := e.Name()
			path := filepath.Join(dir, name)
			if e.IsDir() || !s.tracked(dir, name) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				if !errors.Is(err, os.ErrNotExist) { // deleted by retention since ReadDir
					errs = append(errs, err)
				}
				continue
			}
			seen[path] = true
			sf := s.files[path]
			if sf != nil && !os.SameFile(sf.info, info) {
				// Replaced by a rename (kfake compacts groups.log so):
				// the new file is synced from its first byte.
				sf.f.Close()
				sf = nil
			}
			if sf == nil {
				if sf, err = openSynced(path); err != nil {
					errs = append(errs, err)
					continue
				}
				if sf == nil {
					continue // removed since the listing
				}
				s.files[path] = sf
				added = true
			}
			// kfake only appends to these files (a failed write is cut
			// off by a truncate), so an unchanged size means nothing new.
			if info.Size() == sf.synced {
				continue
			}
			if err := fdatasync(sf.f); err != nil {
				errs = append(errs, fmt.Errorf("fdatasync %s: %w", path, err))
				continue
			}
			sf.synced = info.Size()
			s.didSync(path)
		}
		if added {
			if err := fsyncPath(dir); err != nil {
				errs = append(errs, err)
			} else {
				s.didSync(dir)
			}
		}
	}

	syncDir(s.dir)
	parts := s.parts
	s.watchDir(parts)
	pdirs, err := os.ReadDir(parts)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	newPartition := false
	live := make(map[string]bool, len(pdirs))
	for _, d := range pdirs {
		if !d.IsDir() {
			continue
		}
		p := filepath.Join(parts, d.Name())
		live[p] = true
		if !s.dirs[p] {
			s.dirs[p] = true
			newPartition = true
		}
		syncDir(p)
	}
	for p := range s.dirs {
		if !live[p] {
			delete(s.dirs, p)
		}
	}
	if newPartition {
		if err := fsyncPath(parts); err != nil {
			errs = append(errs, err)
		} else {
			s.didSync(parts)
		}
	}
	for path, sf := range s.files {
		if !seen[path] {
			sf.f.Close()
			delete(s.files, path)
		}
	}
	return errors.Join(errs...)
}

// openSynced opens path for syncing; nil and no error when it is gone.
func openSynced(path string) (*syncedFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &syncedFile{f: f, info: info, synced: -1}, nil
}

// syncedFile is one of the broker's files as the last round left it.
type syncedFile struct {
	f      *os.File
	info   os.FileInfo // of the open file, to notice a rename over its name
	synced int64       // size at the last fdatasync, -1 before the first
}

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// gatedListener hands kfake connections whose held responses wait for a round.
type gatedListener struct {
	net.Listener
	sync *groupSync
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: c, sync: l.sync}, nil
}

// gatedConn reads the header of every request frame the client sends (size,
// API key, version, correlation id) and holds the write of each response to a
// held API until a round covers it. kfake answers one request at a time per
// connection, in order, writing each response with one Write, so responses
// match requests by correlation id at the head of a short queue; acks=0
// produce requests, which get no response, are dropped from it when a later
// response is matched. Anything unexpected (a header split across writes, an
// unknown correlation id) is held: the fallback is the safe side.
type gatedConn struct {
	net.Conn
	sync *groupSync

	// Read side, used only by kfake's reading goroutine.
	hdr  [12]byte
	nhdr int
	skip int64 // bytes of the current request frame left after its header

	mu      sync.Mutex
	pending []pendingReq
	lost    bool // framing could not be followed: hold every response
}

type pendingReq struct {
	corr int32
	held bool
}

// maxPending bounds the queue: kfake reads at most one request ahead of the
// one it answers, so older entries are acks=0 produce requests.
const maxPending = 16

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan(p[:n])
	return n, err
}

func (c *gatedConn) scan(b []byte) {
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(int64(len(b)), c.skip)
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.nhdr:], b)
		c.nhdr += k
		b = b[k:]
		if c.nhdr < len(c.hdr) {
			return
		}
		c.nhdr = 0
		size := int64(binary.BigEndian.Uint32(c.hdr[0:4]))
		key := int16(binary.BigEndian.Uint16(c.hdr[4:6]))
		corr := int32(binary.BigEndian.Uint32(c.hdr[8:12]))
		c.mu.Lock()
		if size < 8 {
			// Not a Kafka request kfake can parse; it closes the connection.
			c.lost = true
		} else {
			c.skip = size - 8
			if len(c.pending) == maxPending {
				c.pending = append(c.pending[:0], c.pending[1:]...)
			}
			c.pending = append(c.pending, pendingReq{corr: corr, held: heldAPI(key)})
		}
		c.mu.Unlock()
	}
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if c.held(b) {
		if err := c.sync.Wait(); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// held reports whether the response frame in b must wait for a round.
func (c *gatedConn) held(b []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lost || len(b) < 8 || int64(binary.BigEndian.Uint32(b[0:4]))+4 != int64(len(b)) {
		c.lost = true
		return true
	}
	corr := int32(binary.BigEndian.Uint32(b[4:8]))
	for i, p := range c.pending {
		if p.corr == corr {
			c.pending = c.pending[i+1:]
			return p.held
		}
	}
	return true
}
