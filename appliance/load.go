package appliance

import (
	"errors"
	"flag"
	"fmt"
	"github.com/infergate/infergate/internal/editdist"
	"io"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultConfigFile is read when present and no --config / INFERGATE_CONFIG names another file.
const DefaultConfigFile = "infergate.yaml"

// ConfigEnv names the config file, like --config.
const ConfigEnv = "INFERGATE_CONFIG"

// Where a setting's value came from, reported by Describe for the settings API.
const (
	SourceDefault = "default"
	SourceFile    = "file"
	SourceEnv     = "env"
	SourceFlag    = "flag"
)

// origin records how a Config was assembled.
type origin struct {
	file     string
	sources  map[string]string
	warnings []string
}

// Load builds the configuration of `infergate run`: Default(), then the YAML
// file (--config, else INFERGATE_CONFIG, else ./infergate.yaml if it
// exists), then the INFERGATE_* variables of environ, then the flags in args.
// It does not validate: call Validate. On -h/--help it writes the help to
// output and returns flag.ErrHelp.
func Load(args, environ []string, output io.Writer) (*Config, error) {
	c := Default()
	c.origin.sources = map[string]string{}
	table := c.settings()
	byFlag := map[string]*setting{}
	for i := range table {
		if table[i].Flag != "" {
			byFlag[table[i].Flag] = &table[i]
		}
	}

	// Flags are parsed first, to find --config, but applied last: each
	// records its raw value and is set after the file and the environment.
	fs := flag.NewFlagSet("infergate run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var configFile string
	fs.StringVar(&configFile, "config", "", "")
	var given []recorded
	for i := range table {
		s := &table[i]
		if s.Flag == "" {
			continue
		}
		fs.Var(&recorder{s: s, given: &given}, s.Flag, s.Help)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			WriteHelp(output)
			return nil, err
		}
		return nil, fmt.Errorf("%w (see infergate run --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: infergate run takes flags only (see infergate run --help)", fs.Arg(0))
	}

	env := envMap(environ)
	explicit := configFile != ""
	if !explicit {
		configFile, explicit = env[ConfigEnv]
	}
	if configFile == "" {
		configFile = DefaultConfigFile
		explicit = false
	}
	data, err := os.ReadFile(configFile)
	switch {
	case err == nil:
		if err := c.applyYAML(configFile, data, table); err != nil {
			return nil, err
		}
		c.origin.file = configFile
	case explicit || !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("config file (--config, %s): %w", ConfigEnv, err)
	}

	known := map[string]bool{ConfigEnv: true}
	for _, s := range table {
		known[s.envName()] = true
		v, ok := env[s.envName()]
		if !ok {
			continue
		}
		if err := s.val.Set(v); err != nil {
			return nil, fmt.Errorf("%s: environment variable %s: %w", s.Key, s.envName(), err)
		}
		c.origin.sources[s.Key] = SourceEnv
	}
	for name := range env {
		if strings.HasPrefix(name, "INFERGATE_") && !known[name] {
			c.origin.warnings = append(c.origin.warnings, fmt.Sprintf("environment variable %s is not a setting of infergate run; ignored", name))
		}
	}
	sort.Strings(c.origin.warnings)

	for _, g := range given {
		if err := g.s.val.Set(g.raw); err != nil {
			return nil, fmt.Errorf("%s: flag --%s: %w", g.s.Key, g.s.Flag, err)
		}
		c.origin.sources[g.s.Key] = SourceFlag
	}
	if err := c.applyProfile(table); err != nil {
		return nil, err
	}
	return &c, nil
}

// ConfigFile is the config file Load read, or "" if none.
func (c *Config) ConfigFile() string { return c.origin.file }

// Warnings are things Load noticed but tolerated, such as an INFERGATE_
// variable that is no setting (probably a typo). The caller logs them.
func (c *Config) Warnings() []string { return c.origin.warnings }

type recorded struct {
	s   *setting
	raw string
}

// recorder is the flag.Value of a setting while parsing: it only remembers
// the raw value, which is parsed when flags are applied after the file and
// the environment.
type recorder struct {
	s     *setting
	given *[]recorded
}

func (r *recorder) String() string { return "" }
func (r *recorder) Set(v string) error {
	*r.given = append(*r.given, recorded{r.s, v})
	return nil
}
func (r *recorder) IsBoolFlag() bool {
	b, ok := r.s.val.(boolFlag)
	return ok && b.IsBoolFlag()
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// applyYAML walks the document along the settings table rather than
// decoding into the struct, so every unknown key is reported with its full
// dotted path and line (and a likely intended key), and values are parsed by
// the same code as environment variables and flags.
func (c *Config) applyYAML(file string, data []byte, table []setting) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file
	}
	root := deref(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	keys := map[string]*setting{}
	sections := map[string]bool{}
	for i := range table {
		keys[table[i].Key] = &table[i]
		parts := strings.Split(table[i].Key, ".")
		for j := 1; j < len(parts); j++ {
			sections[strings.Join(parts[:j], ".")] = true
		}
	}
	var errs []error
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		where := "the top level"
		if prefix != "" {
			where = prefix
		}
		if n.Kind != yaml.MappingNode {
			errs = append(errs, fmt.Errorf("%s:%d: %s must be a mapping of settings", file, n.Line, where))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], deref(n.Content[i+1])
			key := kn.Value
			if prefix != "" {
				key = prefix + "." + kn.Value
			}
			if s, ok := keys[key]; ok {
				raw, err := scalarOrList(vn, s)
				if err == nil {
					err = s.val.Set(raw)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s:%d: %s: %w", file, kn.Line, s.describe(), err))
					continue
				}
				c.origin.sources[key] = SourceFile
				continue
			}
			if sections[key] {
				if vn.Kind == yaml.ScalarNode && vn.Tag == "!!null" {
					continue // an empty section
				}
				walk(key, vn)
				continue
			}
			msg := fmt.Sprintf("%s:%d: unknown setting %q", file, kn.Line, key)
			if guess := closest(key, keys); guess != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", guess)
			}
			errs = append(errs, errors.New(msg))
		}
	}
	walk("", root)
	return errors.Join(errs...)
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// scalarOrList gives the raw string of a YAML value: a scalar as written,
// a sequence (for list settings) joined with commas.
func scalarOrList(n *yaml.Node, s *setting) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		if _, ok := s.val.(lister); !ok {
			return "", errors.New("expected a single value, not a list")
		}
		var parts []string
		for _, item := range n.Content {
			item = deref(item)
			if item.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("line %d: list items must be plain values", item.Line)
			}
			if strings.Contains(item.Value, ",") {
				return "", fmt.Errorf("line %d: list item %q contains a comma", item.Line, item.Value)
			}
			parts = append(parts, item.Value)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", errors.New("expected a value, not a mapping")
	}
}

