package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// The bash and zsh scripts ask ferry itself for the words that may follow: urfave/cli
// answers a command line that ends in --generate-bash-completion with the subcommands and
// flags of the command it names (flagsFirst leaves that word last).
const bashCompletion = `# bash completion for ferry, written by 'ferry completion bash'.
_ferry_complete() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  if [[ "$cur" == -* ]]; then
    words+=("$cur")
  fi
  local opts
  opts=$("${words[0]}" "${words[@]:1}" --generate-bash-completion 2>/dev/null) || return 0
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o bashdefault -o default -F _ferry_complete ferry
`

const zshCompletion = `#compdef ferry
# zsh completion for ferry, written by 'ferry completion zsh'.
_ferry() {
  local -a opts
  local cur=${words[CURRENT]}
  local -a line=("${(@)words[1,CURRENT-1]}")
  [[ "$cur" == -* ]] && line+=("$cur")
  opts=("${(@f)$(${line[1]} ${line[2,-1]} --generate-bash-completion 2>/dev/null)}")
  if [[ -n "${opts[1]}" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _ferry ferry
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "bash: source <(ferry completion bash), or install it as " +
			"/usr/share/bash-completion/completions/ferry; zsh: as _ferry in a directory of $fpath; " +
			"fish: as ~/.config/fish/completions/ferry.fish. 'make docs' writes all three into deploy/.",
		Action: func(c *cli.Context) error {
			shell, err := oneArg(c, "SHELL")
			if err != nil {
				return err
			}
			script, err := completionScript(c.App, shell)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

func completionScript(app *cli.App, shell string) (string, error) {
	switch shell {
	case "bash":
		return bashCompletion, nil
	case "zsh":
		return zshCompletion, nil
	case "fish":
		return app.ToFishCompletion()
	}
	return "", fmt.Errorf("completion: no script for %q: bash, zsh or fish", shell)
}

// manSection is the manual section of ferry(8): system administration.
const manSection = 8

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  fmt.Sprintf("print the manual page, ferry(%d), in roff", manSection),
		Hidden: true,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("man: unexpected argument %q", c.Args().First())
			}
			page, err := manPage(c.App)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, page)
			return err
		},
	}
}

// manPage renders the app's commands and flags as a man page. urfave/cli leaves the help
// command and the hidden ones in; the page shows neither.
func manPage(app *cli.App) (string, error) {
	page := *app
	page.Commands = visibleCommands(app.Commands)
	page.HideHelpCommand = true
	man, err := page.ToManWithSection(manSection)
	if err != nil {
		return "", err
	}
	return strings.TrimLeft(man, "\n"), nil
}

func visibleCommands(commands []*cli.Command) []*cli.Command {
	var out []*cli.Command
	for _, c := range commands {
		if c.Hidden || c.Name == "help" {
			continue
		}
		cp := *c
		cp.Subcommands = visibleCommands(c.Subcommands)
		out = append(out, &cp)
	}
	return out
}
