package appliance

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// SourceProfile marks a setting whose value came from the chosen profile.
const SourceProfile = "profile"

// profiles replace defaults for a class of machine. A setting given in the
// file, the environment or a flag wins over the profile: a profile only
// changes what would otherwise be a default.
//
// small is for boards with 512 MB of RAM (Raspberry Pi Zero 2 / 3, small
// ARM gateways); docs/install.md has the figures measured with it. Fewer
// partitions mean fewer segment files, fetch buffers and consumer goroutines;
// smaller topic budgets and a shorter DLQ bound the disk (SD cards are small)
// and the page cache the broker keeps warm; smaller batches and fewer batches
// in flight bound the tensors alive at once. (The DLQ store's Badger is already
// tuned for edge boxes for every profile: store/badger.go.)
var profiles = map[string][][2]string{
	"default": nil,
	"small": {
		{"topics.partitions", "2"},
		{"topics.requests_bytes", "67108864"}, // 64 MiB
		{"topics.results_bytes", "33554432"},  // 32 MiB
		{"topics.dlq_bytes", "33554432"},      // 32 MiB
		{"store.dlq_max_records", "100000"},
		{"store.dlq_retention", "72h"},
		{"pipeline.max_batch_size", "64"},
		{"pipeline.max_inflight_batches", "2"},
	},
}

// applyProfile sets the profile's values on the settings that still have
// their defaults.
func (c *Config) applyProfile(table []setting) error {
	p, ok := profiles[c.Profile]
	if c.Profile == "" {
		return nil
	}
	if !ok {
		return fmt.Errorf("profile (--profile, INFERGATE_PROFILE): unknown profile %q: want %s", c.Profile, strings.Join(slices.Sorted(maps.Keys(profiles)), " or "))
	}
	for _, kv := range p {
		if _, given := c.origin.sources[kv[0]]; given {
			continue
		}
		i := slices.IndexFunc(table, func(s setting) bool { return s.Key == kv[0] })
		if i < 0 {
			return fmt.Errorf("profile %s: no setting %s", c.Profile, kv[0]) // a bug in the table above
		}
		if err := table[i].val.Set(kv[1]); err != nil {
			return fmt.Errorf("profile %s: %s: %w", c.Profile, kv[0], err)
		}
		c.origin.sources[kv[0]] = SourceProfile
	}
	return nil
}
