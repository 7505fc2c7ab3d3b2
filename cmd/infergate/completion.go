package main

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/infergate/infergate/inference/pipeline"
)

// completeCommand is the hidden command the completion scripts call with
// the words typed so far (the last one is being completed); it prints the
// candidates, one per line. Flag names are read from the command's own
// --help, which every command prints through internal/clihelp, so the
// completion cannot drift from the flags.
const completeCommand = "__complete"

var completionScripts = map[string]string{
	"bash": `# infergate completion for bash: source it, or put it in /etc/bash_completion.d/infergate
_infergate() {
	local IFS=$'\n'
	COMPREPLY=($(infergate ` + completeCommand + ` "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -o nospace -F _infergate infergate
`,
	"zsh": `# infergate completion for zsh: source it from ~/.zshrc
autoload -U +X bashcompinit && bashcompinit
_infergate() {
	local IFS=$'\n'
	COMPREPLY=($(infergate ` + completeCommand + ` "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -o nospace -F _infergate infergate
`,
	"fish": `# infergate completion for fish: save as ~/.config/fish/completions/infergate.fish
complete -c infergate -f -a '(infergate ` + completeCommand + ` (commandline -opc)[2..-1] (commandline -ct))'
`,
}

func cmdCompletion(_ context.Context, args []string, io stdio) error {
	fs := newFlagSet("completion", "completion bash|zsh|fish", io.err)
	if err := fs.Parse(args); err != nil {
		return helpOrUsage(err)
	}
	script, ok := completionScripts[fs.Arg(0)]
	if fs.NArg() != 1 || !ok {
		return usageErr(fmt.Errorf("want one shell: bash, zsh or fish; got %q", fs.Args()))
	}
	fmt.Fprint(io.out, script)
	return nil
}

var dlqSubcommands = []string{"list", "show", "replay", "delete", "purge"}

// complete prints the completions of words[len(words)-1].
func complete(ctx context.Context, words []string, io stdio) {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, done := words[len(words)-1], words[:len(words)-1]
	var cands []string
	switch {
	case len(done) == 0:
		for _, c := range commands() {
			cands = append(cands, c.name+" ")
		}
		cands = append(cands, "help ", "--version ", "--help ")
	case len(done) == 1 && done[0] == "dlq":
		for _, s := range dlqSubcommands {
			cands = append(cands, s+" ")
		}
	case len(done) == 1 && done[0] == "help":
		for _, c := range commands() {
			cands = append(cands, c.name+" ")
		}
	case len(done) == 1 && done[0] == "completion":
		cands = []string{"bash ", "zsh ", "fish "}
	case done[len(done)-1] == "--class" && done[0] == "dlq":
		for _, c := range pipeline.Classes {
			cands = append(cands, c+" ")
		}
	case strings.HasPrefix(cur, "-"):
		cmd := []string{done[0]}
		if done[0] == "dlq" && len(done) > 1 {
			cmd = append(cmd, done[1])
		}
		cands = flagsOf(ctx, cmd, io.environ)
	}
	for _, c := range cands {
		if strings.HasPrefix(c, cur) {
			fmt.Fprintln(io.out, c)
		}
	}
}

var helpFlag = regexp.MustCompile(`(?m)^  (--?[A-Za-z0-9][A-Za-z0-9_-]*)( [^ ]+)?$`)

// flagsOf runs the command's --help in process and reads its flags.
func flagsOf(ctx context.Context, cmd []string, environ []string) []string {
	var buf bytes.Buffer
	dispatch(ctx, append(slices.Clone(cmd), "--help"), stdio{in: strings.NewReader(""), out: &buf, err: &buf, environ: environ})
	var out []string
	for _, m := range helpFlag.FindAllStringSubmatch(buf.String(), -1) {
		out = append(out, m[1]+" ")
	}
	return out
}
