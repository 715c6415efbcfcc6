package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ferry-rtc/ferry/auth"
)

var (
	usersFileFlag = &cli.StringFlag{
		Name:  "users-file",
		Usage: "users `FILE` (default: [auth] users_file of --config, or of the embedded default)",
	}
	realmFlag = &cli.StringFlag{
		Name:  "realm",
		Usage: "`REALM` the key is made for (default: [server] realm of --config, or of the embedded default)",
	}
)

func userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage long-term credential users (the users file stores HA1 keys, not passwords)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a user, or change its password; prints a generated password unless --password-stdin",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{usersFileFlag, realmFlag, configFlag, &cli.BoolFlag{
					Name: "password-stdin", Usage: "read the password from the first line of standard input",
				}},
				Action: userAdd,
			},
			{
				Name:      "del",
				Usage:     "delete a user (in every realm)",
				ArgsUsage: "NAME",
				Flags:     []cli.Flag{usersFileFlag, configFlag},
				Action:    userDel,
			},
			{
				Name:   "list",
				Usage:  "list users and their realms",
				Flags:  []cli.Flag{usersFileFlag, configFlag},
				Action: userList,
			},
		},
	}
}

// usersFileAndRealm resolves --users-file and --realm against the config's values.
func usersFileAndRealm(c *cli.Context) (path, realm string, err error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return "", "", err
	}
	path, realm = cfg.Auth.UsersFile, cfg.Server.Realm
	if c.IsSet(usersFileFlag.Name) {
		path = c.String(usersFileFlag.Name)
	}
	if c.IsSet(realmFlag.Name) {
		realm = c.String(realmFlag.Name)
	}
	if path == "" {
		return "", "", errors.New("no users file: pass --users-file or set [auth] users_file")
	}
	return path, realm, nil
}

// oneArg returns the single argument (what names it in errors: NAME, ID). urfave/cli stops
// parsing flags at the first argument, so flags written after it ("ferry user add alice
// --realm r") are parsed here, with the command's own flag definitions, and set on c.
func oneArg(c *cli.Context, what string) (string, error) {
	name := c.Args().First()
	if name == "" || strings.HasPrefix(name, "-") {
		return "", fmt.Errorf("%s: want one %s argument", c.Command.FullName(), what)
	}
	fs := flag.NewFlagSet(c.Command.FullName(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range c.Command.Flags {
		if err := f.Apply(fs); err != nil {
			return "", err
		}
	}
	if err := fs.Parse(c.Args().Tail()); err != nil {
		return "", fmt.Errorf("%s: %w", c.Command.FullName(), err)
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("%s: want one %s argument, got also %q", c.Command.FullName(), what, fs.Args())
	}
	var err error
	fs.Visit(func(f *flag.Flag) {
		if err == nil {
			err = c.Set(f.Name, f.Value.String())
		}
	})
	return name, err
}

func userAdd(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	path, realm, err := usersFileAndRealm(c)
	if err != nil {
		return err
	}
	password, generated, err := readPassword(c)
	if err != nil {
		return err
	}
	u := auth.User{Name: name, Realm: realm, HA1: hex.EncodeToString(auth.HA1(name, realm, password))}
	if err := auth.AddUser(path, u); err != nil {
		return err
	}
	if generated {
		_, err = fmt.Fprintf(c.App.Writer, "user %s (realm %s) added to %s; password: %s\n", name, realm, path, password)
	} else {
		_, err = fmt.Fprintf(c.App.Writer, "user %s (realm %s) added to %s\n", name, realm, path)
	}
	return err
}

// readPassword reads --password-stdin's line, or makes a random password.
func readPassword(c *cli.Context) (password string, generated bool, err error) {
	if !c.Bool("password-stdin") {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b), true, nil
	}
	line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
	password = strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", false, fmt.Errorf("user add: no password on standard input (%v)", err)
	}
	return password, false, nil
}

func userDel(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	path, _, err := usersFileAndRealm(c)
	if err != nil {
		return err
	}
	if err := auth.DeleteUser(path, name); err != nil {
		return err // names the user, the file and the reason
	}
	_, err = fmt.Fprintf(c.App.Writer, "user %s deleted from %s\n", name, path)
	return err
}

func userList(c *cli.Context) error {
	path, _, err := usersFileAndRealm(c)
	if err != nil {
		return err
	}
	users, err := auth.ReadUsers(path)
	if err != nil {
		return err
	}
	for _, u := range users {
		if _, err := fmt.Fprintf(c.App.Writer, "%s\t%s\n", u.Name, u.Realm); err != nil {
			return err
		}
	}
	return nil
}
