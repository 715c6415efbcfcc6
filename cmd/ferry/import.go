package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/conf/coturn"
	"github.com/ferry-rtc/ferry/server"
)

func importCommand() *cli.Command {
	return &cli.Command{
		Name: "import",
		Usage: "translate a coturn turnserver.conf into a Ferry config (and its user= lines into a users file, " +
			"its static-auth-secret into a secrets file), list what it could not translate, and check the result",
		ArgsUsage: "TURNSERVER_CONF",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "ferry.toml", Usage: "write the Ferry config to `FILE`"},
			&cli.StringFlag{Name: "users-file", Usage: "write the users to `FILE` (default: users.toml beside --out)"},
			&cli.StringFlag{Name: "secrets-file", Usage: "write the TURN REST secrets to `FILE` (default: rest-secrets beside --out)"},
			&cli.StringFlag{Name: "realm", Usage: "`REALM` of the Ferry config and its users (default: the file's realm=)"},
			&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "overwrite --out and the secrets file if they exist"},
		},
		Action: importCoturn,
	}
}

func importCoturn(c *cli.Context) error {
	src, err := oneArg(c, "TURNSERVER_CONF")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("config import: %w", err)
	}
	opts, err := coturn.Parse(data)
	if err != nil {
		return fmt.Errorf("config import: %s: %w", src, err)
	}
	out, err := filepath.Abs(c.String("out"))
	if err != nil {
		return err
	}
	usersFile := c.String("users-file")
	if usersFile == "" {
		usersFile = filepath.Join(filepath.Dir(out), "users.toml")
	}
	secretsFile := c.String("secrets-file")
	if secretsFile == "" {
		secretsFile = filepath.Join(filepath.Dir(out), "rest-secrets")
	}
	dir, _ := filepath.Abs(filepath.Dir(src))
	usersFile, _ = filepath.Abs(usersFile)
	secretsFile, _ = filepath.Abs(secretsFile)
	res, err := coturn.Translate(opts, coturn.Settings{
		Source: src, Dir: dir, Realm: c.String("realm"), UsersFile: usersFile, SecretsFile: secretsFile,
	})
	if err != nil {
		return fmt.Errorf("config import: %s: %w", src, err)
	}
	if !c.Bool("force") {
		for _, p := range []string{out, secretsFile} {
			if p == secretsFile && len(res.Secrets) == 0 {
				continue
			}
			if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("config import: %s exists: pass --force to overwrite it, or --out elsewhere", p)
			}
		}
	}
	w := c.App.Writer
	if err := os.WriteFile(out, res.TOML, 0o644); err != nil {
		return fmt.Errorf("config import: %w", err)
	}
	fmt.Fprintf(w, "wrote %s, translated from %s\n", out, src)
	for _, u := range res.Users {
		if _, err := auth.SetUser(usersFile, u); err != nil {
			return fmt.Errorf("config import: %w", err)
		}
	}
	if len(res.Users) > 0 {
		fmt.Fprintf(w, "wrote %d users (realm %s) to %s\n", len(res.Users), res.Users[0].Realm, usersFile)
	}
	if len(res.Secrets) > 0 {
		body := "# TURN REST API secrets imported from " + src + ": the first signs, all verify.\n" +
			strings.Join(res.Secrets, "\n") + "\n"
		if err := os.WriteFile(secretsFile, []byte(body), 0o600); err != nil {
			return fmt.Errorf("config import: %w", err)
		}
		fmt.Fprintf(w, "wrote %d TURN REST secrets to %s\n", len(res.Secrets), secretsFile)
	}
	printIssues(w, src, "not translated: Ferry will not do what these did in coturn", res.Untranslated)
	printIssues(w, src, "notes", res.Notes)

	cfg, err := conf.Load(out)
	if err == nil {
		_, err = server.Check(cfg)
	}
	if err != nil {
		return fmt.Errorf("config import: the imported config does not pass 'ferry config check' yet: %w", err)
	}
	_, err = fmt.Fprintf(w, "'ferry config check %s' passes; review it, then: ferry serve --config %s\n", out, out)
	return err
}

func printIssues(w interface{ Write([]byte) (int, error) }, src, title string, issues []coturn.Issue) {
	if len(issues) == 0 {
		return
	}
	fmt.Fprintf(w, "%s (%d):\n", title, len(issues))
	for _, i := range issues {
		where := src
		if i.Line > 0 {
			where = fmt.Sprintf("%s:%d", src, i.Line)
		}
		fmt.Fprintf(w, "  %s: %s: %s\n", where, i.Option, i.Text)
	}
}
