package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/conf"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print the default config or check a config file",
		Subcommands: []*cli.Command{
			{
				Name:  "default",
				Usage: "print the documented default config (the one built in)",
				Action: func(c *cli.Context) error {
					_, err := c.App.Writer.Write(conf.DefaultTOML())
					return err
				},
			},
			{
				Name:      "check",
				Usage:     "validate a config file; prints the first error, exit status 1 if any",
				ArgsUsage: "FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("config check: want one FILE argument")
					}
					if _, err := conf.Load(c.Args().First()); err != nil {
						return err
					}
					_, err := fmt.Fprintf(c.App.Writer, "%s: ok\n", c.Args().First())
					return err
				},
			},
		},
	}
}

// loadConfig returns the config named by --config, or the embedded default.
func loadConfig(c *cli.Context) (*conf.Config, error) {
	if path := c.String(configFlag.Name); path != "" {
		return conf.Load(path)
	}
	return conf.Default(), nil
}
