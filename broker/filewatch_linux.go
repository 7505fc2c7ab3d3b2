package broker

import (
	"bytes"
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// inotifyWatch is the fileWatch of Linux: one inotify instance watching the
// data dir, its partitions dir and every partition dir. The kernel queues an
// event inside write(2), before it returns, so a round that reads the queue
// after a response was made sees the writes the response depends on.
type inotifyWatch struct {
	fd    int
	dirs  map[int32]string // watch descriptor → directory
	byDir map[string]int32
	buf   []byte
}

const inotifyMask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_ONLYDIR

func newFileWatch() fileWatch {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil // rounds scan the data dir instead
	}
	return &inotifyWatch{fd: fd, dirs: map[int32]string{}, byDir: map[string]int32{}, buf: make([]byte, 64<<10)}
}

func (w *inotifyWatch) add(dir string) error {
	if _, ok := w.byDir[dir]; ok {
		return nil
	}
	wd, err := unix.InotifyAddWatch(w.fd, dir, inotifyMask)
	if err != nil {
		return err
	}
	w.dirs[int32(wd)] = dir
	w.byDir[dir] = int32(wd)
	return nil
}

// events drains the queue. It returns ok false when the queue cannot say
// everything that changed (it overflowed, a directory appeared or went, an
// event names an unknown watch): the caller then scans every directory.
func (w *inotifyWatch) events() (evs []fileEvent, ok bool) {
	ok = true
	for {
		n, err := unix.Read(w.fd, w.buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return evs, ok
		case err != nil || n <= 0:
			return nil, false
		}
		var more bool
		evs, more = w.parse(w.buf[:n], evs)
		ok = ok && more
	}
}

// parse appends the events of one read (struct inotify_event: wd, mask,
// cookie, len, then len bytes of NUL-padded name).
func (w *inotifyWatch) parse(b []byte, evs []fileEvent) ([]fileEvent, bool) {
	ok := true
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:]))
		mask := binary.NativeEndian.Uint32(b[4:])
		nameLen := int(binary.NativeEndian.Uint32(b[12:]))
		b = b[unix.SizeofInotifyEvent:]
		if nameLen > len(b) {
			return evs, false
		}
		name := string(bytes.TrimRight(b[:nameLen], "\x00"))
		b = b[nameLen:]
		dir, known := w.dirs[wd]
		switch {
		case mask&unix.IN_Q_OVERFLOW != 0:
			ok = false
		case mask&unix.IN_IGNORED != 0: // the directory is gone
			delete(w.dirs, wd)
			delete(w.byDir, dir)
			ok = false
		case !known || mask&unix.IN_ISDIR != 0 || name == "":
			ok = false
		case mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
			evs = append(evs, fileEvent{dir: dir, name: name, op: fileRemoved})
		case mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			evs = append(evs, fileEvent{dir: dir, name: name, op: fileCreated})
		case mask&unix.IN_MODIFY != 0:
			evs = append(evs, fileEvent{dir: dir, name: name, op: fileWritten})
		}
	}
	return evs, ok
}

func (w *inotifyWatch) close() { unix.Close(w.fd) }
