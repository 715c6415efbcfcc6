// Command ferry runs Ferry, a STUN/TURN server with an SFU, and manages its users and
// credentials.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is the semantic version and commit the git commit, both set at link time by the
// Makefile (-X main.version=... -X main.commit=...). A plain `go build` leaves version
// "dev" and takes the commit from the build information Go records.
var (
	version = "dev"
	commit  = ""
)

func main() {
	app := newApp()
	if err := app.Run(flagsFirst(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		code := 1
		var ec cli.ExitCoder
		if errors.As(err, &ec) && ec.ExitCode() > 1 {
			code = ec.ExitCode()
		}
		os.Exit(code)
	}
}

// buildCommit is the commit Ferry was built from: the one the Makefile set, else the one
// in Go's build information ("-dirty" when the work tree had changes), else "unknown".
func buildCommit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev[:min(len(rev), 12)] + dirty
}

// versionLine is what `ferry version` and `ferry -v` print.
func versionLine() string {
	return fmt.Sprintf("ferry %s (commit %s, %s)", version, buildCommit(), runtime.Version())
}

// fullVersion is the version with the commit as semantic-version build metadata, as the
// ferry_build_info metric carries it: "1.2.0+4406345".
func fullVersion() string {
	return version + "+" + strings.ReplaceAll(buildCommit(), "_", "-")
}

func newApp() *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, versionLine()) }
	app := &cli.App{
		Name:  "ferry",
		Usage: "STUN/TURN server with a WHIP/WHEP SFU, and the tools to run it",
		Description: "Ferry is a STUN/TURN server (RFC 8489, 8656, 6062, 6156) and a selective forwarding " +
			"unit (SFU: WHIP to publish, WHEP to watch) in one binary. 'ferry serve' runs both; the other " +
			"commands manage its users, credentials and tokens, check and import configs, and talk to a " +
			"running server's admin API.",
		Version:              version,
		EnableBashCompletion: true,
		// Errors are printed once, by main, as one line.
		ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{
			serveCommand(),
			configCommand(),
			userCommand(),
			credCommand(),
			tokenCommand(),
			sessionsCommand(),
			reloadCommand(),
			drainCommand(),
			healthCommand(),
			clusterCommand(),
			completionCommand(),
			manCommand(),
			{
				Name:  "version",
				Usage: "print the version, the commit and the Go version (as ferry -v)",
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return fmt.Errorf("version: unexpected argument %q", c.Args().First())
					}
					_, err := fmt.Fprintln(c.App.Writer, versionLine())
					return err
				},
			},
		},
	}
	app.OnUsageError = usageError
	app.Action = groupAction
	for _, c := range app.Commands {
		oneLineErrors(c)
	}
	return app
}

// oneLineErrors makes every usage error of c and its subcommands one line that main prints,
// instead of cli's "Incorrect Usage" and the help text, and makes an unknown subcommand an
// error.
func oneLineErrors(c *cli.Command) {
	c.OnUsageError = usageError
	if len(c.Subcommands) > 0 && c.Action == nil {
		c.Action = groupAction
	}
	for _, sub := range c.Subcommands {
		oneLineErrors(sub)
	}
}

func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%s%v (see '%s --help')", commandPrefix(c), err, commandName(c))
}

// commandName is the command line that names c's command: "ferry user add".
func commandName(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != c.App.Name {
			names = append(names, ctx.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(append([]string{c.App.Name}, names...), " ")
}

// commandPrefix starts an error of c's command ("user add: "; "" for ferry itself): main
// prints "ferry: " before it.
func commandPrefix(c *cli.Context) string {
	name := strings.TrimPrefix(strings.TrimPrefix(commandName(c), c.App.Name), " ")
	if name == "" {
		return ""
	}
	return name + ": "
}

// groupAction is the action of ferry and of a command that has subcommands: help without an
// argument, an error for an unknown subcommand.
func groupAction(c *cli.Context) error {
	if c.NArg() == 0 && c.Command.Name == c.App.Name {
		return cli.ShowAppHelp(c)
	}
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return fmt.Errorf("%sunknown command %q (see '%s --help')", commandPrefix(c), c.Args().First(), commandName(c))
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "TOML config `FILE` (default: the embedded default, see 'ferry config default')",
}