// closest returns the known key nearest to key, if it is near enough to be
// a typo: same leaf in another section, or a small edit distance.
func closest(key string, keys map[string]*setting) string {
	best, bestD := "", 3
	leaf := key[strings.LastIndex(key, ".")+1:]
	for k := range keys {
		d := editdist.Levenshtein(key, k)
		if k[strings.LastIndex(k, ".")+1:] == leaf && d > 0 {
			d = min(d, 2) // same name, wrong section
		}
		if d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	return best
}

// SettingInfo is one setting as the settings API and the docs show it.
type SettingInfo struct {
	Key     string `json:"key"`
	Flag    string `json:"flag,omitempty"`
	Env     string `json:"env"`
	Value   string `json:"value"`
	Default string `json:"default"`
	Source  string `json:"source"`
	Secret  bool   `json:"secret,omitempty"`
	Help    string `json:"help"`
}

// Redacted is what secrets read as outside the process.
const Redacted = "<redacted>"

// Describe lists every setting with its current value (secrets redacted),
// its default and where the value came from: the payload of GET
// /api/v1/settings.
func (c *Config) Describe() []SettingInfo {
	d := Default()
	cur, def := c.settings(), d.settings()
	out := make([]SettingInfo, len(cur))
	for i, s := range cur {
		src := c.origin.sources[s.Key]
		if src == "" {
			src = SourceDefault
		}
		v, dv := s.val.String(), def[i].val.String()
		if s.Secret && v != "" {
			v = Redacted
		}
		flag := ""
		if s.Flag != "" {
			flag = "--" + s.Flag
		}
		out[i] = SettingInfo{Key: s.Key, Flag: flag, Env: s.envName(), Value: v, Default: dv, Source: src, Secret: s.Secret, Help: s.Help}
	}
	return out
}

// Redacted returns a copy of c with every secret that is set replaced by
// Redacted, safe to log or serve.
func (c *Config) Redacted() Config {
	r := *c
	r.Broker.Brokers = append([]string(nil), c.Broker.Brokers...)
	r.ModelServer.TFServingEndpoints = append([]string(nil), c.ModelServer.TFServingEndpoints...)
	r.ModelServer.Sidecar.ExtraFlags = append([]string(nil), c.ModelServer.Sidecar.ExtraFlags...)
	r.ModelServer.Sidecar.Batching.AllowedBatchSizes = append([]int64(nil), c.ModelServer.Sidecar.Batching.AllowedBatchSizes...)
	for _, s := range r.settings() {
		if s.Secret && s.val.String() != "" {
			_ = s.val.Set(Redacted)
		}
	}
	return r
}

// WriteHelp writes the help of `infergate run`: every flag with its config
// key, environment variable and default.
func WriteHelp(w io.Writer) {
	d := Default()
	fmt.Fprint(w, `Usage: infergate run [flags]

Runs the appliance: the broker, the model server, the streaming pipeline, the
DLQ store and the dashboard, until SIGINT or SIGTERM. Settings are read from
the defaults, then the config file, then INFERGATE_* environment variables,
then flags; a later source wins.

  --config FILE
      YAML config file (default ./infergate.yaml if it exists)
      env INFERGATE_CONFIG
`)
	for _, s := range d.settings() {
		fmt.Fprintln(w)
		if s.Flag != "" {
			arg := ""
			if s.Arg != "" {
				arg = " " + s.Arg
			}
			fmt.Fprintf(w, "  --%s%s\n", s.Flag, arg)
		} else {
			fmt.Fprintf(w, "  (no flag)\n")
		}
		fmt.Fprintf(w, "      %s", s.Help)
		if def := s.val.String(); def != "" && !s.Secret {
			fmt.Fprintf(w, " (default %s)", def)
		}
		fmt.Fprintf(w, "\n      config %s, env %s\n", s.Key, s.envName())
	}
}
