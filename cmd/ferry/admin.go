package main

import (
	"encoding/json"
	"fmt"
	"strings"

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
		Usage: "list or end the running server's TURN allocations and SFU sessions",
		Subcommands: []*cli.Command{
			{
				Name:  "list",
				Usage: "list the live TURN allocations and SFU (WHIP/WHEP) sessions",
				Flags: append([]cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print JSON: {\"turn\": [...], \"sfu\": [...]}"},
					&cli.StringFlag{Name: "user", Usage: "only the TURN allocations of the users `PATTERN` matches (alice, 'ali*')"},
					&cli.StringFlag{Name: "room", Usage: "only the SFU sessions of `ROOM`"},
				}, adminFlags...),
				Action: func(c *cli.Context) error {
					client, err := adminClient(c)
					if err != nil {
						return err
					}
					list, err := client.Sessions(c.Context, server.SessionFilter{User: c.String("user"), Room: c.String("room")})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						enc := json.NewEncoder(c.App.Writer)
						enc.SetIndent("", "  ")
						return enc.Encode(list)
					}
					return list.WriteTable(c.App.Writer)
				},
			},
			{
				Name: "kill",
				Usage: "end a TURN allocation (its relay closes at once, the client's next request gets 437) " +
					"or an SFU session (a publisher's subscribers end with it); --user ends every allocation of a user",
				ArgsUsage: "ID | --user USER",
				Flags:     append([]cli.Flag{&cli.StringFlag{Name: "user", Usage: "end every TURN allocation of `USER`"}}, adminFlags...),
				Action:    sessionsKill,
			},
		},
	}
}

// sessionsKill ends the session ID, or with --user every allocation of a user.
func sessionsKill(c *cli.Context) error {
	var id string
	if c.NArg() > 0 || !c.IsSet("user") {
		var err error
		if id, err = oneArg(c, "ID"); err != nil { // first: it reads the flags after the ID
			return err
		}
		if c.IsSet("user") {
			return fmt.Errorf("%s: give an ID or --user, not both", c.Command.FullName())
		}
	}
	client, err := adminClient(c)
	if err != nil {
		return err
	}
	if id == "" {
		n, err := client.KillUser(c.Context, c.String("user"))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.App.Writer, "sessions of user %s ended: %d\n", c.String("user"), n)
		return err
	}
	if err := client.Kill(c.Context, id); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "session %s ended\n", id)
	return err
}

func listOrNone(keys []string) string {
	if len(keys) == 0 {
		return "nothing"
	}
	return strings.Join(keys, ", ")
}
