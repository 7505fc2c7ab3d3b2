package broker

import (
	"testing"

	"github.com/infergate/infergate/internal/tmpfs"
)

func mountTmpfs(t *testing.T, size int64) string { return tmpfs.Mount(t, size) }

func fillTmpfs(t *testing.T, dir string, leave int64) string { return tmpfs.Fill(t, dir, leave) }
