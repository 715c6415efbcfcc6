package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/server"
)

var adminFlags = []cli.Flag{
	configFlag,
	&cli.StringFlag{Name: "admin", Usage: "admin API `ADDR` (default: [admin] listen of --config)"},
	&cli.StringFlag{Name: "token", EnvVars: []string{"FERRY_ADMIN_TOKEN"},
		Usage: "bearer `TOKEN` of the admin API (default: [admin] token of --config)"},
}

// adminClient reaches the admin API named by the flags or the config.
func adminClient(c *cli.Context) (*server.AdminClient, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, err
	}
	addr, token := cfg.Admin.Listen, cfg.Admin.Token
	if c.IsSet("admin") {
		addr = c.String("admin")
	}
	if c.IsSet("token") {
		token = c.String("token")
	}
	if addr == "" {
		return nil, cfg.Errorf("admin.listen", "the admin API is off; set it, or pass --admin")
	}
	return server.NewAdminClient(addr, token), nil
}

func reloadCommand() *cli.Command {
	return &cli.Command{
		Name:  "reload",
		Usage: "make the running server re-read its config, users file, secrets and certificates",
		Flags: adminFlags,
		Action: func(c *cli.Context) error {
			client, err := adminClient(c)
			if err != nil {
				return err
			}
			res, err := client.Reload(c.Context)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "reloaded; changed: %s; need a restart: %s\n",
				listOrNone(res.Changed), listOrNone(res.Restart))
			return err
		},
	}
}

func sessionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "sessions",
		Usage: "list or end the running server's TURN sessions (allocations)",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the live sessions",
				Flags: append([]cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}}, adminFlags...),
				Action: func(c *cli.Context) error {
					client, err := adminClient(c)
					if err != nil {
						return err
					}
					sessions, err := client.Sessions(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(sessions)
					}
					w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
					fmt.Fprintln(w, "ID\tUSER\tCLIENT\tTRANSPORT\tRELAY\tAGE\tTO PEER\tFROM PEER\tPERMISSIONS\tCHANNELS")
					for _, s := range sessions {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d pkt %d B\t%d pkt %d B\t%d\t%d\n",
							s.ID, s.User, s.Client, s.Transport, s.Relay,
							time.Duration(s.Age*float64(time.Second)).Round(time.Second),
							s.ToPeerPackets, s.ToPeerBytes, s.FromPeerPackets, s.FromPeerBytes,
							len(s.Permissions), len(s.Channels))
					}
					return w.Flush()
				},
			},
			{
				Name:      "kill",
				Usage:     "end a session: its relay closes at once, and the client's next request gets 437",
				ArgsUsage: "ID",
				Flags:     adminFlags,
				Action: func(c *cli.Context) error {
					id, err := oneArg(c, "ID")
					if err != nil {
						return err
					}
					client, err := adminClient(c)
					if err != nil {
						return err
					}
					if err := client.Kill(c.Context, id); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "session %s ended\n", id)
					return err
				},
			},
		},
	}
}

func listOrNone(keys []string) string {
	if len(keys) == 0 {
		return "nothing"
	}
	return strings.Join(keys, ", ")
}
