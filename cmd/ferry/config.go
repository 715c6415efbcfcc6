package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/server"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print the default config, check a config file, or import a coturn config",
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
				Name: "check",
				Usage: "check a config file as 'ferry serve' would load it: the file, and the users file, " +
					"secrets file and certificates it names; prints the first error, exit status 1 if any",
				ArgsUsage: "FILE",
				Action:    configCheck,
			},
			importCommand(),
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

// configCheck loads FILE and everything it names with the server's own loading code, so
// that it fails where `ferry serve` would, with the same file:line:key error.
func configCheck(c *cli.Context) error {
	path, err := oneArg(c, "FILE")
	if err != nil {
		return err
	}
	cfg, err := conf.Load(path)
	if err != nil {
		return err
	}
	r, err := server.Check(cfg)
	if err != nil {
		return err
	}
	relay := r.RelayIPv4
	if r.RelayIPv6 != "" {
		relay += ", " + r.RelayIPv6
	}
	if _, err := fmt.Fprintf(c.App.Writer, "%s: ok (%d listeners, relay %s ports %d-%d, %d users, %d secrets)\n",
		path, r.Listeners, relay, cfg.Relay.MinPort, cfg.Relay.MaxPort, r.Users, r.Secrets); err != nil {
		return err
	}
	for _, note := range r.Notes {
		if _, err := fmt.Fprintf(c.App.Writer, "note: %s\n", note); err != nil {
			return err
		}
	}
	return nil
}
