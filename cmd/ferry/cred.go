package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
)

func credCommand() *cli.Command {
	return &cli.Command{
		Name: "cred",
		Usage: "mint a time-limited TURN credential (TURN REST API) and print it as " +
			`{"username","password","ttl","uris"}`,
		Flags: []cli.Flag{
			configFlag,
			&cli.StringFlag{Name: "secret", Usage: "shared `SECRET` (default: the first [auth] secrets entry of --config)"},
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
		if len(cfg.Auth.Secrets) == 0 {
			return cfg.Errorf("auth.secrets", "no secret to sign with: set [auth] secrets or pass --secret")
		}
		secret = cfg.Auth.Secrets[0]
	}
	if c.IsSet("ttl") {
		ttl = c.Duration("ttl")
	}
	if ttl <= 0 {
		return errors.New("cred: --ttl must be positive")
	}
	if len(uris) == 0 {
		v4, v6, err := relayAddrs(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return err
		}
		_, uris = auth.URIs(endpoints(cfg, v4, v6))
	}
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(auth.NewRESTResponse(secret, c.String("user"), ttl, time.Now(), uris))
}
