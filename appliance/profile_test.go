package appliance

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProfileSmall(t *testing.T) {
	file := filepath.Join(t.TempDir(), "infergate.yaml")
	if err := os.WriteFile(file, []byte("profile: small\npipeline:\n  max_batch_size: 128\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		args, env  []string
		partitions int
		batch      int
	}{
		{"flag", []string{"--profile", "small"}, nil, 2, 64},
		{"environment", nil, []string{"INFERGATE_PROFILE=small"}, 2, 64},
		{"an explicit flag wins", []string{"--profile", "small", "--topic-partitions", "4"}, nil, 4, 64},
		{"file: its own settings win", []string{"--config", file}, nil, 2, 128},
		{"explicit default profile", []string{"--profile", "default"}, nil, Default().Topics.Partitions, Default().Pipeline.MaxBatchSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, tc.env, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if c.Topics.Partitions != tc.partitions || c.Pipeline.MaxBatchSize != tc.batch {
				t.Errorf("partitions %d batch %d, want %d %d", c.Topics.Partitions, c.Pipeline.MaxBatchSize, tc.partitions, tc.batch)
			}
			if c.Profile == "small" {
				src := map[string]string{}
				for _, s := range c.Describe() {
					src[s.Key] = s.Source
				}
				if src["store.dlq_max_records"] != SourceProfile {
					t.Errorf("store.dlq_max_records source %q, want %q", src["store.dlq_max_records"], SourceProfile)
				}
			}
		})
	}
	_, err := Load([]string{"--profile", "tiny"}, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "profile (--profile, INFERGATE_PROFILE)") || !strings.Contains(err.Error(), `"tiny"`) {
		t.Errorf("unknown profile: %v", err)
	}
}
