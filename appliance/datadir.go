package appliance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Layout of the data dir (docs/operations.md, "The data dir"): one directory per component that keeps
// state, and the admin token.
const (
	BrokerDir      = "broker"
	StoreDir       = "store"
	ModelsDir      = "models"
	AdminTokenFile = "admin-token"
)

// Paths are the data dir's parts for one Config.
type Paths struct {
	Root, Broker, Store, Models, AdminToken string
}

// DataPaths returns where each component keeps its state.
func DataPaths(dataDir string) Paths {
	return Paths{
		Root:       dataDir,
		Broker:     filepath.Join(dataDir, BrokerDir),
		Store:      filepath.Join(dataDir, StoreDir),
		Models:     filepath.Join(dataDir, ModelsDir),
		AdminToken: filepath.Join(dataDir, AdminTokenFile),
	}
}

// prepareDataDir creates the data dir and its parts and proves it writable,
// so that a read-only mount or a wrong owner is reported as such, naming
// the setting, before any component opens a file deep inside it.
//
// A data dir it creates is restricted to its owner where the file mode does
// not do that (restrictDataDir: Windows, whose %ProgramData% lets every local
// user read what is created under it); an existing one is left as it is.
func prepareDataDir(p Paths, logger *slog.Logger) error {
	setting := "data_dir (--data-dir, INFERGATE_DATA_DIR)"
	_, statErr := os.Stat(p.Root)
	if errors.Is(statErr, fs.ErrNotExist) {
		if err := os.MkdirAll(p.Root, 0o750); err != nil {
			return fmt.Errorf("%s: cannot create %s: %w", setting, p.Root, explainFS(err))
		}
		if err := restrictDataDir(p.Root); err != nil {
			// A file system without ACLs (FAT on a USB stick) cannot
			// restrict; the data dir still works.
			logger.Warn("could not restrict the new data dir to this user, SYSTEM and Administrators: other local users may read it, the admin token included",
				"data_dir", p.Root, "err", err)
		}
	}
	for _, dir := range []string{p.Root, p.Broker, p.Store, p.Models} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("%s: cannot create %s: %w", setting, dir, explainFS(err))
		}
	}
	f, err := os.CreateTemp(p.Root, ".write-test-*")
	if err != nil {
		return fmt.Errorf("%s: %s is not writable: %w", setting, p.Root, explainFS(err))
	}
	name := f.Name()
	_, werr := f.WriteString("ok")
	cerr := f.Close()
	os.Remove(name)
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("%s: cannot write in %s: %w", setting, p.Root, explainFS(err))
	}
	return nil
}

func explainFS(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (check the directory's owner and mode, or choose another with --data-dir)", err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w (the file system is mounted read-only: choose a writable --data-dir)", err)
	}
	return err
}

// minAdminToken is the shortest admin token accepted, from the file as from http.admin_token.
const minAdminToken = 16

// tokenState says where adminToken found its token, for the caller's log line.
type tokenState int

const (
	tokenFound    tokenState = iota // configured, or read from the file
	tokenNew                        // no file: generated and written
	tokenReplaced                   // the file was empty: generated and written over it
)

// adminToken returns the admin token: the configured one, else the one in
// the data dir, else a new one written there (mode 0600). An empty (or
// whitespace-only) file, left by a crash between create and write or by an
// operator "clearing" it, is replaced by a new token; a file with something
// that is not a usable token is refused, because guessing what the operator
// meant could lock them out of the API.
func adminToken(configured string, p Paths) (token string, state tokenState, err error) {
	if configured != "" {
		return configured, tokenFound, nil
	}
	// Two rounds at most: the second only when another process created the
	// file between our read and our O_EXCL create.
	for range 2 {
		data, err := os.ReadFile(p.AdminToken)
		switch {
		case err == nil:
			t := strings.TrimSpace(string(data))
			if t == "" {
				token, err := writeNewToken(p.AdminToken, true)
				return token, tokenReplaced, err
			}
			if err := checkTokenFile(t); err != nil {
				return "", tokenFound, fmt.Errorf("admin token file %s: %w; fix it, or delete it to have a new token generated at the next start", p.AdminToken, err)
			}
			return t, tokenFound, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", tokenFound, fmt.Errorf("reading the admin token %s: %w", p.AdminToken, err)
		}
		token, err := writeNewToken(p.AdminToken, false)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return token, tokenNew, err
	}
	return "", tokenFound, fmt.Errorf("admin token file %s: created and removed again while reading it; is another process managing it?", p.AdminToken)
}

// checkTokenFile accepts what http.admin_token accepts, on one line of printable characters.
func checkTokenFile(t string) error {
	for _, r := range t {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("holds %d characters that are not one line of printable ASCII (control characters, spaces or several lines: a damaged file?)", len(t))
		}
	}
	if len(t) < minAdminToken {
		return fmt.Errorf("holds a token of %d characters; at least %d are needed", len(t), minAdminToken)
	}
	return nil
}

// writeNewToken generates a token and writes it to path. Without replace the
// file is created with O_EXCL (two processes racing on a fresh data dir must
// not end with different tokens: the loser gets fs.ErrExist and reads the
// winner's); with replace it is written to a temporary file and renamed over
// path, so a crash leaves either the old file or the whole new one.
func writeNewToken(path string, replace bool) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	name := path
	var f *os.File
	var err error
	if replace {
		f, err = os.CreateTemp(filepath.Dir(path), ".admin-token-*")
		if err == nil {
			name = f.Name()
			err = f.Chmod(0o600)
		}
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
			os.Remove(name)
		}
		return "", fmt.Errorf("writing the admin token %s: %w", path, err)
	}
	_, werr := f.WriteString(token + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("writing the admin token %s: %w", path, err)
	}
	if replace {
		if err := os.Rename(name, path); err != nil {
			os.Remove(name)
			return "", fmt.Errorf("replacing the admin token %s: %w", path, err)
		}
	}
	return token, nil
}

// ReadAdminToken reads the token a running appliance uses, for the CLI.
func ReadAdminToken(dataDir string) (string, error) {
	path := DataPaths(dataDir).AdminToken
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("admin token file %s is empty; the appliance writes a new token there at its next start", path)
	}
	if err := checkTokenFile(t); err != nil {
		return "", fmt.Errorf("admin token file %s: %w", path, err)
	}
	return t, nil
}
