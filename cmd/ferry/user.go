package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
				Usage:  "list users and their realms (name TAB realm per line, or --json)",
				Flags:  []cli.Flag{usersFileFlag, configFlag, &cli.BoolFlag{Name: "json", Usage: "print a JSON array of {name, realm}"}},
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

// oneArg returns the single argument (what names it in errors: NAME, ID). Flags may come
// before or after it: main puts them first (flagsFirst) before cli parses them.
func oneArg(c *cli.Context, what string) (string, error) {
	switch c.NArg() {
	case 0:
		return "", fmt.Errorf("%swant one %s argument", commandPrefix(c), what)
	case 1:
		return c.Args().First(), nil
	}
	return "", fmt.Errorf("%swant one %s argument, got also %q", commandPrefix(c), what, c.Args().Tail())
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
	replaced, err := auth.SetUser(path, u)
	if err != nil {
		return err
	}
	what := "added to"
	if replaced {
		what = "password changed in"
	}
	if generated {
		_, err = fmt.Fprintf(c.App.Writer, "user %s (realm %s) %s %s; password: %s\n", name, realm, what, path, password)
	} else {
		_, err = fmt.Fprintf(c.App.Writer, "user %s (realm %s) %s %s\n", name, realm, what, path)
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
	if c.NArg() > 0 {
		return fmt.Errorf("user list: unexpected argument %q", c.Args().First())
	}
	path, _, err := usersFileAndRealm(c)
	if err != nil {
		return err
	}
	users, err := auth.ReadUsers(path)
	if err != nil {
		return err
	}
	// The note goes to standard error: standard output stays the list, empty here.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.App.ErrWriter, "no users file at %s: no users ('ferry user add' creates it)\n", path)
	} else if len(users) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no users in %s\n", path)
	}
	if c.Bool("json") {
		type entry struct {
			Name  string `json:"name"`
			Realm string `json:"realm"`
		}
		out := make([]entry, len(users)) // the HA1 keys stay in the file: each is a password's equal
		for i, u := range users {
			out[i] = entry{u.Name, u.Realm}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, u := range users {
		if _, err := fmt.Fprintf(c.App.Writer, "%s\t%s\n", u.Name, u.Realm); err != nil {
			return err
		}
	}
	return nil
}
