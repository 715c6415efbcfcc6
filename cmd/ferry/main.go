// Command ferry runs Ferry, a STUN/TURN server, and manages its users and credentials.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at link time by the Makefile (-X main.version=...).
var version = "dev"

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:    "ferry",
		Usage:   "STUN/TURN server",
		Version: version,
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
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					_, err := fmt.Fprintln(c.App.Writer, "ferry", version)
					return err
				},
			},
		},
	}
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "TOML config `FILE` (default: the embedded default, see 'ferry config default')",
}
