// Package clihelp prints the flags of infergate's commands in one style,
// the one `infergate run --help` uses (its flags come from the settings
// table, appliance/load.go), so every command's help reads the same and
// `infergate __complete` can read the flag names from any of them.
package clihelp

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// PrintFlags writes fs's flags, one block each:
//
//	--name ARG
//	    usage (default value)
//
// ARG is the usage's `backquoted` word, else the flag's type in capitals;
// boolean flags have none.
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if isBool(f) {
			arg = ""
		} else if arg == "" {
			arg = "VALUE"
		}
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-" // -n, as the synopses write it
		}
		line := "  " + dash + f.Name
		if arg != "" {
			line += " " + strings.ToUpper(arg)
		}
		fmt.Fprintln(w, line)
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" && def != "[]" && !strings.Contains(usage, "(default") {
			usage += fmt.Sprintf(" (default %s)", def)
		}
		for _, l := range strings.Split(usage, "\n") {
			fmt.Fprintf(w, "      %s\n", l)
		}
		fmt.Fprintln(w)
	})
}

// Usage writes "Usage: infergate SYNOPSIS", an optional paragraph, and the flags.
func Usage(w io.Writer, synopsis, about string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: infergate %s\n\n", synopsis)
	if about != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(about))
	}
	fmt.Fprint(w, "Flags:\n\n")
	PrintFlags(w, fs)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
