package broker

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync forces f's data (and the size that reads it back) to stable
// storage, without the metadata an append does not need.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
