package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/server"
)

func credCommand() *cli.Command {
	return &cli.Command{
		Name: "cred",
		Usage: "mint a time-limited TURN credential (TURN REST API) and print it as " +
			`{"username","password","ttl","uris"}`,
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "secret", Usage: "shared `SECRET` (default: the first of [auth] secrets, then secrets_file, of --config)"},
			&cli.StringFlag{Name: "user", Usage: "`USER` part of the username EXPIRY:USER (quotas count by it)"},
			&cli.DurationFlag{Name: "ttl", Usage: "validity (default: [auth] credential_ttl, 24h in the default config)"},
			&cli.StringSliceFlag{Name: "uri", Usage: "`URI` to list, repeatable (default: the config's listeners)"},
		},
		Action: cred,
	}
}

func cred(c *cli.Context) error {
	if c.IsSet("secret") && c.IsSet(configFlag.Name) {
		return errors.New("cred: use --secret or --config, not both")
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	secret, ttl, uris := c.String("secret"), cfg.Auth.CredentialTTL.Duration, c.StringSlice("uri")
	if secret == "" {
		if secret, err = server.SigningSecret(cfg); err != nil {
			return fmt.Errorf("%w (or pass --secret)", err)
		}
	}
	if c.IsSet("ttl") {
		ttl = c.Duration("ttl")
	}
	if ttl <= 0 {
		return errors.New("cred: --ttl must be positive")
	}
	if len(uris) == 0 {
		if uris, err = server.TURNURIs(cfg); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(auth.NewRESTResponse(secret, c.String("user"), ttl, time.Now(), uris))
}
