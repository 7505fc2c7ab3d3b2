package appliance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Layout of the data dir (DESIGN.md): one directory per component that keeps
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
func prepareDataDir(p Paths) error {
	setting := "data_dir (--data-dir, INFERGATE_DATA_DIR)"
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
	case strings.Contains(err.Error(), "read-only file system"):
		return fmt.Errorf("%w (the file system is mounted read-only: choose a writable --data-dir)", err)
	}
	return err
}

// adminToken returns the admin token: the configured one, else the one in
// the data dir, else a new one written there (mode 0600). generated reports
// the last case, when the caller prints it once.
func adminToken(configured string, p Paths) (token string, generated bool, err error) {
	if configured != "" {
		return configured, false, nil
	}
	data, err := os.ReadFile(p.AdminToken)
	switch {
	case err == nil:
		if t := strings.TrimSpace(string(data)); t != "" {
			return t, false, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, fmt.Errorf("reading the admin token %s: %w", p.AdminToken, err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", false, err
	}
	token = hex.EncodeToString(b)
	// O_EXCL: two processes racing on a fresh data dir must not end with
	// different tokens; the loser reads the winner's.
	f, err := os.OpenFile(p.AdminToken, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return adminToken("", p)
	}
	if err != nil {
		return "", false, fmt.Errorf("writing the admin token %s: %w", p.AdminToken, err)
	}
	_, werr := f.WriteString(token + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return "", false, fmt.Errorf("writing the admin token %s: %w", p.AdminToken, err)
	}
	return token, true, nil
}

// ReadAdminToken reads the token a running appliance uses, for the CLI.
func ReadAdminToken(dataDir string) (string, error) {
	data, err := os.ReadFile(DataPaths(dataDir).AdminToken)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}
