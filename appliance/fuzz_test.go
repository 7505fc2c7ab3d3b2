package appliance

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadConfigFile feeds arbitrary bytes to the YAML layer: a config file is
// outside input, so loading and validating one must never panic, and a file
// that is refused must be refused with a message (naming file, key or setting).
func FuzzLoadConfigFile(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.yml"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("broker: {listen: ':0'}\n"))
	f.Add([]byte("pipeline: [1, 2\n"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "infergate.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load([]string{"--config", file}, nil, io.Discard)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("refused with an empty message")
			}
			return
		}
		if err := cfg.Validate(); err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("invalid config with an empty message")
		}
	})
}
