package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
			if _, err := fmt.Fprintf(c.App.Writer, "reloaded; changed: %s; need a restart: %s\n",
				listOrNone(res.Changed), listOrNone(res.Restart)); err != nil {
				return err
			}
			if len(res.Restart) > 0 {
				// Applied in part: a script must not take it for done.
				return cli.Exit(fmt.Sprintf("reload: not applied until a restart: %s", strings.Join(res.Restart, ", ")),
					exitRestartNeeded)
			}
			return nil
		},
	}
}

// exitRestartNeeded is reload's exit status when it applied what it could and keys that only
// a restart applies were left (1 is a refused reload).
const exitRestartNeeded = 2

func drainCommand() *cli.Command {
	return &cli.Command{
		Name: "drain",
		Usage: "make the running server drain without stopping: no new allocations or SFU sessions, " +
			"the live ones go on; --cancel serves again",
		Description: "New Allocates get 508 (or 300 Try Alternate with [server] alternate_server), new WHIP/WHEP " +
			"sessions 503, and /readyz 503, so load balancers move new clients elsewhere; existing allocations " +
			"and sessions go on. The process keeps running when they have ended: stop it (SIGTERM, " +
			"systemctl stop) when you are ready, or cancel the drain. Draining twice changes nothing.",
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "cancel", Usage: "end the drain: serve new allocations and sessions again"},
			&cli.BoolFlag{Name: "status", Usage: "only print whether the server drains and what is left"},
			&cli.BoolFlag{Name: "wait", Usage: "after starting the drain, wait until no allocation or SFU session is left"},
			&cli.BoolFlag{Name: "json", Usage: "print the status as JSON"},
		}, adminFlags...),
		Action: drain,
	}
}

func drain(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("drain: unexpected argument %q", c.Args().First())
	}
	if n := countTrue(c.Bool("cancel"), c.Bool("status"), c.Bool("wait")); n > 1 {
		return errors.New("drain: use one of --cancel, --status and --wait")
	}
	client, err := adminClient(c)
	if err != nil {
		return err
	}
	var st server.DrainStatus
	switch {
	case c.Bool("cancel"):
		st, err = client.CancelDrain(c.Context)
	case c.Bool("status"):
		st, err = client.DrainStatus(c.Context)
	default:
		st, err = client.Drain(c.Context)
	}
	if err != nil {
		return err
	}
	for c.Bool("wait") && st.Allocations+st.SFUSessions > 0 {
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(drainWaitPoll):
		}
		if st, err = client.DrainStatus(c.Context); err != nil {
			return err
		}
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	_, err = fmt.Fprintln(c.App.Writer, describeDrain(st))
	return err
}

// drainWaitPoll is how often drain --wait asks what is left.
const drainWaitPoll = 500 * time.Millisecond

func describeDrain(st server.DrainStatus) string {
	left := fmt.Sprintf("%d allocations and %d SFU sessions", st.Allocations, st.SFUSessions)
	switch {
	case !st.Draining:
		return "serving (not draining); live: " + left
	case st.Reason == "shutdown":
		return fmt.Sprintf("shutting down: draining since %s; left: %s", st.Since.Format(time.RFC3339), left)
	case st.Allocations+st.SFUSessions == 0:
		return fmt.Sprintf("drained since %s: nothing left; stop the server, or 'ferry drain --cancel' to serve again",
			st.Since.Format(time.RFC3339))
	}
	return fmt.Sprintf("draining since %s; left: %s ('ferry drain --wait' waits for them, 'ferry drain --cancel' serves again)",
		st.Since.Format(time.RFC3339), left)
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
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
		if id, err = oneArg(c, "ID"); err != nil {
			return err
		}
		if c.IsSet("user") {
			return fmt.Errorf("%sgive an ID or --user, not both", commandPrefix(c))
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
