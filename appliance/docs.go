package appliance

import (
	"fmt"
	"strings"
)

// ConfigurationMarkdown renders docs/configuration.md from the settings
// table, so the reference cannot drift from the code (a test compares them).
func ConfigurationMarkdown() string {
	var b strings.Builder
	b.WriteString(`# Configuration reference

<!-- Generated from appliance/settings.go by: go test ./appliance -run TestConfigurationDoc -update. Do not edit. -->

` + "`infergate run`" + ` reads its settings in this order, a later source overriding an earlier one:

1. the defaults below;
2. the YAML config file: ` + "`--config FILE`" + `, else ` + "`INFERGATE_CONFIG`" + `, else ` + "`./infergate.yaml`" + ` if it exists.
   Keys are nested by their dots (` + "`broker.listen`" + ` is ` + "`listen:`" + ` under ` + "`broker:`" + `); an unknown key is an error;
3. environment variables;
4. command-line flags.

Durations are written like ` + "`500ms`, `30s`, `168h`" + `; lists as YAML sequences in the file and comma-separated in the
environment and on the command line. Sizes (` + "`BYTES`" + `) are whole bytes or take a unit: ` + "`512MiB`, `2GiB`, `64KiB`" + ` (1024-based) or
` + "`10MB`" + ` (1000-based). Secrets have no flag, because command lines are visible to every user of the machine
(` + "`ps`" + `). ` + "`infergate run --help`" + ` prints the same table.

An admin changes settings on the dashboard's **Settings** page (or ` + "`PUT /api/v1/settings`" + `,
[dashboard.md](dashboard.md#settings-from-the-dashboard)): each change is checked like the config file and written to the
config file the appliance was started with. Those marked *(live)* below apply at once; the others take effect at the next
start. A setting given by a flag or an environment variable, which override the file, is changed there instead.

`)
	c := Default()
	section := ""
	for _, s := range c.settings() {
		sec, _, nested := strings.Cut(s.Key, ".")
		if !nested {
			sec = "general"
		}
		if sec != section {
			section = sec
			fmt.Fprintf(&b, "\n## %s\n\n", sec)
			b.WriteString("| key | flag | environment | default | meaning |\n|---|---|---|---|---|\n")
		}
		flag := "—"
		if s.Flag != "" {
			flag = "`--" + s.Flag + "`"
			if s.Arg != "" {
				flag = "`--" + s.Flag + " " + s.Arg + "`"
			}
		}
		def := s.val.String()
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		help := strings.ReplaceAll(s.Help, "|", `\|`)
		if liveKeys[s.Key] {
			help += " *(live)*"
		}
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s | %s |\n", s.Key, flag, s.envName(), def, help)
	}
	b.WriteString(`
## Example

` + "```yaml" + `
data_dir: /var/lib/infergate
broker:
  listen: 0.0.0.0:9092
  advertise: gateway.local:9092   # what LAN producers connect to
topics:
  partitions: 6
  retention: 72h
pipeline:
  max_batch_size: 64
  max_batch_wait: 5ms
delivery:
  guarantee: at-least-once
http:
  listen: 127.0.0.1:8080
` + "```" + `
`)
	return b.String()
}
