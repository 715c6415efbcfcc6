package main

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/server"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "mint an SFU access token (a JWT) for a room and print it",
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "secret", Usage: "token `SECRET` (default: [sfu] token_secret or token_secret_file of --config)"},
			&cli.StringFlag{Name: "room", Usage: "`ROOM` the token is for (required)"},
			&cli.BoolFlag{Name: "publish", Usage: "allow publishing to the room (WHIP)"},
			&cli.BoolFlag{Name: "subscribe", Usage: "allow subscribing to the room (WHEP, room list, room events)"},
			&cli.DurationFlag{Name: "ttl", Usage: "validity (default: [sfu] token_ttl, 1h in the default config)"},
		},
		Action: mintToken,
	}
}

func mintToken(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("token: unexpected argument %q (every value goes with a flag)", c.Args().First())
	}
	if c.IsSet("secret") && c.IsSet(configFlag.Name) {
		return errors.New("token: use --secret or --config, not both")
	}
	room := c.String("room")
	if room == "" {
		return errors.New("token: --room is required")
	}
	if !c.Bool("publish") && !c.Bool("subscribe") {
		return errors.New("token: grant at least one right: --publish, --subscribe or both")
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	secret, ttl := c.String("secret"), cfg.SFU.TokenTTL.Duration
	if secret == "" {
		if secret, err = server.TokenSecret(cfg); err != nil {
			return err
		}
	}
	switch {
	case secret == "":
		return cfg.Errorf("sfu.token_secret", "no token secret: set [sfu] token_secret or token_secret_file, or pass --secret")
	case utf8.RuneCountInString(secret) < conf.MinTokenSecret:
		// Ferry refuses such a token_secret, so no server would accept the token.
		return fmt.Errorf("token: --secret must be at least %d characters long, as [sfu] token_secret", conf.MinTokenSecret)
	}
	if c.IsSet("ttl") {
		ttl = c.Duration("ttl")
	}
	if ttl <= 0 {
		return errors.New("token: --ttl must be positive")
	}
	tok, err := auth.NewToken(secret, auth.Claims{
		Room:      room,
		Publish:   c.Bool("publish"),
		Subscribe: c.Bool("subscribe"),
		Expiry:    time.Now().Add(ttl),
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.App.Writer, tok)
	return err
}
